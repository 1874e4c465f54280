"""The one registry of bench variants: config validation, building, naming and reporting read it.

A variant is a method (retrain at the suggested ranks, or SVD-truncate the probe) and the audit
suggestion that sets its ranks. Controls answer a question about the method (does placing the
ranks by layer matter?) and are never recommended.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RankSource = Literal["uniform_median", "uniform_p90", "per_layer", "per_layer_shuffled"]


@dataclass(frozen=True)
class Variant:
    name: str
    method: Literal["train", "truncate"]
    ranks: RankSource
    control: bool = False

    @property
    def uniform(self) -> bool:
        """One rank for every layer (its folder is `<name>_r<rank>`), else a per-layer pattern."""
        return self.ranks in ("uniform_median", "uniform_p90")


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("uniform_median", "train", "uniform_median"),
        Variant("uniform_p90", "train", "uniform_p90"),
        Variant("per_layer", "train", "per_layer"),
        Variant("per_layer_shuffled", "train", "per_layer_shuffled", control=True),
        Variant("truncate_median", "truncate", "uniform_median"),
        Variant("truncate_per_layer", "truncate", "per_layer"),
    )
}
CONTROLS = frozenset(name for name, v in VARIANTS.items() if v.control)
