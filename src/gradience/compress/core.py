"""compress_adapter: truncated SVD of every LoRA layer from its r×r cores, into a new PEFT adapter.

Each layer's Gram cores (A·Aᵀ, Bᵀ·B; r×r, float64, the audit's `gram_cores`) give its exact
spectrum (the audit's `spectrum_from_grams`) and, from the same read, its rank-k factors
(`factors.py`: one skinny product per factor; B·A is never formed). When the plan fixes the
ranks without looking at spectra (`--rank`, a rank pattern) that is one pass over the input,
straight into a streaming safetensors writer (`--from-audit` too, after the audit's own pass).
Plans that choose ranks from the spectra (energy, budgets) take the cores in a first pass, keep
them (2·r² floats per layer) and re-read only the layers they change. Layers run on a few threads
(`Adapter.map_layers`), written in the input's order as their turn comes; layers kept at their
rank, and every tensor that is not a LoRA factor pair, are copied byte for byte. numpy only:
the command imports no torch.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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
from gradience.audit.spectra import Workspace, gram_cores, one_blas_thread, spectrum_from_grams
from gradience.audit.store import FLOAT_CODES, encode
from gradience.compress.errors import CompressError
from gradience.compress.factors import truncated
from gradience.compress.peft_config import LayerTarget, build_config
from gradience.compress.plan import CompressionPlan, choose_ranks
from gradience.compress.report import CompressionReport, CompressionTotals, LayerCompression
from gradience.compress.st_writer import SafetensorsStreamWriter
from gradience.files import check_output_dir, checkpoint, staged_output

WEIGHTS_NAME = "adapter_model.safetensors"
CONFIG_NAME = "adapter_config.json"
REPORT_NAME = "compression_report.json"
_SAVE_CODES = {"fp16": "F16", "bf16": "BF16", "fp32": "F32"}
_SPECTRAL = (
    "energy",
    "budget_params",
    "budget_ratio",
    "rank_rule",
)  # strategies that read ranks off our spectra

DORA_REFUSAL = (
    "DoRA adapters are not compressed: DoRA's output is m·(W + s·B·A)/‖W + s·B·A‖ per column, so "
    "truncating B·A also changes the column norms that the magnitude vector m was trained against, "
    "and the result is not the rank-k truncation of the DoRA update (that needs the base weights W, "
    "which an adapter folder does not have). Merge the DoRA adapter, or compress a plain LoRA adapter"
)


@dataclass
class _Scanned:
    """One layer's σ of s·B·A and the r×r Gram cores it came from; `tensors` are its new factors
    (storage form), when the same read produced them."""

    spec: LayerSpec
    sigma: np.ndarray
    cores: tuple[np.ndarray, np.ndarray]
    tensors: dict[str, np.ndarray] = field(default_factory=dict)


def _spectrum(spec: LayerSpec, a: np.ndarray, b: np.ndarray) -> _Scanned:
    cores = gram_cores(a, b)
    if not cores.finite:
        raise CompressError(f"layer {spec.name} has NaN/Inf in its LoRA factors; it cannot be truncated")
    sigma = abs(spec.scale) * spectrum_from_grams(cores.ga, cores.gb)  # the audit's lora_spectrum
    return _Scanned(spec, sigma, (cores.ga, cores.gb))


def _scan(adapter: Adapter) -> list[_Scanned]:
    """Pass 1 of a plan that needs the spectra: each layer's cores and σ."""

    def one(spec: LayerSpec, a: np.ndarray, b: np.ndarray, ws: Workspace) -> _Scanned:
        return _spectrum(spec, *ws.f64(a, b))

    with one_blas_thread():
        return list(adapter.map_layers(one))


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
    shapes = [LayerShape(la.name, la.r, la.in_features, la.out_features) for la in adapter.layers]
    scanned = _scan(adapter) if plan.strategy in _SPECTRAL else None

    def audit_suggestion() -> dict[str, int]:
        audit = audit_adapter(src, allowed_ranks=plan.allowed_ranks, per_layer_margin=plan.per_layer_margin)
        return dict(audit.suggestions.per_layer.rank_pattern or {})

    spectra = [sc.sigma for sc in scanned] if scanned is not None else []
    ranks = choose_ranks(plan, shapes, spectra, audit_suggestion)
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


def _write_weights(
    adapter: Adapter, scanned: list[_Scanned] | None, targets: list[LayerTarget], path: Path,
    save_dtype: str | None = None,
) -> tuple[list[LayerCompression], list[str], list[str]]:  # fmt: skip
    """Stream every tensor, in the input's order, into `path`. Layers that change (rank or dtype),
    and with no first pass every layer (its σ is needed for the report), run on the worker
    threads; a layer's new factors wait only until both are written. A layer whose α was kept
    while its rank changed (alpha_mode keep_alpha) has B multiplied by old scale / new scale."""
    store = adapter._store
    assert store is not None
    owner = {key: la for la in adapter.layers for key in (la.a_key, la.b_key)}
    new_rank = {t.name: t.rank for t in targets}
    gain = {la.name: la.scale / t.scale for la, t in zip(adapter.layers, targets, strict=True)}
    entries: list[tuple[str, str, tuple[int, ...]]] = []
    for key in store.keys():
        dtype, shape, la = store.code(key), store.shape(key), owner.get(key)
        if la is not None and save_dtype is not None:
            dtype = _SAVE_CODES[save_dtype]
        if la is not None and new_rank[la.name] < la.r:
            if dtype not in FLOAT_CODES or store.code(key) not in FLOAT_CODES:
                raise CompressError(
                    f"LoRA factor {key!r} has dtype {dtype}; only float factors are truncated"
                )
            k = new_rank[la.name]
            shape = (k, *shape[1:]) if key == la.a_key else (shape[0], k, *shape[2:])
        entries.append((key, dtype, shape))
    out = {key: (dtype, shape) for key, dtype, shape in entries}
    changes = {la.name for la in adapter.layers if new_rank[la.name] < la.r or any(
        out[key][0] != store.code(key) for key in (la.a_key, la.b_key))}  # fmt: skip
    kept = {sc.spec.name: sc for sc in scanned} if scanned is not None else {}

    def one(la: LayerSpec, a: np.ndarray, b: np.ndarray, ws: Workspace) -> _Scanned:
        a64, b64 = ws.f64(a, b)
        sc = kept.get(la.name) or _spectrum(la, a64, b64)
        k = new_rank[la.name]
        if k < la.r:
            a2, b2 = truncated(a64, b64, k, sc.cores, gain[la.name])
        elif la.name in changes:  # a new dtype only
            a2, b2 = a64, b64
        else:
            return sc
        for key, x in ((la.a_key, a2), (la.b_key, b2)):
            sc.tensors[key] = encode(x.reshape(out[key][1]), out[key][0])
        return sc

    jobs = [la for la in adapter.layers if scanned is None or la.name in changes]
    job_names = {la.name for la in jobs}
    done: dict[str, _Scanned] = {}
    with one_blas_thread(), SafetensorsStreamWriter(path, entries, _metadata(adapter)) as writer:
        results = adapter.map_layers(one, jobs)
        for key, _, _ in entries:
            la = owner.get(key)
            if la is None or la.name not in job_names:
                writer.write(key, store.read(key))  # byte for byte
                continue
            while la.name not in done:
                sc = next(results)
                done[sc.spec.name] = sc
            tensor = done[la.name].tensors.pop(key, None)
            writer.write(key, store.read(key) if tensor is None else tensor)
            checkpoint("compress:weights")  # crash-safety tests kill here, mid-file
        for sc in results:  # layers with nothing to write still count in the report
            done[sc.spec.name] = sc
    sigma = {name: sc.sigma for name, sc in {**kept, **done}.items()}
    alpha = {t.name: t.alpha for t in targets}
    rows = []
    for la in adapter.layers:
        new_params = _numel(out[la.a_key][1]) + _numel(out[la.b_key][1])
        rows.append(_layer_row(la, sigma[la.name], new_rank[la.name], alpha[la.name], new_params))
    return rows, list(adapter.other_keys), sorted({dtype for _, dtype, _ in entries})


def _metadata(adapter: Adapter) -> dict[str, str]:
    meta = dict(adapter._store.metadata) if adapter._store is not None else {}
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
