"""certify.json and the per-candidate prediction files: typed, versioned, serialised in one place."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from gradience.bench.certify.decide import Resolution, Status
from gradience.bench.tasks import SplitEval
from gradience.verdicts import SeedComparison

CERTIFY_VERSION = "1"


class _Json(BaseModel):
    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class Predictions(_Json):
    """One model's per-item outcomes (predictions/<name>.json); ``fingerprint`` ties it to what
    produced it, so --resume reuses it only for the same adapter, items, base model and settings."""

    name: str
    fingerprint: str
    n_items: int = Field(description="items in the eval set; eval.n is how many were scored")
    stopped_early: bool = False
    eval_s: float = 0.0
    eval: SplitEval


class CandidateResult(_Json):
    name: str
    kind: str = Field(description="budget | rank | energy | rules")
    step: float | str = Field(
        description="budget: share of LoRA parameters; rank: rank or share of r; energy: target; rules: the rule"
    )
    plan: dict[str, Any]
    ranks: dict[str, int]
    rank_min: int
    rank_max: int
    rank_equivalent: float = Field(
        description="LoRA parameters / Σ(in+out): the uniform rank of the same size"
    )
    lora_params: int
    lora_reduction: float
    retained_energy: float = Field(description="share of Σ‖s·B·A‖² the truncation keeps")
    min_layer_retained_energy: float
    status: Status
    n_evaluated: int = 0
    stopped_early: bool = False
    metric_value: float | None = Field(None, description="the metric over the evaluated items")
    delta: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    comparison: SeedComparison | None = None
    eval_s: float = 0.0
    predictions: str | None = None


class OriginalResult(_Json):
    lora_params: int
    rank_max: int
    metric_value: float
    n_items: int
    eval_s: float
    predictions: str


class DataInfo(_Json):
    source: str
    split: str
    rows_in_split: int
    n_items: int
    eval_samples: int | None
    fingerprint: str
    task: dict[str, Any]
    label_names: list[str]


class CertifyReport(_Json):
    certify_version: str = CERTIFY_VERSION
    gradience_version: str
    created: str
    adapter: str
    adapter_fingerprint: str
    base_model: str
    base_model_path: str
    task_type: str
    metric: str
    metric_title: str
    data: DataInfo
    margin: float
    confidence: float
    ladder: str
    steps: list[float | str]  # rule names on the rules ladder
    ladder_notes: list[str]
    resolution: Resolution
    original: OriginalResult
    candidates: list[CandidateResult]
    certified: str | None = Field(description="the certified candidate's name; None: nothing smaller")
    certified_dir: str | None
    guarantee: str
    answer: str
    device: str
    batch_size: int
    resumed: list[str] = Field(default_factory=list, description="predictions reused from an earlier run")
    timings: dict[str, float]
    versions: dict[str, str]
    exit_code: int
