"""Upstream 0.11's ``gradience truncate``: its flags onto a uniform-rank ``compress`` plan.

``--alpha-mode keep_ratio`` (upstream's default) keeps α/r, i.e. each layer's scale: our
``keep_scale``, exact also under rsLoRA (where upstream's α·k/r changes the scale).
``keep_alpha`` keeps α; upstream then lets the scale change (ΔW grows by r/k), we let the
factors absorb it so the written adapter is the rank-k truncation of the same ΔW — a
deliberate difference. ``--dtype`` defaults to fp16 as upstream's does.
"""

from __future__ import annotations

from gradience.compress import CompressionPlan

ALPHA_MODES = {"keep_ratio": "keep_scale", "keep_alpha": "keep_alpha"}


def truncate_plan(rank: int, alpha_mode: str, dtype: str) -> CompressionPlan:
    return CompressionPlan(rank=rank, alpha_mode=ALPHA_MODES[alpha_mode], dtype=dtype)  # type: ignore[arg-type]
