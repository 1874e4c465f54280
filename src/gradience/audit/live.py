"""Audit the LoRA layers of a live (in-memory) PEFT model, e.g. from a training callback.

The maths is the file audit's (numpy, float64): each factor is converted once at this boundary,
so this module needs no torch import of its own (the model's owner has imported it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from gradience.audit.core import audit_layer, build_report
from gradience.audit.io import PREFIX, LayerSpec
from gradience.audit.report import AuditIssue, AuditReport, LayerAudit

if TYPE_CHECKING:
    import torch


def _f64(t: Any) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _lora_layers(
    model: torch.nn.Module, adapter: str
) -> Iterable[tuple[LayerSpec, np.ndarray, np.ndarray, np.ndarray | None]]:
    for path, mod in model.named_modules():
        name = path[len(PREFIX) :] if path.startswith(PREFIX) else path
        r = getattr(mod, "r", None)
        if not isinstance(r, dict) or adapter not in r:
            continue
        if hasattr(mod, "lora_A") and adapter in mod.lora_A:
            a, b = mod.lora_A[adapter].weight, mod.lora_B[adapter].weight
            kind = "conv" if a.dim() > 2 else "linear"
        elif hasattr(mod, "lora_embedding_A") and adapter in mod.lora_embedding_A:
            a, b, kind = mod.lora_embedding_A[adapter], mod.lora_embedding_B[adapter], "embedding"
        else:
            continue
        a, b = a.detach().reshape(a.shape[0], -1), b.detach().reshape(b.shape[0], -1)
        mags = getattr(mod, "lora_magnitude_vector", None)
        mag = _f64(mags[adapter].weight) if mags is not None and adapter in mags else None
        spec = LayerSpec(
            name=name,
            a_key=f"{path}.lora_A",
            b_key=f"{path}.lora_B",
            kind=kind,
            r=int(r[adapter]),
            alpha=float(mod.lora_alpha[adapter]),
            scale=float(mod.scaling[adapter]),
            in_features=a.shape[1],
            out_features=b.shape[0],
            params=a.numel() + b.numel(),
        )
        yield spec, _f64(a), _f64(b), mag


def audit_model(
    model: torch.nn.Module,
    adapter_name: str = "default",
    *,
    allowed_ranks: Sequence[int] | None = None,
    per_layer_margin: float = 1.0,
) -> AuditReport:
    """Same report as `audit_adapter`, read from the model's parameters instead of a file."""
    audited: list[tuple[LayerAudit, list[AuditIssue]]] = []
    for spec, a, b, mag in _lora_layers(model, adapter_name):
        audited.append(audit_layer(spec, a, b, mag))
    if not audited:
        from gradience.audit.errors import AdapterError

        raise AdapterError(f"model has no LoRA layers for adapter {adapter_name!r}")
    lora_params = sum(la.params for la, _ in audited)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return build_report(
        audited,
        other_params=max(0, trainable - lora_params),
        source=f"<live model, adapter {adapter_name}>",
        adapter_info={"adapter_name": adapter_name},
        allowed_ranks=allowed_ranks,
        per_layer_margin=per_layer_margin,
    )
