"""What a merge is asked to do, validated before any adapter is read."""

from __future__ import annotations

import math
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict

from gradience.merge.errors import MergeError

Method = Literal["linear", "svd", "ties", "dare"]
METHODS: tuple[str, ...] = get_args(Method)
DEFAULT_DENSITY = {"ties": 0.2, "dare": 0.5}  # TIES' top-20 %; DARE keeps half (drop rate 0.5)


class MergePlan(BaseModel):
    """`weights` multiply each input's update as given (1, 1 adds both in full; default 1/N each).
    `rank`/`energy` truncate (svd, ties, dare): svd defaults to the largest input rank, ties/dare
    to the merged update's full numerical rank; linear is lossless and takes neither."""

    model_config = ConfigDict(extra="forbid")

    method: str
    weights: list[float] | None = None
    rank: int | None = None
    energy: float | None = None
    density: float | None = None
    seed: int = 0
    head_from: str | None = None
    allow_missing: bool = False
    dtype: Literal["fp32", "fp16", "bf16"] = "fp32"

    def resolved_weights(self, n: int) -> list[float]:
        """Check the plan against n inputs; the weights to use."""
        if self.method not in METHODS:
            raise MergeError(f"unknown merge method {self.method!r}: choose one of {', '.join(METHODS)}")
        if n < 2:
            raise MergeError(f"merge needs at least two adapters, got {n}")
        w = [1.0 / n] * n if self.weights is None else [float(x) for x in self.weights]
        if len(w) != n:
            raise MergeError(f"--weights has {len(w)} values for {n} adapters")
        if not all(math.isfinite(x) for x in w):
            raise MergeError(f"--weights must be finite numbers, got {w}")
        if not sum(w) > 0:
            raise MergeError(
                f"--weights must have a positive sum (got {sum(w):g}): the merge would be empty or negated"
            )
        if self.method == "ties" and min(w) < 0:
            raise MergeError("ties weights must be ≥ 0: they weight a sign election and a mean")
        if self.rank is not None and self.energy is not None:
            raise MergeError("give at most one of --rank and --energy")
        if self.method == "linear" and (self.rank is not None or self.energy is not None):
            raise MergeError("linear concatenates the factors without loss; use --method svd to truncate")
        if self.rank is not None and self.rank < 1:
            raise MergeError(f"--rank must be ≥ 1, got {self.rank}")
        if self.energy is not None and not 0.0 < self.energy <= 1.0:
            raise MergeError(f"--energy must be in (0, 1], got {self.energy}")
        if self.density is not None:
            if self.method not in DEFAULT_DENSITY:
                raise MergeError(f"--density applies to ties and dare, not {self.method}")
            if not 0.0 < self.density <= 1.0:
                raise MergeError(f"--density must be in (0, 1], got {self.density}")
        return w

    @property
    def density_used(self) -> float | None:
        return self.density if self.density is not None else DEFAULT_DENSITY.get(self.method)
