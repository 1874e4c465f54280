"""The output adapter_config.json: r, lora_alpha, rank_pattern and alpha_pattern chosen so that
PEFT resolves, for every layer, the new rank and *exactly* the layer's old scale.

PEFT resolves a pattern key K for a module by `re.match(rf"(.*\\.)?({K})$", name)`, first match in
dict order. We key by the full module path, `re.escape`d (a dot must not match any character),
and anchor it with `^` when that path is also the dotted tail of another adapted module's path
(e.g. `model.layers.0.q_proj` inside `vision.model.layers.0.q_proj`), so no key can capture a
module it was not written for. Layers at the default r / alpha are left unlisted.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from gradience.audit import AdapterConfig


@dataclass(frozen=True)
class LayerTarget:
    """What PEFT must resolve for one layer of the output."""

    name: str
    rank: int
    alpha: float
    scale: float  # the scale PEFT must compute from (rank, alpha): the original's unless α was kept


def pattern_keys(names: list[str]) -> dict[str, str]:
    """module path → a pattern key that PEFT's regex matches for that module only."""
    tails = set()  # every dotted tail of every path (linear in the paths, not quadratic)
    for other in names:
        parts = other.split(".")
        tails.update(".".join(parts[i:]) for i in range(1, len(parts)))
    return {name: ("^" if name in tails else "") + re.escape(name) for name in names}


def _json_number(x: float) -> float | int:
    return int(x) if float(x).is_integer() and abs(x) < 2**53 else x


def build_config(raw: dict[str, Any], targets: list[LayerTarget], rslora: bool) -> dict[str, Any]:
    """The input config with r, lora_alpha, rank_pattern, alpha_pattern replaced; every other field
    (base model, task type, target_modules, modules_to_save, …) is kept as it was."""
    ranks = Counter(t.rank for t in targets)
    alphas = Counter(t.alpha for t in targets)
    default_r = max(ranks, key=lambda k: (ranks[k], k))
    default_alpha = max(alphas, key=lambda a: (alphas[a], a))
    keys = pattern_keys([t.name for t in targets])
    out = dict(raw)
    out["r"] = int(default_r)
    out["lora_alpha"] = _json_number(default_alpha)
    out["rank_pattern"] = {keys[t.name]: int(t.rank) for t in targets if t.rank != default_r}
    out["alpha_pattern"] = {keys[t.name]: _json_number(t.alpha) for t in targets if t.alpha != default_alpha}
    verify_config(out, targets)
    return out


def verify_config(cfg: dict[str, Any], targets: list[LayerTarget]) -> None:
    """Resolve every layer with PEFT's own rules (the audit's resolver) and check rank and scale.
    A mismatch is a bug in this module, never bad input, so it is an AssertionError-like failure."""
    resolved = AdapterConfig.model_validate(
        {k: cfg[k] for k in ("r", "lora_alpha", "use_rslora", "rank_pattern", "alpha_pattern") if k in cfg}
    )
    for t in targets:
        r = resolved.rank_for(t.name)
        scale = resolved.scale_for(t.name, r)
        if r != t.rank or not math.isclose(scale, t.scale, rel_tol=1e-14, abs_tol=0.0):
            raise RuntimeError(
                f"internal error: output config resolves {t.name} to r={r}, scale={scale!r}; "
                f"expected r={t.rank}, scale={t.scale!r}"
            )
