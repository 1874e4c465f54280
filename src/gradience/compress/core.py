"""compress_adapter: truncated SVD of every LoRA layer from its r×r cores, into a new PEFT adapter.

Two streamed passes over the input, one layer in memory at a time. Pass 1 takes each layer's
Gram cores (A·Aᵀ, Bᵀ·B; r×r, float64, the audit's `gram_cores`) and its exact spectrum from
them (the audit's `spectrum_from_grams`); the cores are kept (2·r² floats per layer) and the ranks
are decided. Pass 2 re-reads only the layers that need truncation and builds their factors from
the kept cores (see `factors.py`) — B·A is never formed — straight into a streaming safetensors
writer. Layers kept at their rank, and every tensor that is not a LoRA factor pair, are copied
byte for byte.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gradience.audit import (
    Adapter,
    LayerShape,
    LayerSpec,
    alpha_for_scale,
    audit_adapter,
    lora_scale,
    module_type,
    open_adapter,
)
from gradience.audit.spectra import Workspace, gram_cores, spectrum_from_grams
from gradience.compress.errors import CompressError
from gradience.compress.factors import truncate_factors
from gradience.compress.peft_config import LayerTarget, build_config
from gradience.compress.plan import CompressionPlan, choose_ranks
from gradience.compress.report import CompressionReport, CompressionTotals, LayerCompression
from gradience.compress.st_writer import DTYPE_CODES, SafetensorsStreamWriter
from gradience.files import check_output_dir, checkpoint, staged_output

WEIGHTS_NAME = "adapter_model.safetensors"
CONFIG_NAME = "adapter_config.json"
REPORT_NAME = "compression_report.json"

DORA_REFUSAL = (
    "DoRA adapters are not compressed: DoRA's output is m·(W + s·B·A)/‖W + s·B·A‖ per column, so "
    "truncating B·A also changes the column norms that the magnitude vector m was trained against, "
    "and the result is not the rank-k truncation of the DoRA update (that needs the base weights W, "
    "which an adapter folder does not have). Merge the DoRA adapter, or compress a plain LoRA adapter"
)


def _tensor_meta(adapter: Adapter) -> dict[str, tuple[str, tuple[int, ...]]]:
    """dtype code and shape of every stored tensor, without reading the data."""
    if adapter.weights_path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(adapter.weights_path), framework="pt") as fh:
            return {k: (fh.get_slice(k).get_dtype(), tuple(fh.get_slice(k).get_shape())) for k in fh.keys()}
    meta = {}
    for key in [*(k for la in adapter.layers for k in (la.a_key, la.b_key)), *adapter.other_keys]:
        t = adapter.tensor(key)
        if t.dtype not in DTYPE_CODES:
            raise CompressError(f"tensor {key!r} has dtype {t.dtype}, which safetensors cannot store")
        meta[key] = (DTYPE_CODES[t.dtype], tuple(t.shape))
    return meta


@dataclass
class _Scanned:
    """Pass 1's result for one layer: σ of s·B·A and the r×r Gram cores it came from."""

    spec: LayerSpec
    sigma: np.ndarray
    cores: tuple[np.ndarray, np.ndarray]


def _scan(adapter: Adapter) -> list[_Scanned]:
    """Pass 1. The kept cores and spectra are allocated before any factor is read: small arrays
    allocated between the large per-layer temporaries would pin glibc's heap and make the peak
    memory grow with the number of layers (measured: 115 MB instead of ~20 MB at 8 layers)."""
    out = [
        _Scanned(spec, np.empty(spec.r), (np.empty((spec.r, spec.r)), np.empty((spec.r, spec.r))))
        for spec in adapter.layers
    ]
    ws = Workspace()  # one reused float64 buffer: no per-layer allocation churn
    for sc, (spec, a, b) in zip(out, adapter.iter_factors(), strict=True):
        cores = gram_cores(a, b, ws)
        del a, b
        if not cores.finite:
            raise CompressError(f"layer {spec.name} has NaN/Inf in its LoRA factors; it cannot be truncated")
        sc.cores[0][...] = cores.ga
        sc.cores[1][...] = cores.gb
        sc.sigma[...] = abs(spec.scale) * spectrum_from_grams(cores.ga, cores.gb)  # the audit's lora_spectrum
    return out


def _layer_row(spec: LayerSpec, sigma: np.ndarray, k: int, alpha: float, new_params: int) -> LayerCompression:
    e = sigma.astype("float64") ** 2
    total, kept = float(e.sum()), float(e[:k].sum())
    return LayerCompression(
        name=spec.name,
        module_type=module_type(spec.name),
        kind=spec.kind,
        old_rank=spec.r,
        new_rank=k,
        alpha=alpha,
        scale=spec.scale,
        old_params=spec.params,
        new_params=new_params,
        retained_energy=kept / total if total > 0 else 1.0,
        frob_norm=total**0.5,
        frob_error=float(max(total - kept, 0.0) ** 0.5),
        truncated=k < spec.r,
    )


def compress_adapter(
    src: Path, dst: Path, plan: CompressionPlan, *, overwrite: bool = False
) -> CompressionReport:
    """Compress the PEFT LoRA adapter in `src` into a new adapter folder `dst`.

    `dst` appears complete or not at all (`gradience.files.staged_output`): a non-empty `dst`
    is replaced only with `overwrite=True` and only if Gradience wrote it; a `dst` that is,
    holds or lies inside `src` is refused (OutputPathError). Raises CompressError for bad plans
    or input it cannot compress faithfully, AdapterError for unreadable adapters."""
    src, dst = Path(src), Path(dst)
    plan.check()
    check_output_dir(dst, [src], overwrite=overwrite)  # fail before reading anything
    adapter = open_adapter(src)
    if adapter.config.use_dora or any(la.magnitude_key for la in adapter.layers):
        raise CompressError(DORA_REFUSAL)
    scanned = _scan(adapter)
    shapes = [LayerShape(la.name, la.r, la.in_features, la.out_features) for la in adapter.layers]

    def audit_suggestion() -> dict[str, int]:
        audit = audit_adapter(src, allowed_ranks=plan.allowed_ranks, per_layer_margin=plan.per_layer_margin)
        return dict(audit.suggestions.per_layer.rank_pattern or {})

    ranks = choose_ranks(plan, shapes, [sc.sigma for sc in scanned], audit_suggestion)
    rslora = bool(adapter.config.use_rslora)
    keep_alpha = plan.alpha_mode == "keep_alpha"
    targets = [_target(la, ranks[la.name], rslora, keep_alpha) for la in adapter.layers]
    config = build_config(dict(adapter.config.raw), targets, rslora)
    with staged_output(dst, kind="compress", inputs=[src], overwrite=overwrite) as tmp:
        rows, carried, dtypes = _write_weights(adapter, scanned, targets, tmp / WEIGHTS_NAME, plan.dtype)
        report = _report(src, dst, plan, adapter, rows, carried, dtypes, config)
        _write_json(tmp / CONFIG_NAME, config)
        _write_json(tmp / REPORT_NAME, report.to_json())
    return report


def _target(la: LayerSpec, k: int, rslora: bool, keep_alpha: bool) -> LayerTarget:
    """keep_scale: α rescaled so PEFT resolves the layer's old scale; keep_alpha: α kept, so PEFT
    resolves α/k (or α/√k) and the written factors absorb the difference."""
    if k == la.r:
        return LayerTarget(la.name, k, la.alpha, la.scale)
    if keep_alpha:
        return LayerTarget(la.name, k, la.alpha, lora_scale(la.alpha, k, rslora))
    return LayerTarget(la.name, k, alpha_for_scale(la.scale, k, rslora), la.scale)


_TORCH_DTYPES = {code: dt for dt, code in DTYPE_CODES.items()}


_SAVE_DTYPES = {"fp16": "F16", "bf16": "BF16", "fp32": "F32"}


def _write_weights(
    adapter: Adapter, scanned: list[_Scanned], targets: list[LayerTarget], path: Path,
    save_dtype: str | None = None,
) -> tuple[list[LayerCompression], list[str], list[str]]:  # fmt: skip
    """Stream every tensor, in the input's order, into `path`; truncated pairs are computed when
    their first factor comes up and dropped once both are written. A layer whose α was kept
    while its rank changed (alpha_mode keep_alpha) has B multiplied by old scale / new scale."""
    meta = _tensor_meta(adapter)
    owner = {key: la for la in adapter.layers for key in (la.a_key, la.b_key)}
    new_rank = {t.name: t.rank for t in targets}
    target_scale = {t.name: t.scale for t in targets}
    gain = {la.name: la.scale / target_scale[la.name] for la in adapter.layers}
    entries: list[tuple[str, str, tuple[int, ...]]] = []
    for key, (dtype, shape) in meta.items():
        la = owner.get(key)
        if la is not None and save_dtype is not None:
            dtype = _SAVE_DTYPES[save_dtype]
        if la is not None and new_rank[la.name] < la.r:
            if dtype not in ("F64", "F32", "F16", "BF16"):
                raise CompressError(
                    f"LoRA factor {key!r} has dtype {dtype}; only float factors are truncated"
                )
            k = new_rank[la.name]
            shape = (k, *shape[1:]) if key == la.a_key else (shape[0], k, *shape[2:])
        entries.append((key, dtype, shape))
    out_dtype = {key: dtype for key, dtype, _ in entries}
    shapes = {key: shape for key, _, shape in entries}
    metadata = _metadata(adapter)
    cores = {sc.spec.name: sc.cores for sc in scanned}
    ws = Workspace()
    pending: dict[str, dict[str, torch.Tensor]] = {}
    with SafetensorsStreamWriter(path, entries, metadata) as writer:
        for key, _, _ in entries:
            la = owner.get(key)
            if la is None:
                writer.write(key, adapter.tensor(key))
                continue
            if new_rank[la.name] == la.r:  # unchanged pair: only the dtype may change
                writer.write(key, adapter.tensor(key).to(_TORCH_DTYPES[out_dtype[key]]))
                continue
            if la.name not in pending:
                a64, b64 = ws.f64(*adapter.factors(la))
                a2, b2 = truncate_factors(a64, b64, new_rank[la.name], cores[la.name])
                if gain[la.name] != 1.0:
                    b2 = b2 * gain[la.name]
                pending[la.name] = {
                    la.a_key: a2.to(_TORCH_DTYPES[out_dtype[la.a_key]]).reshape(shapes[la.a_key]),
                    la.b_key: b2.to(_TORCH_DTYPES[out_dtype[la.b_key]]).reshape(shapes[la.b_key]),
                }
            writer.write(key, pending[la.name].pop(key))
            checkpoint("compress:weights")  # crash-safety tests kill here, mid-file
            if not pending[la.name]:
                del pending[la.name]
    alpha = {t.name: t.alpha for t in targets}
    rows = []
    for sc in scanned:
        la = sc.spec
        new_params = _numel(shapes[la.a_key]) + _numel(shapes[la.b_key])
        rows.append(_layer_row(la, sc.sigma, new_rank[la.name], alpha[la.name], new_params))
    return rows, list(adapter.other_keys), sorted({dtype for _, dtype, _ in entries})


def _metadata(adapter: Adapter) -> dict[str, str]:
    meta: dict[str, str] = {}
    if adapter.weights_path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(adapter.weights_path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
    meta.setdefault("format", "pt")
    return meta


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _report(
    src: Path,
    dst: Path,
    plan: CompressionPlan,
    adapter: Adapter,
    rows: list[LayerCompression],
    carried: list[str],
    dtypes: list[str],
    config: dict,
) -> CompressionReport:
    from gradience import __version__

    before = sum(r.old_params for r in rows)
    after = sum(r.new_params for r in rows)
    other = adapter.other_params
    total_e = sum(r.frob_norm**2 for r in rows)
    kept_e = sum(r.frob_norm**2 - r.frob_error**2 for r in rows)
    totals = CompressionTotals(
        n_layers=len(rows),
        n_truncated=sum(r.truncated for r in rows),
        lora_params_before=before,
        lora_params_after=after,
        lora_reduction=1 - after / before if before else 0.0,
        other_params=other,
        total_trainable_before=before + other,
        total_trainable_after=after + other,
        total_reduction=1 - (after + other) / (before + other) if before + other else 0.0,
        retained_energy=kept_e / total_e if total_e > 0 else 1.0,
        min_layer_retained_energy=min((r.retained_energy for r in rows), default=1.0),
    )
    keys = ("r", "lora_alpha", "use_rslora", "rank_pattern", "alpha_pattern")
    return CompressionReport(
        gradience_version=__version__,
        source=str(src),
        destination=str(dst),
        strategy=plan.strategy,
        plan=plan.model_dump(mode="json", exclude_none=True, exclude_defaults=True),
        dtypes=dtypes,
        config={k: config.get(k) for k in keys},
        carried_keys=carried,
        totals=totals,
        layers=rows,
    )


def _write_json(path: Path, obj: object) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(obj, indent=2) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
