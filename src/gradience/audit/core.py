"""Audit a PEFT LoRA adapter: stream each layer's factors, take its exact spectrum, aggregate, suggest."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gradience.audit import metrics as M
from gradience.audit import rules as R
from gradience.audit.classify import module_type
from gradience.audit.concentration import concentration
from gradience.audit.io import LayerSpec, open_adapter
from gradience.audit.report import (
    AuditIssue,
    AuditReport,
    AuditSummary,
    LayerAudit,
    RankSuggestion,
    Suggestions,
    TypeSummary,
)
from gradience.audit.spectra import Workspace, gram_cores, one_blas_thread, spectrum_from_grams
from gradience.audit.suggest import (
    NAMED_RULES,
    LayerShape,
    allocate,
    default_allowed_ranks,
    lora_params_at,
    snap_rank,
)


def _version() -> str:
    from gradience import __version__

    return __version__


def audit_layer(
    spec: LayerSpec,
    a: np.ndarray,
    b: np.ndarray,
    magnitude: np.ndarray | None = None,
    top_k: int = 0,
    ws: Workspace | None = None,
) -> tuple[LayerAudit, list[AuditIssue]]:
    """Metrics of one layer from its factors; suspicious values become issues, not exceptions."""
    issues: list[AuditIssue] = []
    cores = gram_cores(a, b, ws)
    finite = cores.finite
    untrained = finite and cores.b_is_zero
    if not finite:
        sigma = np.zeros(spec.r)
        issues.append(
            AuditIssue(severity="error", code="non_finite", layer=spec.name, message="NaN/Inf in factors")
        )
    else:
        sigma = abs(spec.scale) * spectrum_from_grams(cores.ga, cores.gb)
    if untrained:
        issues.append(
            AuditIssue(
                severity="warning",
                code="untrained_lora_B",
                layer=spec.name,
                message="lora_B is all zeros: the layer is untrained (metrics are 0)",
            )
        )
    nrank = M.numerical_rank(sigma)
    if finite and not untrained and nrank < spec.r:
        issues.append(
            AuditIssue(
                severity="info",
                code="rank_deficient",
                layer=spec.name,
                message=f"numerical rank {nrank} < r={spec.r}: B·A is rank deficient",
            )
        )
    dora = None
    if magnitude is not None:
        m = np.asarray(magnitude, dtype=np.float64)
        dora = {
            "norm": float(np.linalg.norm(m)),
            "mean": float(m.mean()),
            "min": float(m.min()),
            "max": float(m.max()),
        }
    sr = M.stable_rank(sigma)
    layer = LayerAudit(
        name=spec.name,
        module_type=module_type(spec.name),
        kind=spec.kind,
        r=spec.r,
        alpha=spec.alpha,
        scale=spec.scale,
        in_features=spec.in_features,
        out_features=spec.out_features,
        params=spec.params,
        stable_rank=sr,
        effective_rank=M.effective_rank(sigma),
        utilization=sr / spec.r,
        energy_rank_90=M.energy_rank(sigma, 0.90),
        energy_rank_95=M.energy_rank(sigma, 0.95),
        energy_rank_99=M.energy_rank(sigma, 0.99),
        numerical_rank=nrank,
        sigma_max_scaled=float(sigma[0]) if sigma.size else 0.0,
        frob_norm_scaled=float(np.sqrt((sigma**2).sum())),
        untrained=untrained,
        finite=finite,
        dora_magnitude=dora,
        top_singular_values=[float(x) for x in sigma[:top_k]] if top_k else None,
        rule_ranks=R.rule_ranks(sigma, spec.r),
    )
    layer._sigma = sigma
    return layer, issues


def _type_summary(layers: list[LayerAudit]) -> TypeSummary:
    return TypeSummary(
        n_layers=len(layers),
        lora_params=sum(la.params for la in layers),
        stable_rank_mean=M.mean([la.stable_rank for la in layers]),
        effective_rank_mean=M.mean([la.effective_rank for la in layers]),
        utilization_mean=M.mean([la.utilization for la in layers]),
        energy_rank_90_p50=M.percentile([la.energy_rank_90 for la in layers], 50),
        energy_rank_90_p90=M.percentile([la.energy_rank_90 for la in layers], 90),
    )


def summarize(layers: list[LayerAudit], other_params: int) -> AuditSummary:
    lora = sum(la.params for la in layers)
    by_type = {}
    for kind in ("attn", "mlp", "other"):
        members = [la for la in layers if la.module_type == kind]
        if members:
            by_type[kind] = _type_summary(members)
    overall = _type_summary(layers)
    return AuditSummary(
        n_layers=len(layers),
        ranks=sorted({la.r for la in layers}),
        total_lora_params=lora,
        total_trainable_params=lora + other_params,
        other_trainable_params=other_params,
        stable_rank_mean=overall.stable_rank_mean,
        stable_rank_median=M.median([la.stable_rank for la in layers]),
        stable_rank_weighted_mean=M.weighted_mean(
            [la.stable_rank for la in layers], [la.params for la in layers]
        ),
        effective_rank_mean=overall.effective_rank_mean,
        utilization_mean=overall.utilization_mean,
        energy_rank_90_p50=overall.energy_rank_90_p50,
        energy_rank_90_p90=overall.energy_rank_90_p90,
        by_type=by_type,
    )


def suggest(
    layers: list[LayerAudit],
    summary: AuditSummary,
    allowed_ranks: Sequence[int] | None,
    per_layer_margin: float,
    rank_rule: str = R.DEFAULT_RULE,
) -> Suggestions:
    shapes = [LayerShape(la.name, la.r, la.in_features, la.out_features) for la in layers]
    max_r = max(la.r for la in layers)
    allowed = sorted(set(allowed_ranks)) if allowed_ranks else default_allowed_ranks(max_r)
    lora, other = summary.total_lora_params, summary.other_trainable_params

    def make(rule: str, params: int, **kw: Any) -> RankSuggestion:
        return RankSuggestion(
            rule=rule,
            lora_params=params,
            lora_reduction=1 - params / lora if lora else 0.0,
            total_reduction=1 - (params + other) / (lora + other) if lora + other else 0.0,
            **kw,
        )

    def uniform(rule: str, q: float) -> RankSuggestion:
        rank = snap_rank(q, allowed, max_r)
        return make(rule, lora_params_at(shapes, rank), rank=rank)

    chosen = R.parse_rule(rank_rule)
    need = {
        la.name: la.energy_rank_90 if chosen.name == R.DEFAULT_RULE else chosen(la.sigma) for la in layers
    }
    pattern = {la.name: snap_rank(need[la.name] * per_layer_margin, allowed, la.r) for la in layers}
    spectra = [la.sigma for la in layers]
    alloc = allocate(shapes, spectra, energy=0.90)
    named = {}
    for rule, (fn, p) in NAMED_RULES.items():
        pat = {la.name: min(la.r, fn(la.sigma, p)) for la in layers}
        named[rule] = make(rule, lora_params_at(shapes, pat), rank_pattern=pat, parameter=p)
    by_rule = {}
    for name in R.REPORTED_RULES:
        pat = {la.name: (la.rule_ranks or R.rule_ranks(la.sigma, la.r))[name] for la in layers}
        by_rule[name] = make(name, lora_params_at(shapes, pat), rank_pattern=pat)
    return Suggestions(
        allowed_ranks=allowed,
        per_layer_margin=per_layer_margin,
        uniform_median=uniform("uniform_median", summary.energy_rank_90_p50),
        uniform_p90=uniform("uniform_p90", summary.energy_rank_90_p90),
        per_layer=make(
            "per_layer", lora_params_at(shapes, pattern), rank_pattern=pattern, parameter=per_layer_margin
        ),
        global_energy_90=make(
            "global_energy_90",
            alloc.lora_params,
            rank_pattern=alloc.rank_pattern,
            parameter=0.90,
            retained_energy=alloc.retained_energy,
        ),
        named_rules=named,
        rank_rule=chosen.name,
        rank_rules=by_rule,
    )


def build_report(
    audited: Iterable[tuple[LayerAudit, list[AuditIssue]]],
    *,
    other_params: int,
    source: str,
    adapter_info: dict[str, Any],
    allowed_ranks: Sequence[int] | None = None,
    per_layer_margin: float = 1.0,
    rank_rule: str = R.DEFAULT_RULE,
) -> AuditReport:
    layers: list[LayerAudit] = []
    issues: list[AuditIssue] = []
    for layer, layer_issues in audited:
        layers.append(layer)
        issues.extend(layer_issues)
    summary = summarize(layers, other_params)
    return AuditReport(
        gradience_version=_version(),
        source=source,
        adapter=adapter_info,
        summary=summary,
        suggestions=suggest(layers, summary, allowed_ranks, per_layer_margin, rank_rule),
        issues=issues,
        layers=layers,
        concentration=concentration(layers),
    )


def audit_adapter(
    peft_dir: Path,
    *,
    adapter_config: Path | None = None,
    weights: Path | None = None,
    allowed_ranks: Sequence[int] | None = None,
    per_layer_margin: float = 1.0,
    top_singular_values: int = 0,
    progress: bool = False,
    rank_rule: str = R.DEFAULT_RULE,
) -> AuditReport:
    """Audit an adapter folder, one layer in memory at a time."""
    adapter = open_adapter(peft_dir, adapter_config, weights)

    def one(
        spec: LayerSpec, a: np.ndarray, b: np.ndarray, ws: Workspace
    ) -> tuple[LayerAudit, list[AuditIssue]]:
        mag = adapter.tensor(spec.magnitude_key) if spec.magnitude_key else None
        return audit_layer(spec, a, b, mag, top_singular_values, ws)

    def stream() -> Iterable[tuple[LayerAudit, list[AuditIssue]]]:
        with one_blas_thread():  # once for the pass; the layers run on several threads instead
            items: Iterable[tuple[LayerAudit, list[AuditIssue]]] = adapter.map_layers(one)
            if progress:
                from rich.console import Console
                from rich.progress import track

                items = track(
                    items, total=len(adapter.layers), description="auditing", console=Console(stderr=True)
                )
            yield from items

    cfg = adapter.config
    info = {
        "peft_type": cfg.peft_type,
        "r": cfg.r,
        "lora_alpha": cfg.lora_alpha,
        "use_rslora": cfg.use_rslora,
        "use_dora": cfg.use_dora,
        "rank_pattern": cfg.rank_pattern,
        "alpha_pattern": cfg.alpha_pattern,
        "target_modules": cfg.target_modules,
        "modules_to_save": cfg.modules_to_save,
        "base_model_name_or_path": cfg.base_model_name_or_path,
        "weights": adapter.weights_path.name,
        "dora_magnitude_params": adapter.magnitude_params,
    }
    return build_report(
        stream(),
        other_params=adapter.other_params + adapter.magnitude_params,
        source=str(peft_dir),
        adapter_info=info,
        allowed_ranks=allowed_ranks,
        per_layer_margin=per_layer_margin,
        rank_rule=rank_rule,
    )
