"""Append-only JSONL writer for `gradience.vnext.telemetry/v1`.

Why it looks like this: a run file is evidence, so the writer never truncates it (a
second writer appends a second run), and each line goes out in one `os.write` on an
`O_APPEND` descriptor so that concurrent writers and crashes never interleave or tear
lines. Appending to an existing file first checks that it is telemetry (a notes file is
refused, unchanged) and closes a torn last line left by a crash, so the new event is not
glued onto the fragment; a write that fails part-way (disk full) is cut back off. Values are converted to plain JSON (enum values, never reprs) and long strings
are redacted unless text is allowed, so a prompt or a dataset row cannot leak into a log.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import os
import threading
import time
import uuid
from collections.abc import Mapping
from enum import Enum
from pathlib import Path, PurePath
from types import TracebackType
from typing import Any

from pydantic import BaseModel, ValidationError

from gradience.files import append_bytes, open_append

from .errors import TelemetryError
from .schema import (
    MAX_TEXT_LEN,
    PAYLOAD_MODELS,
    SCHEMA,
    ConfigSnapshot,
    RunStatus,
    Severity,
    format_validation_error,
    validate_payload,
)


def redact(text: str, allow_text: bool = False) -> str:
    """The privacy guard: long strings become a length marker."""
    if allow_text or len(text) <= MAX_TEXT_LEN:
        return text
    return f"[REDACTED len={len(text)}]"


def to_jsonable(obj: Any, allow_text: bool = False) -> Any:
    """Plain JSON values only: enums by value, arrays/tensors as lists, no reprs ever."""
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, Enum):
        return to_jsonable(obj.value, allow_text)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, str):
        return redact(str(obj), allow_text)
    if isinstance(obj, Mapping):
        return {_key(k): to_jsonable(v, allow_text) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, allow_text) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((to_jsonable(v, allow_text) for v in obj), key=str)
    if isinstance(obj, PurePath):
        return redact(str(obj), allow_text)
    if isinstance(obj, BaseModel):
        return to_jsonable(obj.model_dump(mode="python"), allow_text)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj), allow_text)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return to_jsonable(obj.tolist(), allow_text)
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        return float(obj)
    raise TelemetryError(f"cannot write a {type(obj).__name__} into telemetry (no reprs)")


def _key(k: Any) -> str:
    if isinstance(k, Enum):
        k = k.value
    return k if isinstance(k, str) else str(k)


def encode_line(record: Mapping[str, Any]) -> bytes:
    """One JSON object and its newline. NaN/Inf are kept (Python's json reads them back)."""
    return (json.dumps(record, ensure_ascii=False, allow_nan=True, separators=(",", ":")) + "\n").encode()


TELEMETRY_PREFIX = encode_line({"schema": SCHEMA})[:-2]  # how every line this writer emits begins


def check_appendable(fd: int, path: str | os.PathLike[str]) -> None:
    """Refuse to append telemetry to a file whose existing content is not telemetry.

    Reads only up to the first line that is a telemetry event (usually line 1), and at most the
    first MiB. An empty or blank file is fine, and so is one holding just a torn first line of ours."""
    size, pos, tail, content = min(os.fstat(fd).st_size, 1 << 20), 0, b"", False
    while pos < size:
        chunk = os.pread(fd, 1 << 16, pos)
        if not chunk:
            break
        pos += len(chunk)
        *lines, tail = (tail + chunk).split(b"\n")
        for line in lines:
            content = content or bool(line.strip())
            if line.startswith(b"{") and _is_event(line):
                return
    if not (content or tail.strip()) or (not content and tail.startswith(TELEMETRY_PREFIX)):
        return
    raise TelemetryError(
        f"{os.fspath(path)} is not a telemetry file (no {SCHEMA} event in it); not appending"
    )


def _is_event(line: bytes) -> bool:
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return False
    return isinstance(obj, dict) and obj.get("schema") == SCHEMA


class TelemetryWriter:
    """Writes one run's events to a JSONL file (appending, never truncating).

    As a context manager, an exception writes `run_end(status="error")` (or
    `"aborted"` for Ctrl-C); a clean exit after this writer's `run_start` writes
    `run_end(status="ok")` if nobody ended the run explicitly.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        run_id: str | None = None,
        allow_text: bool = False,
        *,
        fsync: bool = False,
    ) -> None:
        self.path = Path(path)
        self.run_id = run_id or str(uuid.uuid4())
        self.allow_text = allow_text
        self.fsync = fsync
        self.last_step: int | None = None
        self.started = False
        self.ended = False
        self._lock = threading.Lock()
        self._fd: int | None = None

    # --- plumbing ---------------------------------------------------------------------------

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = open_append(self.path)
            try:
                check_appendable(fd, self.path)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
        return self._fd

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def write(self, event: str, payload: Mapping[str, Any] | None = None, step: int | None = None) -> dict:
        """Validate and append one event; returns the record as written."""
        if event not in PAYLOAD_MODELS:
            raise TelemetryError(f"unknown telemetry event {event!r}; known: {', '.join(PAYLOAD_MODELS)}")
        body = to_jsonable(dict(payload or {}), self.allow_text)
        try:
            validate_payload(event, body)
        except ValidationError as exc:
            raise TelemetryError(f"invalid {event} payload: {format_validation_error(exc)}") from None
        if step is not None:
            step = int(step)
            self.last_step = step
        record = {"schema": SCHEMA, "ts": time.time(), "run_id": self.run_id, "event": event, "step": step}
        record.update({k: v for k, v in body.items() if k not in record})
        data = encode_line(record)
        with self._lock:
            fd = self._open()
            try:
                append_bytes(fd, data, fsync=self.fsync)
            except OSError as exc:  # name the file: a bare ENOSPC does not say where
                raise OSError(exc.errno, exc.strerror, os.fspath(self.path)) from exc
        if event == "run_start":
            self.started, self.ended = True, False
        elif event == "run_end":
            self.ended = True
        return record

    # --- convenience ------------------------------------------------------------------------

    def run_start(
        self,
        config: ConfigSnapshot | Mapping[str, Any],
        meta: Mapping[str, Any] | None = None,
        step: int | None = None,
    ) -> dict:
        payload: dict[str, Any] = {"config": config}
        if meta is not None:
            payload["meta"] = meta
        return self.write("run_start", payload, step)

    def train_step(
        self,
        step: int,
        loss: float | None = None,
        lr: float | list[float] | None = None,
        grad_norm: float | None = None,
        epoch: float | None = None,
        **extra: Any,
    ) -> dict:
        known = {"loss": loss, "lr": lr, "grad_norm": grad_norm, "epoch": epoch}
        payload = {k: v for k, v in known.items() if v is not None}
        payload.update(extra)
        return self.write("train_step", payload, step)

    def eval(self, step: int | None, split: str, metrics: Mapping[str, Any], **extra: Any) -> dict:
        return self.write("eval", {"split": split, "metrics": metrics, **extra}, step)

    def metrics(self, step: int | None, kind: str, metrics: Mapping[str, Any], **extra: Any) -> dict:
        return self.write("metrics", {"kind": kind, "metrics": metrics, **extra}, step)

    def alert(
        self,
        severity: Severity | str,
        code: str,
        message: str,
        context: Mapping[str, Any] | None = None,
        step: int | None = None,
    ) -> dict:
        payload: dict[str, Any] = {"severity": severity, "code": code, "message": message}
        if context is not None:
            payload["context"] = context
        return self.write("alert", payload, step)

    def recommendation(self, recommendations: list[Any], step: int | None = None) -> dict:
        return self.write("recommendation", {"recommendations": list(recommendations)}, step)

    def run_end(
        self, status: RunStatus | str = RunStatus.OK, reason: str | None = None, step: int | None = None
    ) -> dict:
        payload: dict[str, Any] = {"status": status}
        if reason is not None:
            payload["reason"] = reason
        return self.write("run_end", payload, step if step is not None else self.last_step)

    # --- context manager --------------------------------------------------------------------

    def __enter__(self) -> TelemetryWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is not None and not self.ended:
                status = RunStatus.ABORTED if issubclass(exc_type, KeyboardInterrupt) else RunStatus.ERROR
                self.run_end(status, reason=f"{exc_type.__name__}: {exc}"[:MAX_TEXT_LEN])
            elif exc_type is None and self.started and not self.ended:
                self.run_end(RunStatus.OK)
        finally:
            self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort only
        fd = getattr(self, "_fd", None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
