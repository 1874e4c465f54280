"""Typed audit results, serialised in one place (`AuditReport.to_json`)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

AUDIT_SCHEMA = "gradience.audit/v1"


class BaseRelative(BaseModel):
    """The update's size against the base weight it is added to (`audit.base_norms`)."""

    base_key: str
    base_spectral_norm: float  # ‖W‖₂
    base_frob_norm: float  # ‖W‖_F
    spectral_ratio: float  # ‖ΔW‖₂ / ‖W‖₂
    frob_ratio: float  # ‖ΔW‖_F / ‖W‖_F
    method: str  # "exact" | "power" (see base_norms for the tolerance)


class TypeConcentration(BaseModel):
    n_layers: int
    energy_share: float  # this type's share of the total update energy
    hhi: float  # Herfindahl–Hirschman index of the shares within the type
    effective_layers: float  # 1/HHI within the type


class Concentration(BaseModel):
    """Which layers did the adapting: shares of Σ‖ΔW‖²_F (see `audit.concentration`)."""

    total_energy: float
    hhi: float
    effective_layers: float  # 1/HHI: n when all layers share equally, 1 when one does everything
    by_type: dict[str, TypeConcentration]
    top_layers: dict[str, float]  # the top-k layers by share, largest first


class BaseSummary(BaseModel):
    base_model: str
    fingerprint: str
    spectral_ratio_max: float
    spectral_ratio_median: float
    frob_ratio_max: float
    frob_ratio_median: float
    top_layers: list[str]  # largest ‖ΔW‖₂/‖W‖₂ first


class LayerAudit(BaseModel):
    name: str
    module_type: str
    kind: str = "linear"
    r: int
    alpha: float
    scale: float
    in_features: int
    out_features: int
    params: int
    stable_rank: float
    effective_rank: float
    utilization: float
    energy_rank_90: int
    energy_rank_95: int
    energy_rank_99: int
    numerical_rank: int
    sigma_max_scaled: float
    frob_norm_scaled: float
    untrained: bool = False
    finite: bool = True
    dora_magnitude: dict[str, float] | None = None
    top_singular_values: list[float] | None = None
    energy_share: float | None = None  # ‖ΔW‖²_F over the adapter's total (audit.concentration)
    rule_ranks: dict[str, int] | None = None  # rank under each rule of `audit.rules`, capped at r
    base_relative: BaseRelative | None = None  # set by `audit --base-model`
    _sigma: np.ndarray | None = PrivateAttr(default=None)  # a plain default: no factory call per layer

    @property
    def sigma(self) -> np.ndarray:
        """σ of the scaled update s·B·A, descending (length r); what PEFT's get_delta_weight has."""
        return np.zeros(0) if self._sigma is None else self._sigma


class TypeSummary(BaseModel):
    n_layers: int
    lora_params: int
    stable_rank_mean: float
    effective_rank_mean: float
    utilization_mean: float
    energy_rank_90_p50: float
    energy_rank_90_p90: float


class AuditSummary(BaseModel):
    n_layers: int
    ranks: list[int]
    total_lora_params: int
    total_trainable_params: int
    other_trainable_params: int
    stable_rank_mean: float
    stable_rank_median: float
    stable_rank_weighted_mean: float
    effective_rank_mean: float
    utilization_mean: float
    energy_rank_90_p50: float
    energy_rank_90_p90: float
    by_type: dict[str, TypeSummary]


class RankSuggestion(BaseModel):
    """A rank decision with its exact cost: `rank` for uniform ones, `rank_pattern` for per-layer ones."""

    rule: str
    rank: int | None = None
    rank_pattern: dict[str, int] | None = None
    parameter: float | None = None
    lora_params: int
    lora_reduction: float
    total_reduction: float
    retained_energy: float | None = None


class Suggestions(BaseModel):
    allowed_ranks: list[int]
    per_layer_margin: float
    uniform_median: RankSuggestion
    uniform_p90: RankSuggestion
    per_layer: RankSuggestion
    global_energy_90: RankSuggestion
    named_rules: dict[str, RankSuggestion]
    rank_rule: str = "energy@0.90"  # the rule `per_layer` snaps (see audit.rules)
    rank_rules: dict[str, RankSuggestion] = Field(default_factory=dict)  # each rule's own pattern


class AuditIssue(BaseModel):
    severity: str  # info | warning | error
    code: str
    layer: str | None = None
    message: str


class AuditReport(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    schema_: str = Field(AUDIT_SCHEMA, alias="schema")
    gradience_version: str
    source: str
    adapter: dict[str, Any]
    summary: AuditSummary
    suggestions: Suggestions
    issues: list[AuditIssue]
    layers: list[LayerAudit]
    concentration: Concentration | None = None  # audit.concentration, set by build_report
    base_model: BaseSummary | None = None  # set by audit --base-model (audit.base_norms)

    def spectra(self) -> list[np.ndarray]:
        return [layer.sigma for layer in self.layers]

    def wasteful(self, n: int) -> list[LayerAudit]:
        """The n lowest-utilisation layers (ties by name, so the order is stable)."""
        return sorted(self.layers, key=lambda la: (la.utilization, la.name))[:n]

    def to_json(self, layers: bool = False, top_wasteful: int = 0) -> dict[str, Any]:
        out = self.model_dump(mode="json", by_alias=True, exclude={"layers"}, exclude_none=True)
        if layers:
            out["layers"] = [la.model_dump(mode="json", exclude_none=True) for la in self.layers]
        if top_wasteful:
            out["top_wasteful"] = [
                la.model_dump(mode="json", exclude_none=True) for la in self.wasteful(top_wasteful)
            ]
        return out

    def telemetry_metrics(self) -> dict[str, Any]:
        """Payload of a `metrics(kind="lora_audit")` telemetry event: summary + headline suggestions."""
        s = self.summary
        return {
            "n_layers": s.n_layers,
            "r": max(s.ranks) if s.ranks else 0,
            "ranks": s.ranks,
            "total_lora_params": s.total_lora_params,
            "total_trainable_params": s.total_trainable_params,
            "stable_rank_mean": s.stable_rank_mean,
            "stable_rank_median": s.stable_rank_median,
            "stable_rank_weighted_mean": s.stable_rank_weighted_mean,
            "effective_rank_mean": s.effective_rank_mean,
            "utilization_mean": s.utilization_mean,
            "energy_rank_90_p50": s.energy_rank_90_p50,
            "energy_rank_90_p90": s.energy_rank_90_p90,
            "by_type": {k: v.model_dump() for k, v in s.by_type.items()},
            "allowed_ranks": self.suggestions.allowed_ranks,
            "suggested_r_median": self.suggestions.uniform_median.rank,
            "suggested_r_p90": self.suggestions.uniform_p90.rank,
            # upstream v0.3.1's names for the same suggestions (its monitor and scripts read these)
            "suggested_r_global_median": self.suggestions.uniform_median.rank,
            "suggested_r_global_90": self.suggestions.uniform_p90.rank,
            "n_issues": len(self.issues),
        }
