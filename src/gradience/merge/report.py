"""Typed merge-audit and merge results, serialised in one place (`to_json`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MERGE_AUDIT_SCHEMA = "gradience.merge_audit/v1"
MERGE_SCHEMA = "gradience.merge/v1"


class Thresholds(BaseModel):
    """Layer verdicts, by the cosine c of ΔW_A and ΔW_B in the Frobenius inner product:
    aligned c ≥ +cosine, conflicting c ≤ −cosine, orthogonal in between. A norm ratio beyond
    `imbalance` (either way) adds a note: one update would dominate an equal-weight merge."""

    cosine: float = 0.1
    imbalance: float = 10.0


class LayerCompat(BaseModel):
    name: str
    module_type: str
    out_features: int
    in_features: int
    rank_a: int
    rank_b: int
    numerical_rank_a: int
    numerical_rank_b: int
    norm_a: float  # ‖ΔW_A‖_F with the PEFT scale
    norm_b: float
    norm_ratio: float | None  # ‖ΔW_B‖_F / ‖ΔW_A‖_F
    inner_product: float  # ⟨ΔW_A, ΔW_B⟩_F, exact from r×r products
    cosine: float | None  # ⟨ΔW_A, ΔW_B⟩_F / (‖ΔW_A‖_F·‖ΔW_B‖_F)
    col_cosines: list[float]  # top-k cosines of the principal angles between column spaces
    row_cosines: list[float]
    col_overlap: float  # mean cos² over all principal angles
    row_overlap: float
    verdict: str  # aligned | orthogonal | conflicting | empty
    notes: list[str] = Field(default_factory=list)


class CompatSummary(BaseModel):
    n_shared: int
    only_in_a: list[str]
    only_in_b: list[str]
    verdicts: dict[str, int]
    global_cosine: float | None  # cosine of the two whole-adapter updates (all shared layers)
    col_overlap_mean: float
    row_overlap_mean: float
    conflicting_energy_share: float  # share of ‖ΔW_A‖²+‖ΔW_B‖² in conflicting layers
    recommendation: str


class MergeAuditReport(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    schema_: str = Field(MERGE_AUDIT_SCHEMA, alias="schema")
    gradience_version: str
    adapter_a: str
    adapter_b: str
    base_model: str | None
    thresholds: Thresholds
    top_k: int
    summary: CompatSummary
    layers: list[LayerCompat]

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class MergedLayer(BaseModel):
    name: str
    module_type: str
    sources: int  # how many inputs adapt this layer
    input_ranks: list[int]
    rank: int
    frob_norm: float  # ‖ΔW_merged‖_F before any truncation
    retained_energy: float  # of ‖ΔW_merged‖²_F kept by the written rank-`rank` factors
    frob_error: float  # ‖ΔW_merged − written‖_F (Eckart–Young optimum at `rank`)


class MergeReport(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    schema_: str = Field(MERGE_SCHEMA, alias="schema")
    gradience_version: str
    method: str
    sources: list[str]
    weights: list[float]
    options: dict[str, Any]
    base_model: str | None
    destination: str
    carried_keys: list[str]
    head_from: str | None
    lora_params: int
    layers: list[MergedLayer]

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)
