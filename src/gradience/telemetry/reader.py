"""Tolerant reader for telemetry JSONL files.

A run file may still be growing, may have been cut by a crash, or may hold lines from
a newer writer. So by default the reader keeps every event it can validate and records
each line it cannot use as an issue with its line number; `strict=True` turns the first
issue into a `TelemetryError` (for CI and `monitor --strict-schema`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gradience.files import MalformedInput, check_depth

from .errors import TelemetryError
from .schema import ENVELOPE_KEYS, PAYLOAD_MODELS, SCHEMA, Envelope, format_validation_error, validate_payload

ISSUE_KINDS = (
    "blank",
    "encoding",
    "invalid_json",
    "torn_line",
    "not_object",
    "schema",
    "envelope",
    "unknown_event",
    "payload",
)


class TelemetryIssue(BaseModel):
    """One line the reader could not (fully) use. `unknown_event` lines are still kept."""

    line: int
    kind: str
    message: str


class TelemetryEvent(BaseModel):
    """One validated event: the envelope plus its payload with optional defaults filled."""

    model_config = ConfigDict(populate_by_name=True)

    schema_: str = Field(default=SCHEMA, alias="schema")
    ts: float
    run_id: str
    event: str
    step: int | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    line: int = 0

    def get(self, key: str, default: Any = None) -> Any:
        return self.payload.get(key, default)

    def to_record(self) -> dict[str, Any]:
        """The flat JSONL object (envelope + payload), as a writer would emit it."""
        rec: dict[str, Any] = {
            "schema": self.schema_,
            "ts": self.ts,
            "run_id": self.run_id,
            "event": self.event,
            "step": self.step,
        }
        rec.update(self.payload)
        return rec


class TelemetryLog(BaseModel):
    path: str
    events: list[TelemetryEvent] = Field(default_factory=list)
    issues: list[TelemetryIssue] = Field(default_factory=list)

    def of(self, event: str, run_id: str | None = None) -> list[TelemetryEvent]:
        return [e for e in self.events if e.event == event and (run_id is None or e.run_id == run_id)]

    @property
    def run_ids(self) -> list[str]:
        """Run ids in order of first appearance (one file may hold several appended runs)."""
        return list(dict.fromkeys(e.run_id for e in self.events))

    @property
    def last_run_id(self) -> str | None:
        return self.events[-1].run_id if self.events else None

    def latest_step(self, run_id: str | None = None) -> int | None:
        for e in reversed(self.events):
            if e.step is not None and (run_id is None or e.run_id == run_id):
                return e.step
        return None


def parse_line(raw: bytes, lineno: int, is_torn_candidate: bool) -> TelemetryEvent | TelemetryIssue:
    """Parse one raw line into an event, or the issue explaining why it is unusable."""
    if not raw.strip():
        return TelemetryIssue(line=lineno, kind="blank", message="blank line")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return TelemetryIssue(line=lineno, kind="encoding", message=f"not UTF-8: {exc.reason}")
    try:
        obj = check_depth(json.loads(text), f"line {lineno}")
    except (RecursionError, MalformedInput) as exc:  # a hostile nest: unusable, never a crash
        why = str(exc) if isinstance(exc, MalformedInput) else "nested too deeply to parse"
        return TelemetryIssue(line=lineno, kind="invalid_json", message=why)
    except json.JSONDecodeError as exc:
        if is_torn_candidate:
            return TelemetryIssue(
                line=lineno,
                kind="torn_line",
                message="last line is incomplete (run still writing or cut off)",
            )
        return TelemetryIssue(line=lineno, kind="invalid_json", message=f"invalid JSON: {exc.msg}")
    if not isinstance(obj, dict):
        return TelemetryIssue(line=lineno, kind="not_object", message="line is not a JSON object")
    schema = obj.get("schema")
    if schema != SCHEMA:
        return TelemetryIssue(
            line=lineno, kind="schema", message=f"unsupported schema {schema!r} (expected {SCHEMA})"
        )
    try:
        env = Envelope.model_validate({k: obj.get(k) for k in ENVELOPE_KEYS if k in obj})
    except ValidationError as exc:
        return TelemetryIssue(
            line=lineno, kind="envelope", message=f"bad envelope: {format_validation_error(exc)}"
        )
    payload = {k: v for k, v in obj.items() if k not in ENVELOPE_KEYS}
    event = TelemetryEvent(
        ts=env.ts, run_id=env.run_id, event=env.event, step=env.step, payload=payload, line=lineno
    )
    if env.event not in PAYLOAD_MODELS:
        return event  # forward compatible; the caller records an `unknown_event` issue and keeps it
    try:
        event.payload = validate_payload(env.event, payload)
    except ValidationError as exc:
        return TelemetryIssue(
            line=lineno,
            kind="payload",
            message=f"invalid {env.event} payload: {format_validation_error(exc)}",
        )
    return event


def read_telemetry(path: str | os.PathLike[str], strict: bool = False) -> TelemetryLog:
    """Read a run file. Missing/unreadable file → `TelemetryError`; bad lines → issues."""
    p = Path(path)
    if not p.exists():
        raise TelemetryError(f"telemetry file not found: {p}")
    if p.is_dir():
        raise TelemetryError(f"telemetry path is a directory, not a JSONL file: {p}")
    if not p.is_file():  # a device or FIFO: /dev/zero would be read forever
        raise TelemetryError(f"telemetry path is not a regular file: {p}")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise TelemetryError(f"cannot read telemetry file {p}: {exc.strerror}") from None
    lines = data.split(b"\n")
    ends_with_newline = lines[-1] == b""
    if ends_with_newline:
        lines.pop()
    log = TelemetryLog(path=str(p))
    for idx, raw in enumerate(lines, start=1):
        torn_candidate = idx == len(lines) and not ends_with_newline
        result = parse_line(raw, idx, torn_candidate)
        if isinstance(result, TelemetryEvent) and result.event not in PAYLOAD_MODELS:
            log.events.append(result)
            result_issue = TelemetryIssue(
                line=idx, kind="unknown_event", message=f"unknown event {result.event!r} kept unvalidated"
            )
            _record(log, result_issue, strict, p)
        elif isinstance(result, TelemetryEvent):
            log.events.append(result)
        else:
            _record(log, result, strict, p)
    return log


def _record(log: TelemetryLog, issue: TelemetryIssue, strict: bool, path: Path) -> None:
    if strict:
        raise TelemetryError(f"{path}:{issue.line}: {issue.message}")
    log.issues.append(issue)
