"""The experimental guard: real fault injection into a Trainer run, and the mechanics in isolation."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import transformers as tf

from gradience.integrations import GuardConfig, LoRAGuard
from gradience.integrations.hf import GradienceCallback
from gradience.monitor import monitor_run
from gradience.telemetry import read_telemetry

FAST = GuardConfig(snapshot_every=5, ring_size=5, cooldown_steps=3, max_rollbacks=2, window_steps=50)


def _lora_params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _guard_actions(path: Path) -> list[tuple[int, str]]:
    events = read_telemetry(path, strict=True).events
    return [
        (e.step, e.payload["metrics"]["action"])
        for e in events
        if e.event == "metrics"
        and e.payload["kind"] == "guard"
        and e.payload["metrics"]["action"] != "snapshot"
    ]


class _PoisonWeights(tf.TrainerCallback):
    """Writes a NaN into a live lora_A weight right before step `at` runs its forward pass."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step + 1 == self.at:
            p = next(p for n, p in model.named_parameters() if "lora_A" in n)
            with torch.no_grad():
                p.view(-1)[0] = float("nan")


class _PoisonGrads(tf.TrainerCallback):
    """From step `at` on, every gradient reaching the lora_B weights is NaN (a backward hook)."""

    def __init__(self, at: int) -> None:
        self.at, self.handles = at, []

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step + 1 == self.at and not self.handles:
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    self.handles.append(p.register_hook(lambda g: torch.full_like(g, float("nan"))))


class _Record(tf.TrainerCallback):
    """Trainable weights and AdamW first moments after chosen steps."""

    def __init__(self, steps: set[int]) -> None:
        self.steps, self.weights, self.moments = steps, {}, {}

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        if state.global_step in self.steps:
            self.weights[state.global_step] = _lora_params(model)
            st = optimizer.state_dict()["state"]
            self.moments[state.global_step] = {k: v["exp_avg"].clone() for k, v in st.items()}


def test_nan_in_lora_weights_is_rolled_back_and_training_finishes(make_trainer) -> None:
    rec = _Record({10, 12})
    cb = GradienceCallback(audit_every=20, guard=FAST)
    trainer = make_trainer([_PoisonWeights(at=12), cb, rec], eval_steps=0)
    trainer.train()
    path = Path(trainer.args.output_dir) / "run.jsonl"

    assert _guard_actions(path) == [(12, "rollback")]
    (alert,) = [e for e in read_telemetry(path).events if e.event == "alert"]
    assert (
        alert.payload["code"] == "guard_rollback" and alert.payload["context"]["reason"] == "nonfinite_loss"
    )
    assert alert.payload["context"]["restored_step"] == 10
    # the bad step was never applied: weights and optimizer moments after step 12 == after step 10
    for name, w in rec.weights[10].items():
        assert torch.equal(rec.weights[12][name], w), name
    for k, m in rec.moments[10].items():
        assert torch.equal(rec.moments[12][k], m)
    assert trainer.state.global_step == 40
    assert all(torch.isfinite(p).all() for p in _lora_params(trainer.model).values())
    end = [e for e in read_telemetry(path).events if e.event == "run_end"][-1]
    assert end.payload["status"] == "ok"
    assert "guard_intervention" in {a.code for a in monitor_run(path).alerts}


def test_persistent_nan_gradients_abort_after_max_rollbacks(make_trainer) -> None:
    cb = GradienceCallback(audit_every=0, guard=FAST)
    trainer = make_trainer([_PoisonGrads(at=12), cb], eval_steps=0)
    trainer.train()
    path = Path(trainer.args.output_dir) / "run.jsonl"

    assert _guard_actions(path) == [
        (12, "rollback"),
        (13, "skip"),
        (14, "skip"),
        (15, "rollback"),
        (16, "skip"),
        (17, "skip"),
        (18, "abort"),
    ]
    assert trainer.state.global_step == 18  # stopped, not run to 40
    assert all(torch.isfinite(p).all() for p in _lora_params(trainer.model).values())
    events = read_telemetry(path, strict=True).events
    assert [e.payload["status"] for e in events if e.event == "run_end"] == ["aborted"]
    codes = [e.payload["code"] for e in events if e.event == "alert"]
    assert codes.count("guard_rollback") == 2 and codes[-1] == "guard_abort"
    report = monitor_run(path)
    assert {"guard_abort", "guard_intervention"} <= {a.code for a in report.alerts}
    assert report.exit_code == 1


def _toy() -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    return model, torch.optim.AdamW(model.parameters(), lr=1e-2), torch.randn(8, 4)


def test_grad_norm_threshold_sees_the_pre_clip_norm() -> None:
    model, opt, x = _toy()
    events: list[tuple] = []
    guard = LoRAGuard(GuardConfig(snapshot_every=2, grad_norm_threshold=10.0), lambda *a: events.append(a))
    guard.attach(model, opt, step=0)

    def step(n: int, scale: float) -> bool:
        guard.begin_step()
        (model(x).pow(2).mean() * scale).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # what the Trainer does before callbacks
        stop = guard.before_optimizer_step(n, opt)
        opt.step()
        opt.zero_grad()
        guard.after_step(n, opt)
        return stop

    for n in (1, 2):
        assert not step(n, 1.0)
    good = _lora_params(model)
    moments = {k: v["exp_avg"].clone() for k, v in opt.state_dict()["state"].items()}
    assert not step(3, 1e6)  # clipped to norm 1, but the pre-clip norm is ~1e6
    (roll,) = [e for e in events if e[2] == "guard_rollback"]
    assert roll[4]["reason"] == "grad_norm" and roll[4]["grad_norm"] > 1e3 and roll[4]["restored_step"] == 2
    for name, w in _lora_params(model).items():
        assert torch.equal(w, good[name])
    for k, v in opt.state_dict()["state"].items():
        assert torch.equal(v["exp_avg"], moments[k])
    guard.detach()


def test_repeated_failure_steps_further_back_in_the_ring() -> None:
    model, opt, x = _toy()
    events: list[tuple] = []
    cfg = GuardConfig(snapshot_every=1, ring_size=3, cooldown_steps=0, max_rollbacks=5, window_steps=100)
    guard = LoRAGuard(cfg, lambda *a: events.append(a))
    guard.attach(model, opt, step=0)
    for n in range(1, 5):
        guard.begin_step()
        loss = model(x).pow(2).mean() * (math.nan if n >= 3 else 1.0)
        loss.backward()
        guard.before_optimizer_step(n, opt)
        opt.step()
        opt.zero_grad()
        guard.after_step(n, opt)
    restored = [e[4]["restored_step"] for e in events if e[2] == "guard_rollback"]
    assert restored == [2, 1]  # snapshot 2 failed again after its restore, so the next goes to 1
    assert [s.step for s in guard.ring] == [0, 1]


def test_guard_defaults_match_spec() -> None:
    cfg = GuardConfig()
    assert (cfg.snapshot_every, cfg.ring_size, cfg.grad_norm_threshold) == (100, 5, 100.0)
    assert (cfg.cooldown_steps, cfg.max_rollbacks, cfg.window_steps) == (20, 3, 200)
    assert GradienceCallback().guard_config is None  # off by default
