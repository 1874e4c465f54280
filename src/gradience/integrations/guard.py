"""Experimental training guard: catch a bad step BEFORE the optimizer applies it, roll back.

Why here and how:
- The Trainer's `logging_nan_inf_filter` hides NaN losses from the logs, and one NaN step
  poisons AdamW's moments for good, so checking logs afterwards is too late. The guard
  looks at each step's loss (a forward hook on the model) and its *pre-clip* gradient
  norm (post-accumulate-grad hooks on every trainable parameter; the Trainer clips before
  any callback runs) and decides in `on_pre_optimizer_step`, i.e. before `optimizer.step()`.
- A bad step is never applied: its gradients are dropped (`p.grad = None`, which every
  torch optimizer skips). On a rollback the trainable weights AND the optimizer state
  (moments, step counts) are restored from the latest good CPU snapshot; the current
  learning rates are kept, the LR scheduler is not rewound.
- Anti-thrash: within `cooldown_steps` after a rollback a trigger only drops the step; at
  most `max_rollbacks` rollbacks per `window_steps`; beyond that the guard restores the last
  good snapshot and stops training. A snapshot restored once and failing again before a
  newer one exists is discarded, so the next rollback reaches one step further back.
- fp16 AMP is not supported (its scaler produces inf gradients by design): the guard then
  disables its gradient checks and says so.
Every intervention (skip, rollback, abort) is an `alert` and a `metrics(kind="guard")`
event; snapshots are recorded as guard metrics only.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import BaseModel, Field

Emit = Callable[[str, int, str, str, dict[str, Any]], None]  # (severity, step, code, message, metrics)


class GuardConfig(BaseModel):
    """SPEC §1 defaults."""

    snapshot_every: int = Field(100, ge=1)
    ring_size: int = Field(5, ge=1)
    grad_norm_threshold: float = Field(100.0, gt=0)
    cooldown_steps: int = Field(20, ge=0)
    max_rollbacks: int = Field(3, ge=1)
    window_steps: int = Field(200, ge=1)
    restore_optimizer: bool = True


@dataclass
class Snapshot:
    step: int
    params: list[torch.Tensor]
    optimizer_state: dict[str, Any] | None
    restored: int = 0


def _to_cpu(obj: Any) -> Any:
    """Deep copy of an optimizer state_dict with every tensor cloned to CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to_cpu(v) for v in obj)
    return obj


@dataclass
class LoRAGuard:
    config: GuardConfig
    emit: Emit
    params: list[torch.nn.Parameter] = field(default_factory=list)
    ring: deque[Snapshot] = field(default_factory=deque)
    rollback_steps: list[int] = field(default_factory=list)
    last_rollback: int | None = None
    aborted: bool = False
    check_grads: bool = True
    _sq: dict[int, torch.Tensor] = field(default_factory=dict)
    _losses: list[torch.Tensor] = field(default_factory=list)
    _hooks: list[Any] = field(default_factory=list)

    # --- wiring ---------------------------------------------------------------------------

    def attach(self, model: torch.nn.Module, optimizer: Any, step: int, fp16: bool = False) -> None:
        self.ring = deque(maxlen=self.config.ring_size)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.check_grads = not fp16
        if fp16:
            self.emit(
                "warning",
                step,
                "guard_disabled",
                "fp16 AMP: gradient checks off (the scaler owns inf grads)",
                {"action": "disabled"},
            )
        for i, p in enumerate(self.params):
            self._hooks.append(p.register_post_accumulate_grad_hook(self._grad_hook(i)))
        self._hooks.append(model.register_forward_hook(self._loss_hook))
        self.snapshot(step, optimizer)

    def detach(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()

    def _grad_hook(self, i: int) -> Callable[[torch.Tensor], None]:
        def hook(p: torch.Tensor) -> None:
            if p.grad is not None:  # accumulated so far, before the Trainer clips
                self._sq[i] = p.grad.detach().float().pow(2).sum()

        return hook

    def _loss_hook(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
        if module.training and isinstance(loss, torch.Tensor):
            self._losses.append(loss.detach().float().reshape(-1))

    def begin_step(self) -> None:
        self._sq.clear()
        self._losses.clear()

    # --- decisions ------------------------------------------------------------------------

    def inspect(self) -> tuple[str | None, dict[str, Any]]:
        """(trigger reason or None, observed values) for the step about to be applied."""
        loss_ok = True
        if self._losses:
            loss_ok = bool(torch.isfinite(torch.cat(self._losses)).all())
        grad_norm, grads_ok = None, True
        if self.check_grads:
            if self._sq:  # pre-clip norm, recorded as gradients were accumulated
                grad_norm = float(torch.stack(list(self._sq.values())).sum().sqrt())
            grads = [p.grad.detach().float().pow(2).sum() for p in self.params if p.grad is not None]
            grads_ok = not grads or bool(
                torch.isfinite(torch.stack(grads).sum())
            )  # as the optimizer will see them
        seen = {"grad_norm": grad_norm, "loss_finite": loss_ok, "grads_finite": grads_ok}
        if not loss_ok:
            return "nonfinite_loss", seen
        if not grads_ok or (grad_norm is not None and not math.isfinite(grad_norm)):
            return "nonfinite_grad", seen
        if grad_norm is not None and grad_norm > self.config.grad_norm_threshold:
            return "grad_norm", seen
        return None, seen

    def before_optimizer_step(self, step: int, optimizer: Any) -> bool:
        """Call right before `optimizer.step()`. Returns True when training must stop."""
        if self.aborted:
            self._drop_grads()
            return True
        reason, seen = self.inspect()
        self.begin_step()
        if reason is None:
            return False
        self._drop_grads()
        ctx = {"reason": reason, **seen, "threshold": self.config.grad_norm_threshold}
        recent = [s for s in self.rollback_steps if s > step - self.config.window_steps]
        if self.last_rollback is not None and step - self.last_rollback < self.config.cooldown_steps:
            self._act("warning", step, "skip", f"bad step ({reason}) in cooldown: update dropped", ctx)
            return False
        if len(recent) >= self.config.max_rollbacks:
            snap = self._restore(optimizer, step_back=False)  # stop on the latest good state
            self.aborted = True
            msg = f"{len(recent)} rollbacks within {self.config.window_steps} steps; restored step {snap.step} and stopped"
            self._act(
                "error",
                step,
                "abort",
                msg,
                {**ctx, "restored_step": snap.step, "rollbacks_in_window": len(recent)},
            )
            return True
        snap = self._restore(optimizer)
        self.rollback_steps.append(step)
        self.last_rollback = step
        self._act(
            "warning",
            step,
            "rollback",
            f"bad step ({reason}): update dropped, weights and optimizer restored to step {snap.step}",
            {**ctx, "restored_step": snap.step, "rollbacks_in_window": len(recent) + 1},
        )
        return False

    def after_step(self, step: int, optimizer: Any) -> None:
        """Take a snapshot on schedule, unless cooling down or the weights are not finite."""
        if step % self.config.snapshot_every or self.aborted:
            return
        if self.last_rollback is not None and step - self.last_rollback < max(1, self.config.cooldown_steps):
            return  # never snapshot the rollback step itself (nothing new was learned)
        self.snapshot(step, optimizer)

    # --- mechanics ------------------------------------------------------------------------

    def snapshot(self, step: int, optimizer: Any) -> bool:
        with torch.no_grad():
            if not all(bool(torch.isfinite(p).all()) for p in self.params):
                return False
            params = [p.detach().to("cpu", copy=True) for p in self.params]
        state = (
            _to_cpu(optimizer.state_dict())
            if optimizer is not None and self.config.restore_optimizer
            else None
        )
        self.ring.append(Snapshot(step=step, params=params, optimizer_state=state))
        nbytes = sum(t.numel() * t.element_size() for t in params)
        self.emit(
            "info",
            step,
            "",
            "",
            {"action": "snapshot", "snapshot_step": step, "ring": len(self.ring), "bytes": nbytes},
        )
        return True

    def _restore(self, optimizer: Any, step_back: bool = True) -> Snapshot:
        if step_back and self.ring[-1].restored and len(self.ring) > 1:
            self.ring.pop()  # it failed again after being restored: go one further back
        snap = self.ring[-1]
        snap.restored += 1
        with torch.no_grad():
            for p, saved in zip(self.params, snap.params, strict=True):
                p.copy_(saved.to(device=p.device, dtype=p.dtype))
        if optimizer is not None and snap.optimizer_state is not None:
            lrs = [g["lr"] for g in optimizer.param_groups]
            optimizer.load_state_dict(_to_cpu(snap.optimizer_state))
            for g, lr in zip(optimizer.param_groups, lrs, strict=True):
                g["lr"] = lr  # keep the scheduler's current lr; only weights and moments go back
        return snap

    def _drop_grads(self) -> None:
        for p in self.params:
            p.grad = None

    def _act(self, severity: str, step: int, action: str, message: str, ctx: dict[str, Any]) -> None:
        self.emit(severity, step, f"guard_{action}", message, {"action": action, **ctx})
