"""Training integrations: the HF `GradienceCallback` and the experimental guard.

`gradience.integrations.hf` imports transformers; it is loaded on first use so that
importing the guard alone stays light.

Public API:
    GradienceCallback(path=None, *, run_id=None, audit_every=50, guard=None, ...)
    train_with_telemetry(trainer, **train_kwargs)
    GuardConfig(snapshot_every=100, ring_size=5, grad_norm_threshold=100.0,
                cooldown_steps=20, max_rollbacks=3, window_steps=200, restore_optimizer=True)
    LoRAGuard(config, emit)
"""

from __future__ import annotations

from typing import Any

from .guard import GuardConfig, LoRAGuard

__all__ = ["GradienceCallback", "GuardConfig", "LoRAGuard", "train_with_telemetry"]


def __getattr__(name: str) -> Any:
    if name in ("GradienceCallback", "train_with_telemetry"):
        from . import hf

        return getattr(hf, name)
    raise AttributeError(name)
