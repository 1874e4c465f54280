"""Reader: per-line issues with line numbers, torn last line, strict mode, defaults, append."""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradience.telemetry import (
    SCHEMA,
    TelemetryError,
    TelemetryWriter,
    append_event_to_run,
    read_telemetry,
)


def _rec(event: str, step: int | None = 1, run_id: str = "r1", **payload: object) -> str:
    return json.dumps(
        {"schema": SCHEMA, "ts": 1.0, "run_id": run_id, "event": event, "step": step, **payload}
    )


def test_bad_lines_become_issues_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    lines = [
        _rec("run_start", config={}),
        "",
        "{not json",
        "[1, 2]",
        _rec("train_step").replace(SCHEMA, "gradience.vnext.telemetry/v9"),
        json.dumps({"schema": SCHEMA, "event": "eval"}),
        _rec("eval", split="val"),  # metrics missing
        _rec("alert", severity="loud", code="c", message="m"),
        _rec("train_step", loss=0.5),
    ]
    path.write_text("\n".join(lines) + "\n")
    log = read_telemetry(path)
    kinds = {i.line: i.kind for i in log.issues}
    assert kinds == {
        2: "blank",
        3: "invalid_json",
        4: "not_object",
        5: "schema",
        6: "envelope",
        7: "payload",
        8: "payload",
    }
    assert [e.line for e in log.events] == [1, 9]
    with pytest.raises(TelemetryError, match=":2: blank"):
        read_telemetry(path, strict=True)


def test_torn_last_line_is_an_issue_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    full = _rec("train_step", step=2, loss=1.0)
    path.write_text(_rec("run_start", config={}) + "\n" + full[: len(full) // 2])
    log = read_telemetry(path)
    assert len(log.events) == 1
    assert [(i.line, i.kind) for i in log.issues] == [(2, "torn_line")]
    with pytest.raises(TelemetryError, match="incomplete"):
        read_telemetry(path, strict=True)


def test_last_line_without_newline_but_complete_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_text(_rec("train_step", loss=1.0))
    log = read_telemetry(path, strict=True)
    assert len(log.events) == 1 and not log.issues


def test_defaults_filled_and_unknown_keys_kept(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    lines = [
        _rec("run_start", step=None, config={"lora": {"r": 8, "new_knob": 3}}, future=1),
        _rec("train_step"),
        _rec("metrics", kind="brand_new_kind", metrics={"x": 1}),
        _rec("alert", severity="info", code="c", message="m"),
        _rec("run_end", status="ok"),
        json.dumps(
            {"schema": SCHEMA, "ts": 2.0, "run_id": "r1", "event": "eval", "split": "val", "metrics": {}}
        ),
    ]
    path.write_text("\n".join(lines) + "\n")
    log = read_telemetry(path, strict=True)
    start, step, metrics, alert, end, ev = log.events
    assert start.payload["config"]["lora"] == {
        "r": 8,
        "alpha": None,
        "alpha_over_r": None,
        "target_modules": None,
        "dropout": None,
        "bias": None,
        "extras": {},
        "new_knob": 3,
    }
    assert start.payload["meta"] == {} and start.payload["future"] == 1
    assert start.payload["config"]["optimizer"]["lr"] is None
    assert step.payload == {"loss": None, "lr": None, "grad_norm": None, "epoch": None}
    assert metrics.payload["kind"] == "brand_new_kind"
    assert alert.payload["context"] == {} and end.payload["reason"] is None
    assert ev.step is None and ev.payload["metrics"]["ppl"] is None


def test_unknown_event_kept_with_issue(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_text(_rec("checkpoint", path="x") + "\n")
    log = read_telemetry(path)
    assert log.events[0].event == "checkpoint"
    assert log.issues[0].kind == "unknown_event"


def test_nan_loss_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with TelemetryWriter(path) as w:
        w.train_step(1, loss=float("nan"), grad_norm=float("inf"))
    (e,) = read_telemetry(path, strict=True).events
    assert math.isnan(e.payload["loss"]) and math.isinf(e.payload["grad_norm"])


def test_missing_file_and_directory_are_errors(tmp_path: Path) -> None:
    with pytest.raises(TelemetryError, match="not found"):
        read_telemetry(tmp_path / "nope.jsonl")
    with pytest.raises(TelemetryError, match="directory"):
        read_telemetry(tmp_path)


def test_append_event_to_run_joins_latest_run(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with TelemetryWriter(path, run_id="old") as w:
        w.train_step(99, loss=1.0)
    with TelemetryWriter(path, run_id="new") as w:
        w.train_step(7, loss=1.0)
        w.eval(None, "val", {"loss": 1.0})
    append_event_to_run(path, "metrics", {"kind": "lora_audit", "metrics": {"n_layers": 4}})
    last = read_telemetry(path, strict=True).events[-1]
    assert (last.run_id, last.step, last.event) == ("new", 7, "metrics")
    assert last.payload["metrics"] == {"n_layers": 4}


def test_append_event_to_empty_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TelemetryError, match="does not exist"):
        append_event_to_run(tmp_path / "no" / "run.jsonl", "metrics", {"kind": "lora_audit", "metrics": {}})
    created = tmp_path / "new.jsonl"  # upstream's --append created a missing file
    append_event_to_run(created, "metrics", {"kind": "lora_audit", "metrics": {"n_layers": 2}})
    start, metrics = read_telemetry(created, strict=True).events
    assert (start.event, metrics.event) == ("run_start", "metrics") and start.run_id == metrics.run_id
    assert metrics.payload["metrics"] == {"n_layers": 2}
    path = tmp_path / "run.jsonl"
    path.write_text("")
    append_event_to_run(path, "metrics", {"kind": "lora_audit", "metrics": {}})
    (e,) = read_telemetry(path, strict=True).events
    assert e.step is None and uuid.UUID(e.run_id).version == 4


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=40, deadline=None)
@given(
    loss=finite,
    lr=st.one_of(finite, st.lists(finite, max_size=3)),
    text=st.text(max_size=300),
    step=st.integers(min_value=0, max_value=2**40),
)
def test_round_trip_property(tmp_path_factory: pytest.TempPathFactory, loss, lr, text, step) -> None:
    path = tmp_path_factory.mktemp("rt") / "run.jsonl"
    with TelemetryWriter(path) as w:
        w.train_step(step, loss=loss, lr=lr, note=text)
    (e,) = read_telemetry(path, strict=True).events
    assert e.step == step and e.payload["loss"] == loss and e.payload["lr"] == lr
    assert e.payload["note"] == (text if len(text) <= 256 else f"[REDACTED len={len(text)}]")
