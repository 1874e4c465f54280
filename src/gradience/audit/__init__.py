"""Exact spectral audit of PEFT LoRA adapters, streamed one layer at a time.

Public API:
    audit_adapter(peft_dir, *, adapter_config=None, weights=None, allowed_ranks=None,
                  per_layer_margin=1.0, top_singular_values=0) -> AuditReport
    audit_model(peft_model, adapter_name="default", ...) -> AuditReport   (live weights)
    open_adapter(peft_dir, adapter_config=None, weights=None) -> Adapter  (streamed factors)
    lora_spectrum(A, B, scale=1.0) -> σ of scale·B·A;  factored_svd(A, B) -> (U, S, V)
    snap_rank(value, allowed, cap) -> int   (the one snapping rule)
    module_type(name) -> "attn" | "mlp" | "other"   (the one classifier)

`render_audit` (rich) and `audit_model` are imported on first use: the audit command's JSON
path needs neither.
"""

from typing import Any

from gradience.audit.classify import module_type
from gradience.audit.config import (
    AdapterConfig,
    alpha_for_scale,
    load_adapter_config,
    lora_scale,
    pattern_key,
)
from gradience.audit.core import audit_adapter, audit_layer
from gradience.audit.errors import AdapterError
from gradience.audit.io import Adapter, LayerSpec, open_adapter, split_key, strip_prefix
from gradience.audit.metrics import energy_rank, percentile
from gradience.audit.report import AuditReport, LayerAudit, RankSuggestion
from gradience.audit.spectra import factored_svd, lora_spectrum
from gradience.audit.suggest import (
    LayerShape,
    allocate,
    default_allowed_ranks,
    lora_params_at,
    snap_rank,
)

__all__ = [
    "Adapter",
    "AdapterConfig",
    "AdapterError",
    "AuditReport",
    "LayerAudit",
    "LayerShape",
    "LayerSpec",
    "RankSuggestion",
    "allocate",
    "alpha_for_scale",
    "audit_adapter",
    "audit_layer",
    "audit_model",
    "default_allowed_ranks",
    "energy_rank",
    "factored_svd",
    "load_adapter_config",
    "lora_scale",
    "lora_params_at",
    "lora_spectrum",
    "module_type",
    "open_adapter",
    "pattern_key",
    "percentile",
    "render_audit",
    "snap_rank",
    "split_key",
    "strip_prefix",
]

_LAZY = {"render_audit": "gradience.audit.render", "audit_model": "gradience.audit.live"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'gradience.audit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
