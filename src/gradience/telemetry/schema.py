"""The `gradience.vnext.telemetry/v1` schema: envelope, ConfigSnapshot and per-event payloads.

Every model allows unknown keys (`extra="allow"`) because v1 promises forward
compatibility: new payload keys and new `metrics.kind` values must not break a reader.
Renaming a field or changing its meaning needs `/v2`, not an edit here.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from gradience.files import describe_validation_error

SCHEMA = "gradience.vnext.telemetry/v1"

#: Strings longer than this are redacted by the writer unless text is allowed.
MAX_TEXT_LEN = 256


class Severity(str, Enum):
    """Alert and recommendation severity, ordered from least to most serious."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self.value]


_SEVERITY_RANK = {"info": 0, "warning": 1, "error": 2, "critical": 3}


class RunStatus(str, Enum):
    OK = "ok"
    ABORTED = "aborted"
    ERROR = "error"


class EventType(str, Enum):
    RUN_START = "run_start"
    TRAIN_STEP = "train_step"
    EVAL = "eval"
    METRICS = "metrics"
    ALERT = "alert"
    RECOMMENDATION = "recommendation"
    RUN_END = "run_end"


EVAL_SPLITS = ("train", "val", "test")
KNOWN_METRICS_KINDS = ("lora_audit", "spectral", "structural", "dominance_act", "guard")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", use_enum_values=True)


# --- ConfigSnapshot -------------------------------------------------------------------------


class OptimizerSnapshot(_Open):
    name: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    betas: list[float] | None = None
    eps: float | None = None
    extras: dict[str, Any] = Field(default_factory=dict)


class LoRASnapshot(_Open):
    r: int | None = None
    alpha: float | None = None
    alpha_over_r: float | None = None
    # PEFT accepts a list of names or a single regex / "all-linear" string.
    target_modules: list[str] | str | None = None
    dropout: float | None = None
    bias: str | None = None
    extras: dict[str, Any] = Field(default_factory=dict)


class TrainingSnapshot(_Open):
    seed: int | None = None
    batch_size: int | None = None
    gradient_accumulation: int | None = None
    max_steps: int | None = None
    epochs: float | None = None
    dtype: str | None = None
    extras: dict[str, Any] = Field(default_factory=dict)


class ConfigSnapshot(_Open):
    """What a run was configured with; every field optional because sources are partial."""

    model_name: str | None = None
    dataset_name: str | None = None
    task_profile: str | None = None
    optimizer: OptimizerSnapshot = Field(default_factory=OptimizerSnapshot)
    lora: LoRASnapshot = Field(default_factory=LoRASnapshot)
    training: TrainingSnapshot = Field(default_factory=TrainingSnapshot)
    notes: str | None = None
    extras: dict[str, Any] = Field(default_factory=dict)


# --- payloads -------------------------------------------------------------------------------


class RunStartPayload(_Open):
    config: ConfigSnapshot
    meta: dict[str, Any] = Field(default_factory=dict)


class TrainStepPayload(_Open):
    loss: float | None = None
    lr: float | list[float] | None = None
    grad_norm: float | None = None
    epoch: float | None = None


class EvalMetrics(_Open):
    """Frozen keys; anything else a user logs rides along."""

    ppl: float | None = None
    accuracy: float | None = Field(default=None, ge=0.0, le=1.0)
    loss: float | None = None
    n: int | None = Field(default=None, ge=0)


class EvalPayload(_Open):
    split: str = Field(min_length=1)
    metrics: EvalMetrics


class MetricsPayload(_Open):
    kind: str = Field(min_length=1)
    metrics: dict[str, Any]


class AlertPayload(_Open):
    severity: Severity
    code: str = Field(min_length=1)
    message: str
    context: dict[str, Any] = Field(default_factory=dict)


class RecommendationPayload(_Open):
    recommendations: list[dict[str, Any]]


class RunEndPayload(_Open):
    status: RunStatus
    reason: str | None = None


PAYLOAD_MODELS: dict[str, type[BaseModel]] = {
    "run_start": RunStartPayload,
    "train_step": TrainStepPayload,
    "eval": EvalPayload,
    "metrics": MetricsPayload,
    "alert": AlertPayload,
    "recommendation": RecommendationPayload,
    "run_end": RunEndPayload,
}


class Envelope(BaseModel):
    """Keys on every line; `schema_` because `schema` shadows a pydantic attribute."""

    model_config = ConfigDict(populate_by_name=True)

    schema_: str = Field(alias="schema")
    ts: float
    run_id: str = Field(min_length=1)
    event: str = Field(min_length=1)
    step: int | None = None


ENVELOPE_KEYS = ("schema", "ts", "run_id", "event", "step")


def validate_payload(event: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Validate a payload for a known event and return it with optional defaults filled.

    Unknown keys are kept verbatim. Raises `ValueError` (pydantic's or ours) when invalid;
    an unknown event name raises `KeyError` so callers can treat it separately.
    """
    model = PAYLOAD_MODELS[event]
    parsed = model.model_validate(payload)
    # python mode keeps NaN/Inf floats (json mode would turn them into null, hiding a NaN loss).
    return parsed.model_dump(mode="python")


def format_validation_error(exc: ValidationError) -> str:
    """One short line from a pydantic error (the first three problems)."""
    return describe_validation_error(exc, "payload", limit=3)


# --- the lora_audit metrics, typed ---------------------------------------------------------------

MAX_SIGNAL = 1e15  # beyond any rank, parameter count or ratio a real run logs


def _signal(value: Any) -> float:
    """A plain, finite, plausibly sized number (no bools, no numeric strings)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("not a number")
    if isinstance(value, int) and abs(value) > MAX_SIGNAL:
        raise ValueError("out of range")
    num = float(value)
    if not (math.isfinite(num) and abs(num) <= MAX_SIGNAL):
        raise ValueError("not finite or out of range")
    return num


def _count(value: Any) -> int:
    num = _signal(value)
    if not num.is_integer():
        raise ValueError("not an integer")
    return int(num)


def signal_or_none(value: Any) -> float | None:
    """`_signal`, with None for anything it refuses: how readers take one logged number."""
    try:
        return _signal(value)
    except ValueError:
        return None


Signal = Annotated[float, BeforeValidator(_signal)]
Count = Annotated[int, BeforeValidator(_count)]


class _Lenient(BaseModel):
    """Fields that validate are kept; a hostile or mistyped one is simply absent (None)."""

    model_config = ConfigDict(extra="ignore")

    @classmethod
    def lenient(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return cls()
        good = {}
        for name in cls.model_fields:
            if name in raw:
                try:
                    good[name] = getattr(cls.model_validate({name: raw[name]}), name)
                except ValidationError:
                    pass
        return cls.model_validate(good)


class TypeAuditMetrics(_Lenient):
    n_layers: Count | None = None
    stable_rank_mean: Signal | None = None
    utilization_mean: Signal | None = None
    energy_rank_90_p50: Signal | None = None
    energy_rank_90_p90: Signal | None = None


class LoraAuditMetrics(_Lenient):
    """What a `metrics(kind="lora_audit")` event says about the adapter (the audit writes it)."""

    n_layers: Count | None = None
    r: Count | None = None
    ranks: list[Count] | None = None
    total_lora_params: Count | None = None
    total_trainable_params: Count | None = None
    stable_rank_mean: Signal | None = None
    stable_rank_median: Signal | None = None
    effective_rank_mean: Signal | None = None
    utilization_mean: Signal | None = None
    energy_rank_90_p50: Signal | None = None
    energy_rank_90_p90: Signal | None = None
    by_type: dict[str, TypeAuditMetrics] = Field(default_factory=dict)
    allowed_ranks: list[Count] | None = None
    suggested_r_median: Count | None = None
    suggested_r_p90: Count | None = None
    n_issues: Count | None = None

    @classmethod
    def lenient(cls, raw: Any) -> LoraAuditMetrics:
        if isinstance(raw, dict):  # upstream v0.3.1's names, when ours are absent
            upstream = {
                "suggested_r_median": "suggested_r_global_median",
                "suggested_r_p90": "suggested_r_global_90",
            }
            raw = {**{ours: raw[theirs] for ours, theirs in upstream.items() if theirs in raw}, **raw}
        out = super().lenient(raw)
        types = raw.get("by_type") if isinstance(raw, dict) else None
        if isinstance(types, dict):
            out.by_type = {str(k): TypeAuditMetrics.lenient(v) for k, v in types.items()}
        return out
