"""GradienceCallback on a real Trainer run: schema-valid telemetry, gap, live audits, run_end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import transformers as tf
from typer.testing import CliRunner

from gradience.cli import app
from gradience.integrations.hf import GradienceCallback, split_eval_metrics, train_with_telemetry
from gradience.monitor import monitor_run
from gradience.telemetry import read_telemetry, summarize


def _events(path: Path, name: str) -> list:
    return [e for e in read_telemetry(path, strict=True).events if e.event == name]


def test_real_trainer_run_is_recorded_and_monitorable(make_trainer, tmp_path: Path) -> None:
    cb = GradienceCallback(audit_every=10, dataset_name="glue/sst2", train_eval_samples=64)
    trainer = make_trainer([cb])
    train_with_telemetry(trainer)
    path = Path(trainer.args.output_dir) / "run.jsonl"
    text = path.read_text()
    assert "TaskType." not in text and "OptimizerNames." not in text and "SchedulerType." not in text

    log = read_telemetry(path, strict=True)  # every line validates against the schema
    assert [e.event for e in log.events][0] == "run_start" and log.events[-1].event == "run_end"
    cfg = log.events[0].payload["config"]
    assert cfg["lora"]["r"] == 16 and cfg["lora"]["alpha"] == 32 and cfg["lora"]["alpha_over_r"] == 2
    assert cfg["lora"]["target_modules"] == ["intermediate.dense", "query", "value"]
    assert cfg["lora"]["extras"]["task_type"] == "SEQ_CLS"
    assert cfg["optimizer"]["lr"] == 5e-3 and isinstance(cfg["optimizer"]["name"], str)
    assert cfg["training"]["max_steps"] == 40 and cfg["training"]["batch_size"] == 8
    assert cfg["training"]["extras"]["lr_scheduler_type"] == "linear"
    assert log.events[0].payload["meta"]["framework"] == "huggingface"

    steps = _events(path, "train_step")
    assert [e.step for e in steps] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert all(math.isfinite(e.payload["loss"]) and e.payload["lr"] > 0 for e in steps)
    audits = [e for e in _events(path, "metrics") if e.payload["kind"] == "lora_audit"]
    assert [e.step for e in audits] == [10, 20, 30, 40]
    assert audits[-1].payload["metrics"]["n_layers"] == 6 and audits[-1].payload["metrics"]["r"] == 16
    evals = [(e.step, e.payload["split"]) for e in _events(path, "eval")]
    assert evals == [(20, "val"), (20, "train"), (40, "val"), (40, "train")]

    s = summarize(log)
    assert s.status == "ok" and s.gap is not None and s.gap > 0
    assert s.train_eval.metrics["n"] == 64 and s.heldout.metrics["n"] == 64
    assert 0.0 <= s.train_eval.metrics["accuracy"] <= 1.0

    report = monitor_run(path)
    assert "gap_unavailable" not in {a.code for a in report.alerts}
    assert report.task_profile == "easy_classification"

    # the live audit is the same audit as the offline one on the saved adapter
    from gradience.audit import audit_adapter

    trainer.model.save_pretrained(tmp_path / "adapter")
    offline = audit_adapter(tmp_path / "adapter").telemetry_metrics()
    live = audits[-1].payload["metrics"]
    for key in ("stable_rank_mean", "utilization_mean", "energy_rank_90_p90", "total_lora_params"):
        assert live[key] == pytest.approx(offline[key], rel=1e-6), key

    res = CliRunner().invoke(app, ["monitor", str(path), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["summary"]["gap"] == pytest.approx(s.gap)


class _Boom(tf.TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 7:
            raise RuntimeError("injected failure")


def test_exception_during_training_writes_run_end_error(make_trainer) -> None:
    cb = GradienceCallback(audit_every=0)
    trainer = make_trainer([cb, _Boom()], eval_steps=0)
    with pytest.raises(RuntimeError, match="injected failure"):
        train_with_telemetry(trainer)
    end = _events(Path(trainer.args.output_dir) / "run.jsonl", "run_end")
    assert len(end) == 1 and end[0].payload["status"] == "error"
    assert "injected failure" in end[0].payload["reason"]


class _StopAt(tf.TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 10:
            control.should_training_stop = True


def test_early_stop_ends_ok_with_reason_and_final_audit(make_trainer) -> None:
    cb = GradienceCallback(audit_every=25)
    trainer = make_trainer([cb, _StopAt()], eval_steps=0)
    with cb.track():
        trainer.train()
    path = Path(trainer.args.output_dir) / "run.jsonl"
    (end,) = _events(path, "run_end")
    assert end.payload["status"] == "ok" and "stopped early at step 10 of 40" in end.payload["reason"]
    audits = [e.step for e in _events(path, "metrics") if e.payload["kind"] == "lora_audit"]
    assert audits == [10]  # the final adapter is always audited


def test_split_eval_metrics_prefixes() -> None:
    rows = split_eval_metrics(
        {
            "eval_loss": 1.0,
            "eval_accuracy": 0.75,
            "eval_runtime": 0.1,
            "eval_samples_per_second": 9.0,
            "test_loss": 2.0,
            "test_f1": 0.5,
            "epoch": 1.0,
        }
    )
    by_split = {split: (prefix, row) for split, prefix, row in rows}
    assert by_split["val"] == ("eval", {"loss": 1.0, "ppl": pytest.approx(math.e), "accuracy": 0.75})
    assert by_split["test"] == ("test", {"loss": 2.0, "ppl": pytest.approx(math.e**2), "f1": 0.5})


def test_vnext_import_path() -> None:
    from gradience.vnext.integrations.hf import GradienceCallback as Compat

    assert Compat is GradienceCallback
