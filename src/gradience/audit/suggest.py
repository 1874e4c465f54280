"""Rank suggestions: one snapping rule, exact parameter counts, a global budget allocator,
and other tools' named truncation rules so users can map one onto another."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gradience.audit.metrics import energy_rank, smallest_k


def default_allowed_ranks(max_rank: int) -> list[int]:
    """1, 2, 4, 8, … up to (and including the first power of two ≥) max_rank."""
    ranks, k = [], 1
    while True:
        ranks.append(k)
        if k >= max_rank:
            return ranks
        k *= 2


def snap_rank(value: float, allowed: Sequence[int], cap: int) -> int:
    """THE snapping rule: round up to the next allowed rank, then cap at the layer's current r."""
    need = max(1, math.ceil(value - 1e-9))
    above = [k for k in sorted(allowed) if k >= need]
    return int(min(above[0] if above else cap, cap))


@dataclass(frozen=True)
class LayerShape:
    """What a rank decision needs to know about one layer."""

    name: str
    r: int
    in_features: int
    out_features: int

    def params_at(self, rank: int) -> int:
        return rank * (self.in_features + self.out_features)


def lora_params_at(layers: Sequence[LayerShape], ranks: dict[str, int] | int) -> int:
    """Exact LoRA parameters at a uniform rank (capped per layer) or a per-layer rank map."""
    if isinstance(ranks, int):
        return sum(layer.params_at(min(ranks, layer.r)) for layer in layers)
    return sum(layer.params_at(ranks[layer.name]) for layer in layers)


@dataclass
class Allocation:
    rank_pattern: dict[str, int]
    lora_params: int
    retained_energy: float


def allocate(
    layers: Sequence[LayerShape],
    spectra: Sequence[np.ndarray],
    *,
    budget_params: int | None = None,
    energy: float | None = None,
    min_rank: int = 1,
) -> Allocation:
    """Global allocator: keep singular values across all layers, largest σ² first, until the
    LoRA-parameter budget or the retained-energy target is met. σ are of the scaled update s·B·A,
    so layers compete by what they actually add to the model. Every layer keeps ≥ min_rank."""
    if (budget_params is None) == (energy is None):
        raise ValueError("give exactly one of budget_params or energy")
    floor = np.array([min(min_rank, la.r) for la in layers], dtype=np.int64)
    cost = np.array([la.in_features + la.out_features for la in layers], dtype=np.int64)
    energies = [np.asarray(s, dtype=np.float64)[: la.r] ** 2 for la, s in zip(layers, spectra, strict=True)]
    total = float(sum(e.sum() for e in energies))
    kept = float(sum(e[:f].sum() for e, f in zip(energies, floor, strict=True)))
    used = int((floor * cost).sum())
    # candidates beyond each layer's floor, largest σ² first; ties keep (layer, index) order so
    # every layer is taken as a prefix of its own spectrum
    layer_ix = np.concatenate(
        [np.full(len(e) - f, j) for j, (e, f) in enumerate(zip(energies, floor, strict=True))]
    )
    energy_c = np.concatenate([e[f:] for e, f in zip(energies, floor, strict=True)])
    order = np.lexsort((layer_ix, -energy_c)) if energy_c.size else np.zeros(0, dtype=np.int64)
    ranks = floor.copy()
    if energy is not None:
        need = energy * total - kept
        csum = np.cumsum(energy_c[order])
        n_take = 0 if need <= 0 else min(len(order), int(np.searchsorted(csum, need, side="left")) + 1)
        taken = order[:n_take]
        np.add.at(ranks, layer_ix[taken], 1)
        used += int(cost[layer_ix[taken]].sum())
        kept += float(energy_c[taken].sum())
    else:
        for k in order:  # greedy knapsack: a layer that no longer fits can never fit again
            j = layer_ix[k]
            if used + cost[j] <= budget_params:
                ranks[j] += 1
                used += int(cost[j])
                kept += float(energy_c[k])
    pattern = {la.name: int(r) for la, r in zip(layers, ranks, strict=True)}
    return Allocation(pattern, used, kept / total if total > 0 else 1.0)


# Named rules of other tools, per layer, on σ descending (they are scale invariant).
def kohya_sv_ratio(sigma: np.ndarray, p: float) -> int:
    """kohya resize_lora `sv_ratio`: keep σ_i > σ_1 / p."""
    return max(1, int((sigma > sigma[0] / p).sum())) if sigma.size and sigma[0] > 0 else 1


def kohya_sv_cumulative(sigma: np.ndarray, p: float) -> int:
    """kohya `sv_cumulative`: smallest k with Σ_{i≤k} σ_i ≥ p·Σσ (a kept rank is at least 1)."""
    return max(1, smallest_k(sigma, p))


def kohya_sv_fro(sigma: np.ndarray, p: float) -> int:
    """kohya `sv_fro`: smallest k with Σ_{i≤k} σ_i² ≥ p²·Σσ²."""
    return max(1, energy_rank(sigma, p**2))


def peft_energy(sigma: np.ndarray, p: float) -> int:
    """PEFT `convert_to_lora` with a float rank: smallest k with Σ_{i≤k} σ_i² ≥ p·Σσ²."""
    return max(1, energy_rank(sigma, p))


NAMED_RULES = {
    "kohya_sv_ratio": (kohya_sv_ratio, 10.0),
    "kohya_sv_cumulative": (kohya_sv_cumulative, 0.9),
    "kohya_sv_fro": (kohya_sv_fro, 0.9),
    "peft_energy": (peft_energy, 0.9),
}
