"""The candidates: SVD truncations of the adapter on a ladder, largest first, from the r×r cores.

Each candidate is a ``compress.CompressionPlan``; its per-layer ranks come from the same
``choose_ranks`` over the same spectra that ``compress_adapter`` computes, and its factors from
the same ``truncate_factors`` on the same cores, cast to the stored dtype. So what is evaluated
is what ``compress`` writes for that plan, without a folder per candidate (``run`` checks the
certified folder's ranks against the evaluated ones). B·A is never formed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from gradience.audit import Adapter, AdapterError, LayerShape, LayerSpec
from gradience.audit.spectra import Workspace, gram_cores, spectrum_from_grams
from gradience.bench import BenchInputError
from gradience.compress import CompressError, CompressionPlan, choose_ranks, truncate_factors

LadderKind = Literal["budget", "rank", "energy", "rules"]
LADDERS: tuple[str, ...] = ("budget", "rank", "energy", "rules")
DEFAULT_STEPS: dict[str, tuple[float, ...]] = {
    "budget": (0.5, 0.25, 0.125, 0.0625, 0.03125),  # of the adapter's LoRA parameters
    "energy": (0.99, 0.95, 0.9, 0.8, 0.6),  # of each layer's update energy ‖s·B·A‖²
    "rank": (),  # r/2, r/4, … 1
    "rules": (),  # the audit's rank rules (REPORTED_RULES), each a candidate; --steps names them
}


@dataclass
class Layer:
    """One layer's spectrum of s·B·A and the Gram cores it came from (2·r² floats)."""

    spec: LayerSpec
    sigma: np.ndarray
    cores: tuple[np.ndarray, np.ndarray]


@dataclass
class Candidate:
    name: str
    kind: str
    step: float | str  # a rule's name on the rules ladder
    plan: CompressionPlan
    ranks: dict[str, int]
    lora_params: int
    retained_energy: float
    min_layer_energy: float
    width: int = field(repr=False, default=1)  # Σ (in + out) over layers: params per unit of rank

    @property
    def rank_equivalent(self) -> float:
        return self.lora_params / self.width


def scan(adapter: Adapter) -> list[Layer]:
    """Pass 1 of ``compress``: cores and σ(s·B·A) per layer, one layer in memory at a time."""
    out = []
    ws = Workspace()
    for spec, a, b in adapter.iter_factors():
        cores = gram_cores(a, b, ws)
        if not cores.finite:
            raise CompressError(f"layer {spec.name} has NaN/Inf in its LoRA factors; it cannot be truncated")
        ga, gb = cores.ga.copy(), cores.gb.copy()
        out.append(Layer(spec, abs(spec.scale) * spectrum_from_grams(ga, gb), (ga, gb)))
    return out


def parse_steps(text: str | None, kind: str) -> tuple[float | str, ...] | None:
    """Numbers for budget/rank/energy; rule names (energy@T, knee, erank, oht) for `rules`."""
    if text is None:
        return None
    if kind == "rules":
        from gradience.audit.rules import parse_rule

        names = [x for x in text.replace(",", " ").split() if x]
        if not names:
            raise BenchInputError("--steps is empty")
        try:
            return tuple(parse_rule(x).name for x in names)
        except AdapterError as exc:
            raise BenchInputError(f"--steps: {exc}") from None
    try:
        steps = tuple(float(x) for x in text.replace(",", " ").split())
    except ValueError:
        raise BenchInputError(f"--steps must be numbers such as 0.5,0.25,0.125, got {text!r}") from None
    if not steps:
        raise BenchInputError("--steps is empty")
    top = "any positive rank" if kind == "rank" else "(0, 1)"
    if any(s <= 0 or (kind != "rank" and s >= 1) for s in steps):
        raise BenchInputError(f"--steps for the {kind} ladder must be in {top}, got {text!r}")
    return steps


def _plan(kind: str, step: float | str, max_r: int) -> tuple[str, CompressionPlan]:
    if kind == "rules":
        return f"rule_{step}", CompressionPlan(rank_rule=str(step))
    step = float(step)
    if kind == "budget":
        return f"budget_{100 * step:g}", CompressionPlan(budget_ratio=step)
    if kind == "energy":
        return f"energy_{step:g}", CompressionPlan(energy=step)
    rank = int(step) if step >= 1 else max(1, round(step * max_r))
    return f"rank_{rank}", CompressionPlan(rank=rank)


def default_plans(
    layers: list[Layer], kind: str, steps: tuple[float | str, ...] | None
) -> list[tuple[str, float | str, CompressionPlan]]:
    if kind not in LADDERS:
        raise BenchInputError(f"--ladder must be one of {', '.join(LADDERS)}, got {kind!r}")
    max_r = max(la.spec.r for la in layers)
    if steps is None and kind == "rules":
        from gradience.audit.rules import REPORTED_RULES

        steps = REPORTED_RULES
    if steps is None:
        steps = DEFAULT_STEPS[kind]
        if kind == "rank":
            halvings = []
            k = max_r // 2
            while k >= 1:
                halvings.append(float(k))
                k //= 2
            steps = tuple(halvings)
    out = []
    for s in steps:
        name, plan = _plan(kind, s, max_r)
        out.append((name, s, plan))
    return out


def _no_audit() -> dict[str, int]:
    raise CompressError("certify's candidates are rank, energy, budget or rank_pattern plans, not from_audit")


def candidate(
    layers: list[Layer], name: str, kind: str, step: float | str, plan: CompressionPlan
) -> Candidate:
    """The plan's per-layer ranks (``compress.choose_ranks`` on the same spectra) and what they keep."""
    shapes = [LayerShape(la.spec.name, la.spec.r, la.spec.in_features, la.spec.out_features) for la in layers]
    plan.check()
    ranks = choose_ranks(plan, shapes, [la.sigma for la in layers], _no_audit)
    energy = [(la.sigma**2).astype("float64") for la in layers]
    kept = [float(e[: ranks[la.spec.name]].sum()) for e, la in zip(energy, layers, strict=True)]
    totals = [float(e.sum()) for e in energy]
    per = [k / t if t > 0 else 1.0 for k, t in zip(kept, totals, strict=True)]
    return Candidate(
        name, kind, step, plan, ranks, sum(s.params_at(ranks[s.name]) for s in shapes),
        sum(kept) / sum(totals) if sum(totals) > 0 else 1.0, min(per), sum(s.in_features + s.out_features for s in shapes),
    )  # fmt: skip


def build(
    layers: list[Layer], plans: list[tuple[str, float | str, CompressionPlan]], kind: str
) -> tuple[list[Candidate], list[str]]:
    """Candidates smaller than the adapter, distinct, largest first; and a note for each step
    dropped (below the smallest possible adapter, the same ranks as a larger step, no cut)."""
    full = sum(la.spec.params for la in layers)
    cands: list[Candidate] = []
    notes: list[str] = []
    seen: dict[tuple[tuple[str, int], ...], str] = {}
    for name, step, plan in plans:
        try:
            cand = candidate(layers, name, kind, step, plan)
        except CompressError as exc:
            notes.append(f"{name}: skipped ({exc})")
            continue
        key = tuple(sorted(cand.ranks.items()))
        if cand.lora_params >= full:
            notes.append(f"{name}: skipped (keeps every layer's rank: no smaller adapter)")
        elif key in seen:
            notes.append(f"{name}: skipped (the same ranks as {seen[key]})")
        else:
            seen[key] = name
            cands.append(cand)
    cands.sort(key=lambda c: -c.lora_params)
    return cands, notes


def factors(
    adapter: Adapter, layers: list[Layer], ranks: dict[str, int] | None
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Each layer's (A, B) as ``compress`` writes them for these ranks (None: the adapter as stored):
    kept layers as read, truncated ones from the kept cores, in float64, then cast to the stored dtype."""
    from gradience.audit.store import decode, encode

    out = {}
    ws = Workspace()
    for la in layers:
        a, b = adapter.factors(la.spec)
        k = la.spec.r if ranks is None else ranks[la.spec.name]
        if k < la.spec.r:
            a64, b64 = ws.f64(a, b)
            a2, b2 = truncate_factors(a64, b64, k, la.cores)
            codes = adapter.stored(la.spec.a_key)[0], adapter.stored(la.spec.b_key)[0]
            # the numbers compress writes: the same encode to the stored dtype, read back
            a, b = (decode(encode(x.reshape(x.shape), c), c) for x, c in zip((a2, b2), codes, strict=True))
        out[la.spec.name] = (
            torch.from_numpy(np.ascontiguousarray(a)),
            torch.from_numpy(np.ascontiguousarray(b)),
        )
    return out
