"""Writer: append-only, atomic whole lines, privacy guard, enum values, context manager."""

from __future__ import annotations

import json
import multiprocessing as mp
import uuid
from enum import Enum
from pathlib import Path

import numpy as np
import pytest

from gradience.telemetry import (
    SCHEMA,
    ConfigSnapshot,
    RunStatus,
    Severity,
    TelemetryError,
    TelemetryWriter,
    read_telemetry,
)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_envelope_and_uuid_run_id(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    w = TelemetryWriter(path)
    w.train_step(3, loss=0.5, lr=[1e-4, 2e-4], grad_norm=1.5, epoch=0.1)
    w.close()
    (rec,) = _lines(path)
    assert rec["schema"] == SCHEMA and rec["event"] == "train_step" and rec["step"] == 3
    assert isinstance(rec["ts"], float)
    assert uuid.UUID(rec["run_id"]).version == 4
    assert rec["lr"] == [1e-4, 2e-4] and rec["grad_norm"] == 1.5


def test_appends_never_truncates(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with TelemetryWriter(path, run_id="first") as w:
        w.run_start({"model_name": "m"})
    before = path.read_bytes()
    with TelemetryWriter(path, run_id="second") as w:
        w.run_start({"model_name": "m"})
    after = path.read_bytes()
    assert after.startswith(before) and len(after) > len(before)
    log = read_telemetry(path)
    assert log.run_ids == ["first", "second"] and not log.issues


def test_enums_are_written_as_values(tmp_path: Path) -> None:
    class Kind(Enum):
        A = "alpha"

    path = tmp_path / "run.jsonl"
    with TelemetryWriter(path) as w:
        w.alert(Severity.CRITICAL, "c", "m", context={"kind": Kind.A, Kind.A: 1})
        w.run_end(RunStatus.ABORTED, reason="stop")
    alert, end = _lines(path)
    assert alert["severity"] == "critical" and alert["context"] == {"kind": "alpha", "alpha": 1}
    assert end["status"] == "aborted" and end["reason"] == "stop"


def test_long_strings_redacted_unless_allowed(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    text = "x" * 257
    with TelemetryWriter(path) as w:
        w.metrics(1, "custom", {"prompt": text, "short": "y" * 256, "nested": [{"t": text}]})
    with TelemetryWriter(path, allow_text=True) as w:
        w.metrics(1, "custom", {"prompt": text})
    redacted, kept = _lines(path)
    assert redacted["metrics"]["prompt"] == "[REDACTED len=257]"
    assert redacted["metrics"]["short"] == "y" * 256
    assert redacted["metrics"]["nested"][0]["t"] == "[REDACTED len=257]"
    assert kept["metrics"]["prompt"] == text


def test_numpy_and_pydantic_values_no_reprs(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    cfg = ConfigSnapshot(model_name="m")
    cfg.lora.r = 8
    with TelemetryWriter(path) as w:
        w.run_start(cfg, meta={"arr": np.arange(3), "f": np.float32(0.5), "path": Path("/a/b")})
        with pytest.raises(TelemetryError, match="no reprs"):
            w.metrics(1, "custom", {"obj": object()})
    start = _lines(path)[0]
    assert start["config"]["lora"]["r"] == 8
    assert start["meta"] == {"arr": [0, 1, 2], "f": 0.5, "path": "/a/b"}


def test_rejects_unknown_event_and_invalid_payload(tmp_path: Path) -> None:
    w = TelemetryWriter(tmp_path / "run.jsonl")
    with pytest.raises(TelemetryError, match="unknown telemetry event"):
        w.write("train_stpe", {})
    with pytest.raises(TelemetryError, match="severity"):
        w.alert("bogus", "c", "m")
    with pytest.raises(TelemetryError, match="accuracy"):
        w.eval(1, "val", {"accuracy": 1.5})
    w.close()
    assert not (tmp_path / "run.jsonl").exists() or (tmp_path / "run.jsonl").read_text() == ""


def test_context_manager_writes_error_on_exception(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with pytest.raises(RuntimeError):
        with TelemetryWriter(path) as w:
            w.run_start({})
            w.train_step(5, loss=1.0)
            raise RuntimeError("boom")
    end = _lines(path)[-1]
    assert end["event"] == "run_end" and end["status"] == "error" and "boom" in end["reason"]
    assert end["step"] == 5


def test_context_manager_clean_exit_ends_ok_once(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with TelemetryWriter(path) as w:
        w.run_start({})
    with TelemetryWriter(path) as w:
        w.run_start({})
        w.run_end("aborted", reason="early stop")
    ends = [r for r in _lines(path) if r["event"] == "run_end"]
    assert [e["status"] for e in ends] == ["ok", "aborted"]


def _hammer(path: str, tag: int, n: int) -> None:
    w = TelemetryWriter(path, run_id=f"proc-{tag}", allow_text=True)
    blob = str(tag) * 5000  # far beyond PIPE_BUF: atomicity must come from O_APPEND + one write
    for i in range(n):
        w.metrics(i, "custom", {"blob": blob, "i": i})
    w.close()


def test_concurrent_processes_never_interleave_lines(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_hammer, args=(str(path), t, 60)) for t in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    log = read_telemetry(path, strict=True)
    assert len(log.events) == 180
    for e in log.events:
        tag = e.run_id.split("-")[1]
        assert e.payload["metrics"]["blob"] == tag * 5000
