"""summarize(): latest signals, gap (test over val), audit, guard, alerts, multi-run files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from gradience.telemetry import TelemetryWriter, read_telemetry, summarize


def _write(path: Path, run_id: str = "r") -> TelemetryWriter:
    return TelemetryWriter(path, run_id=run_id)


def test_gap_prefers_test_over_val_and_uses_latest(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with _write(path) as w:
        w.run_start({"lora": {"r": 16}})
        w.train_step(1, loss=2.0, lr=1e-4)
        w.train_step(2, loss=1.5, lr=1e-4)
        w.eval(2, "train", {"ppl": 4.0})
        w.eval(2, "val", {"ppl": 10.0})
        w.eval(3, "train", {"ppl": 2.0})
        w.eval(3, "val", {"ppl": 5.0})
        w.eval(3, "test", {"ppl": 6.0, "accuracy": 0.7})
    s = summarize(read_telemetry(path))
    assert s.status == "ok" and s.last_step == 3 and s.config["lora"]["r"] == 16
    assert s.train.step == 2 and s.train.loss == 1.5
    assert s.heldout.split == "test" and s.gap == pytest.approx(3.0)
    assert s.evals["val"].metrics["ppl"] == 5.0


def test_gap_from_val_and_from_loss(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with _write(path) as w:
        w.eval(1, "train", {"loss": 1.0})
        w.eval(1, "val", {"loss": 2.0})
    s = summarize(read_telemetry(path))
    assert s.heldout.split == "val" and s.gap == pytest.approx(math.e)


@pytest.mark.parametrize(
    ("splits", "reason"),
    [
        ({"train": {"ppl": 2.0}}, "no held-out"),
        ({"val": {"ppl": 2.0}}, "no train-split"),
        ({"train": {"accuracy": 0.5}, "val": {"ppl": 2.0}}, "train eval has neither"),
        ({"train": {"ppl": 2.0}, "test": {"accuracy": 0.5}}, "test eval has neither"),
    ],
)
def test_gap_unavailable_reasons(tmp_path: Path, splits: dict, reason: str) -> None:
    path = tmp_path / "run.jsonl"
    with _write(path) as w:
        for split, metrics in splits.items():
            w.eval(1, split, metrics)
    s = summarize(read_telemetry(path))
    assert s.gap is None and reason in s.gap_unavailable_reason


def test_audit_guard_alerts_and_running_status(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    w = _write(path)
    w.run_start({})
    w.metrics(10, "lora_audit", {"utilization_mean": 0.5})
    w.metrics(20, "lora_audit", {"utilization_mean": 0.3})
    w.metrics(21, "guard", {"action": "rollback", "restored_step": 0})
    w.alert("warning", "guard_rollback", "rolled back", step=21)
    w.metrics(22, "guard", {"action": "abort"})
    w.recommendation([{"action": "x"}], step=22)
    w.close()
    s = summarize(read_telemetry(path))
    assert s.status is None  # no run_end yet
    assert s.audit.step == 20 and s.audit.metrics == {"utilization_mean": 0.3} and s.n_audits == 2
    assert s.guard.n_rollbacks == 1 and s.guard.aborted and s.guard.actions == {"rollback": 1, "abort": 1}
    assert [(a.code, a.severity, a.step) for a in s.alerts] == [("guard_rollback", "warning", 21)]
    assert s.recommendations == [{"action": "x"}]


def test_summary_uses_last_run_of_a_multi_run_file(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with _write(path, "a") as w:
        w.run_start({})
        w.eval(1, "train", {"ppl": 1.0})
        w.eval(1, "val", {"ppl": 9.0})
    with _write(path, "b") as w:
        w.run_start({})
        w.train_step(1, loss=3.0)
    s = summarize(read_telemetry(path))
    assert s.run_id == "b" and s.run_ids == ["a", "b"] and s.gap is None
    assert summarize(read_telemetry(path), run_id="a").gap == pytest.approx(9.0)
    assert s.to_json()["run_id"] == "b"


def test_lora_audit_metrics_typed_view_agrees_with_the_audit_and_drops_hostile_fields(tmp_path) -> None:
    from gradience.audit import audit_adapter
    from gradience.telemetry import LoraAuditMetrics
    from tiny_models import make_adapter

    make_adapter(tmp_path / "a", arch="llama")
    raw = audit_adapter(tmp_path / "a").telemetry_metrics()
    typed = LoraAuditMetrics.lenient(raw)
    for name in LoraAuditMetrics.model_fields:  # the audit fills every field the reader knows
        value = getattr(typed, name)
        assert value is not None and value != {}, name
        if name != "by_type":
            assert value == raw[name], name
    assert typed.by_type["attn"].utilization_mean == raw["by_type"]["attn"]["utilization_mean"]
    hostile = {**raw, "r": 10**400, "utilization_mean": float("nan"), "ranks": "8", "stable_rank_mean": True,
               "by_type": {"mlp": [1], "attn": {"utilization_mean": "0.5"}}}  # fmt: skip
    bad = LoraAuditMetrics.lenient(hostile)
    assert (bad.r, bad.utilization_mean, bad.ranks, bad.stable_rank_mean) == (None, None, None, None)
    assert (
        bad.by_type["attn"].utilization_mean is None and bad.energy_rank_90_p90 == raw["energy_rank_90_p90"]
    )
