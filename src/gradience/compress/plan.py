"""Compression plans and the per-layer rank decision for each strategy.

Ranks are decided from the audit's spectra of the *scaled* update s·B·A, so layers compete by
what they add to the model. `allowed_ranks` restricts only the strategies that choose ranks
(energy, budgets, from_audit); an explicit uniform `rank` or `rank_pattern` is used as given.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Literal, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict

from gradience.audit import AdapterError, LayerShape, allocate, energy_rank, pattern_key, snap_rank
from gradience.audit.rules import parse_rule
from gradience.compress.errors import CompressError

AlphaMode = Literal["keep_scale", "keep_alpha"]
SaveDtype = Literal["fp16", "bf16", "fp32"]
ALPHA_MODES: tuple[str, ...] = get_args(AlphaMode)
SAVE_DTYPES: tuple[str, ...] = get_args(SaveDtype)
Strategy = Literal[
    "rank", "energy", "budget_params", "budget_ratio", "from_audit", "rank_pattern", "rank_rule"
]
STRATEGIES: tuple[Strategy, ...] = (
    "rank",
    "energy",
    "budget_params",
    "budget_ratio",
    "from_audit",
    "rank_pattern",
    "rank_rule",
)


class CompressionPlan(BaseModel):
    """Exactly one strategy field set, plus its options.

    - `rank`: uniform rank K (capped at each layer's r).
    - `energy`: per layer, the smallest rank keeping fraction T of ‖s·B·A‖²_F.
    - `budget_params` / `budget_ratio`: global allocation across layers (the audit's allocator:
      largest σ² first) under a LoRA-parameter budget, absolute or as a fraction of today's.
    - `from_audit`: the audit's `per_layer` suggestion (snap(energy_rank_90 × margin)).
    - `rank_pattern`: explicit ranks; keys resolve like PEFT's rank_pattern (a full layer name,
      or a regex `K` matching `(.*\\.)?(K)$`); unlisted layers keep their rank.
    - `rank_rule`: per layer, the rank under a rule of `gradience.audit.rules` (energy@T, knee,
      erank, oht), snapped to `allowed_ranks` when given.
    """

    model_config = ConfigDict(extra="forbid")

    rank: int | None = None
    energy: float | None = None
    budget_params: int | None = None
    budget_ratio: float | None = None
    from_audit: bool = False
    rank_pattern: dict[str, int] | None = None
    rank_rule: str | None = None
    allowed_ranks: list[int] | None = None
    per_layer_margin: float = 1.0
    # keep_scale: each layer's α is rescaled so PEFT's scale stays (ΔW is the rank-k truncation);
    # keep_alpha: α stays and the factors absorb the scale change (the same ΔW, exactly).
    alpha_mode: AlphaMode = "keep_scale"
    dtype: SaveDtype | None = None  # of the written LoRA factors; None: as read

    def chosen(self) -> list[Strategy]:
        return [
            s for s in STRATEGIES if (getattr(self, s) is not None if s != "from_audit" else self.from_audit)
        ]

    @property
    def strategy(self) -> Strategy:
        self.check()
        return self.chosen()[0]

    def check(self) -> None:
        """Validate the plan; every problem is a CompressError naming the field."""
        chosen = self.chosen()
        if len(chosen) != 1:
            got = ", ".join(chosen) or "none"
            raise CompressError(
                "choose exactly one strategy: rank, energy, budget_params, budget_ratio, from_audit, "
                f"rank_pattern or rank_rule (got {got})"
            )
        if self.rank is not None and self.rank < 1:
            raise CompressError(f"rank must be ≥ 1, got {self.rank}")
        if self.energy is not None and not 0.0 < self.energy <= 1.0:
            raise CompressError(f"energy must be in (0, 1], got {self.energy}")
        if self.budget_params is not None and self.budget_params < 1:
            raise CompressError(f"budget_params must be ≥ 1, got {self.budget_params}")
        if self.budget_ratio is not None and not 0.0 < self.budget_ratio <= 1.0:
            raise CompressError(f"budget_ratio must be in (0, 1], got {self.budget_ratio}")
        if self.per_layer_margin <= 0:
            raise CompressError(f"per_layer_margin must be > 0, got {self.per_layer_margin}")
        if self.allowed_ranks is not None and (not self.allowed_ranks or min(self.allowed_ranks) < 1):
            raise CompressError(f"allowed_ranks must be positive integers, got {self.allowed_ranks}")
        if self.rank is not None and self.allowed_ranks and self.rank not in self.allowed_ranks:
            raise CompressError(f"rank {self.rank} is not in allowed_ranks {sorted(self.allowed_ranks)}")
        if self.rank_rule is not None:
            try:
                parse_rule(self.rank_rule)
            except AdapterError as exc:
                raise CompressError(str(exc)) from None
        for key, k in (self.rank_pattern or {}).items():
            if int(k) < 1:
                raise CompressError(f"rank_pattern[{key!r}] must be ≥ 1, got {k}")


def choose_ranks(
    plan: CompressionPlan,
    shapes: list[LayerShape],
    spectra: list[np.ndarray],
    audit_suggestion: Callable[[], dict[str, int]],
) -> dict[str, int]:
    """The new rank of every layer (≤ its current r) under the plan. `spectra` are σ of each
    layer's scaled update s·B·A; `audit_suggestion` gives the audit's per-layer rank_pattern
    (called only for `from_audit`, so other strategies need no second audit pass)."""
    strategy = plan.strategy
    allowed = sorted(set(plan.allowed_ranks)) if plan.allowed_ranks else None
    if strategy == "rank":
        return {la.name: min(int(plan.rank or 1), la.r) for la in shapes}
    if strategy == "energy":
        ranks = {}
        for la, sigma in zip(shapes, spectra, strict=True):
            need = max(1, energy_rank(sigma, float(plan.energy or 1.0)))
            ranks[la.name] = snap_rank(need, allowed, la.r) if allowed else min(need, la.r)
        return ranks
    if strategy == "rank_rule":
        rule = parse_rule(str(plan.rank_rule))
        ranks = {}
        for la, sigma in zip(shapes, spectra, strict=True):
            need = rule(sigma)
            ranks[la.name] = snap_rank(need, allowed, la.r) if allowed else min(need, la.r)
        return ranks
    if strategy == "from_audit":
        pattern = audit_suggestion()
        return {la.name: int(pattern[la.name]) for la in shapes}
    if strategy == "rank_pattern":
        return _explicit(plan.rank_pattern or {}, shapes)
    total = sum(la.params_at(la.r) for la in shapes)
    budget = int(plan.budget_params) if strategy == "budget_params" else int(float(plan.budget_ratio) * total)
    return _budget(shapes, spectra, budget, allowed)


def _explicit(pattern: dict[str, int], shapes: list[LayerShape]) -> dict[str, int]:
    keys = list(pattern)
    ranks, used = {}, set()
    for la in shapes:
        key = pattern_key(keys, la.name)
        if key is None:
            ranks[la.name] = la.r
            continue
        used.add(key)
        k = int(pattern[key])
        if k > la.r:
            raise CompressError(f"rank_pattern asks rank {k} for {la.name}, above its current r={la.r}")
        ranks[la.name] = k
    unused = [k for k in keys if k not in used]
    if unused:
        raise CompressError(f"rank_pattern key {unused[0]!r} matches no LoRA layer of the adapter")
    return ranks


def _budget(
    shapes: list[LayerShape], spectra: list[np.ndarray], budget: int, allowed: list[int] | None
) -> dict[str, int]:
    if allowed is None:
        ranks = allocate(shapes, spectra, budget_params=budget).rank_pattern
    else:
        ranks = _allocate_steps(shapes, spectra, budget, allowed)
    floor = sum(s.params_at(ranks[s.name]) for s in shapes)
    if floor > budget:
        raise CompressError(
            f"LoRA-parameter budget {budget:,} is below the smallest possible adapter "
            f"({floor:,} parameters at the smallest rank of every layer)"
        )
    return ranks


def _allocate_steps(
    shapes: list[LayerShape], spectra: list[np.ndarray], budget: int, allowed: list[int]
) -> dict[str, int]:
    """The audit allocator's rule (largest σ² first, a layer stops growing once its next step does
    not fit) in steps between the ranks the snapping rule can produce: the allowed ranks below r,
    and r itself. A step's priority is its mean σ² per added rank, so unit steps order exactly
    like `allocate`. σ is sorted descending, so a layer's step priorities never increase."""
    ladders = [sorted({a for a in allowed if a < s.r} | {s.r}) for s in shapes]
    pos = [0] * len(shapes)
    used = sum(s.params_at(ladder[0]) for s, ladder in zip(shapes, ladders, strict=True))
    heap: list[tuple[float, int]] = []

    def push(j: int) -> None:
        lad = ladders[j]
        if pos[j] + 1 < len(lad):
            lo, hi = lad[pos[j]], lad[pos[j] + 1]
            heapq.heappush(heap, (-float(np.mean(spectra[j][lo:hi] ** 2)), j))

    for j in range(len(shapes)):
        push(j)
    while heap:
        _, j = heapq.heappop(heap)
        lad, s = ladders[j], shapes[j]
        cost = s.params_at(lad[pos[j] + 1]) - s.params_at(lad[pos[j]])
        if used + cost > budget:
            continue
        used += cost
        pos[j] += 1
        push(j)
    return {s.name: ladders[j][pos[j]] for j, s in enumerate(shapes)}
