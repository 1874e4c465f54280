"""Typed compression results, serialised in one place (`CompressionReport.to_json`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

COMPRESS_SCHEMA = "gradience.compress/v1"


class LayerCompression(BaseModel):
    """One layer: old → new rank, what it keeps of ‖s·B·A‖²_F and what it costs.

    Energies are of the scaled update ΔW = s·B·A (what PEFT adds to the weight); `frob_error` is
    ‖ΔW − ΔW_k‖_F = sqrt(Σ_{i>k} σ_i²), the Eckart–Young optimum at rank k."""

    name: str
    module_type: str
    kind: str
    old_rank: int
    new_rank: int
    alpha: float
    scale: float
    old_params: int
    new_params: int
    retained_energy: float
    frob_norm: float  # ‖s·B·A‖_F before
    frob_error: float  # ‖s·B·A − (s·B·A)_k‖_F
    truncated: bool


class CompressionTotals(BaseModel):
    n_layers: int
    n_truncated: int
    lora_params_before: int
    lora_params_after: int
    lora_reduction: float
    other_params: int  # carried over unchanged: modules_to_save, lora_B biases, trainable tokens
    total_trainable_before: int
    total_trainable_after: int
    total_reduction: float
    retained_energy: float  # Σ kept σ² / Σ σ² over all layers
    min_layer_retained_energy: float


class CompressionReport(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    schema_: str = Field(COMPRESS_SCHEMA, alias="schema")
    gradience_version: str
    source: str
    destination: str
    strategy: str
    plan: dict[str, Any]
    split: str = "balanced"  # B' = U_k·√Σ_k, A' = √Σ_k·V_kᵀ
    dtypes: list[str]
    config: dict[str, Any]  # r, lora_alpha, use_rslora, rank_pattern, alpha_pattern written
    carried_keys: list[str]
    totals: CompressionTotals
    layers: list[LayerCompression]

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)
