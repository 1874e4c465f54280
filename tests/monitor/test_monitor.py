"""`monitor` on hand-written telemetry: gap alert (inclusive), audit rules, guard, torn files, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gradience.cli import app
from gradience.monitor import monitor_run
from gradience.telemetry import TelemetryWriter, append_event_to_run

runner = CliRunner()
CLEAN_EC = {"dataset_name": "sst2", "optimizer": {"lr": 1e-4}, "lora": {"r": 8, "target_modules": ["query"]}}


def audit_metrics(r: int = 32, p90: float = 5.0, util: float = 0.1, sr: float = 3.0, **kw: Any) -> dict:
    return {
        "r": r,
        "ranks": [r],
        "total_lora_params": r * 6 * 64,
        "stable_rank_mean": sr,
        "utilization_mean": util,
        "energy_rank_90_p50": 3.0,
        "energy_rank_90_p90": p90,
        "allowed_ranks": [1, 2, 4, 8, 16, 32, 64],
        **kw,
    }


def run_file(
    tmp_path: Path,
    train_ppl: float | None = 2.0,
    heldout: dict | None = None,
    split: str = "val",
    config: dict | None = None,
    audit: dict | None = None,
) -> Path:
    path = tmp_path / "run.jsonl"
    with TelemetryWriter(path) as w:
        w.run_start(config if config is not None else CLEAN_EC)
        w.train_step(10, loss=0.5, lr=1e-4, grad_norm=0.3)
        if train_ppl is not None:
            w.eval(10, "train", {"ppl": train_ppl})
        if heldout is not None:
            w.eval(10, split, heldout)
        if audit is not None:
            w.metrics(10, "lora_audit", audit)
    return path


def actions(report) -> list[str]:
    return [r.action for r in report.recommendations]


def codes(report) -> set[str]:
    return {a.code for a in report.alerts}


def test_memorization_alert_at_threshold_inclusive(tmp_path: Path) -> None:
    at = monitor_run(run_file(tmp_path, 2.0, {"ppl": 3.0}), gap_threshold=1.5)
    assert at.summary.gap == 1.5 and "memorization_gap" in codes(at)
    assert {"memorization_detected", "lower_lr"} <= set(actions(at))
    lower = next(r for r in at.recommendations if r.action == "lower_lr")
    assert lower.suggested == {"lr": 5e-5}
    assert "config_ok" not in actions(at)  # dropped: something actionable exists
    below = monitor_run(run_file(tmp_path / "b", 2.0, {"ppl": 2.98}), gap_threshold=1.5)
    assert "memorization_gap" not in codes(below) and "memorization_detected" not in actions(below)
    assert "config_ok" in actions(below)


def test_gap_uses_test_split_and_threshold_flag(tmp_path: Path) -> None:
    path = run_file(tmp_path, 2.0, {"ppl": 3.0})
    append_event_to_run(path, "eval", {"split": "test", "metrics": {"ppl": 2.2, "accuracy": 0.9}})
    report = monitor_run(path)
    assert report.summary.heldout.split == "test" and report.summary.gap == pytest.approx(1.1)
    assert "memorization_gap" in codes(monitor_run(path, gap_threshold=1.1))


def test_gap_unavailable_recommends_logging(tmp_path: Path) -> None:
    report = monitor_run(run_file(tmp_path, None, {"ppl": 3.0}))
    assert "gap_unavailable" in codes(report) and "log_train_test_ppl" in actions(report)


def test_compress_rank_from_audit_event(tmp_path: Path) -> None:
    report = monitor_run(run_file(tmp_path, 2.0, {"ppl": 2.2}, audit=audit_metrics(r=32, p90=5.0)))
    rec = next(r for r in report.recommendations if r.action == "compress_rank")
    # p90 = 5 snaps UP to 8; every layer at r=32, so params scale exactly by 8/32
    assert rec.suggested["r"] == 8 and rec.suggested["current_r"] == 32
    assert rec.suggested["lora_params_saved"] == 32 * 6 * 64 - 8 * 6 * 64
    assert "low_utilization" in actions(report)  # stable rank 3 / 32 < 0.25


@pytest.mark.parametrize(
    "audit",
    [
        audit_metrics(r=8, p90=2.0, util=0.1, sr=1.0),  # r < 16
        audit_metrics(r=32, p90=17.0, util=0.5, sr=16.0),  # p90 > r/2 and utilisation fine
        audit_metrics(r=32, p90=0.0, util=0.3, sr=9.6),  # p90 of 0 does not count
    ],
)
def test_compress_rank_silent_on_neighbours(tmp_path: Path, audit: dict) -> None:
    report = monitor_run(run_file(tmp_path, 2.0, {"ppl": 2.2}, audit=audit))
    assert "compress_rank" not in actions(report) and "low_utilization" not in actions(report)


def test_compress_rank_at_half_rank_boundary(tmp_path: Path) -> None:
    report = monitor_run(
        run_file(tmp_path, 2.0, {"ppl": 2.2}, audit=audit_metrics(r=32, p90=16.0, util=0.5, sr=16))
    )
    assert next(r for r in report.recommendations if r.action == "compress_rank").suggested["r"] == 16


def test_compress_mlp_targets_and_underfitting(tmp_path: Path) -> None:
    by_type = {"attn": {"utilization_mean": 0.3}, "mlp": {"utilization_mean": 0.05}}
    report = monitor_run(run_file(tmp_path, 2.0, {"ppl": 2.2}, audit=audit_metrics(by_type=by_type)))
    assert "compress_mlp_targets" in actions(report)
    by_type["attn"]["utilization_mean"] = 0.09
    report = monitor_run(run_file(tmp_path / "n", 2.0, {"ppl": 2.2}, audit=audit_metrics(by_type=by_type)))
    assert "compress_mlp_targets" not in actions(report)

    weak = audit_metrics(r=8, sr=1.5, util=0.19)
    under = monitor_run(run_file(tmp_path / "u", 2.0, {"ppl": 2.2, "accuracy": 0.1}, audit=weak))
    assert "possible_underfitting" in actions(under)
    fine = monitor_run(run_file(tmp_path / "f", 2.0, {"ppl": 2.2, "accuracy": 0.6}, audit=weak))
    assert "possible_underfitting" not in actions(fine)


def test_config_rules_dedupe_with_monitor_rules(tmp_path: Path) -> None:
    config = {**CLEAN_EC, "optimizer": {"lr": 1e-3}}  # check's lower_lr (EC) and monitor's lower_lr
    report = monitor_run(run_file(tmp_path, 2.0, {"ppl": 4.0}, config=config))
    assert actions(report).count("lower_lr") == 1
    sev = [r.severity.value for r in report.recommendations]
    assert sev == sorted(sev, key=["critical", "error", "warning", "info"].index)


def test_guard_activity_alerts(tmp_path: Path) -> None:
    path = run_file(tmp_path, 2.0, {"ppl": 2.2})
    append_event_to_run(
        path, "metrics", {"kind": "guard", "metrics": {"action": "rollback", "reason": "nan"}}
    )
    append_event_to_run(
        path, "alert", {"severity": "warning", "code": "guard_rollback", "message": "rolled back"}
    )
    report = monitor_run(path)
    assert report.summary.gap == pytest.approx(1.1)  # same run: the appended events joined it
    assert "guard_intervention" in codes(report) and "guard_abort" not in codes(report)
    assert report.exit_code == 0
    append_event_to_run(path, "metrics", {"kind": "guard", "metrics": {"action": "abort"}})
    report = monitor_run(path)
    assert "guard_abort" in codes(report) and report.exit_code == 1


def test_torn_last_line_is_reported_not_fatal(tmp_path: Path) -> None:
    path = run_file(tmp_path, 2.0, {"ppl": 3.0})
    with open(path, "a") as fh:
        fh.write('{"schema": "gradience.vnext.telemetry/v1", "ts": 1.0, "run_id": "x", "ev')
    report = monitor_run(path)
    assert [(i.kind, i.line) for i in report.summary.issues] == [("torn_line", 6)]
    assert report.summary.gap == 1.5
    res = runner.invoke(app, ["monitor", str(path), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["summary"]["issues"][0]["kind"] == "torn_line"
    strict = runner.invoke(app, ["monitor", str(path), "--strict-schema"])
    assert strict.exit_code == 2
    assert len(strict.stderr.strip().splitlines()) == 1 and "incomplete" in strict.stderr


def test_partial_run_without_run_end(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    w = TelemetryWriter(path)
    w.run_start(CLEAN_EC)
    w.train_step(3, loss=1.0)
    w.close()
    report = monitor_run(path)
    assert report.summary.status is None and "gap_unavailable" in codes(report)
    res = runner.invoke(app, ["monitor", str(path)])
    assert res.exit_code == 0 and "no run_end" in res.stdout


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "telemetry file not found"),
        ("", "it is empty"),  # no valid event at all is bad input, not a run with issues
        ('{"schema": "gradience.bench/v1", "probe": {}}\n', "1 line(s) are not"),  # a bench.json
        ("notes\nmore notes\n", "2 line(s) are not"),
    ],
)
def test_cli_bad_or_empty_input(tmp_path: Path, content: str | None, needle: str) -> None:
    path = tmp_path / "run.jsonl"
    if content is not None:
        path.write_text(content)
    res = runner.invoke(app, ["monitor", str(path)])
    assert res.exit_code == 2 and res.stderr.startswith("error:") and needle in res.stderr
    assert res.stderr.count("\n") == 1
