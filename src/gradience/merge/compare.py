"""merge_audit: are two adapters compatible, layer by layer? Exact, from the factors only.

Every shared module gets the principal angles between the two updates' column and row spaces,
their Frobenius cosine and their norm ratio (see `geometry`), and a verdict by the stated
thresholds (`Thresholds`). The summary's global cosine is that of the two whole-adapter
updates: Σ⟨ΔW_A, ΔW_B⟩ / √(Σ‖ΔW_A‖²·Σ‖ΔW_B‖²) over the shared layers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gradience.audit import LayerSpec, module_type
from gradience.audit.parallel import ordered_map
from gradience.audit.spectra import one_blas_thread
from gradience.merge.errors import MergeError
from gradience.merge.geometry import PairGeometry, pair_geometry, thin_svd
from gradience.merge.inputs import common_base, layer_maps, open_inputs
from gradience.merge.report import CompatSummary, LayerCompat, MergeAuditReport, Thresholds

VERDICTS = ("aligned", "orthogonal", "conflicting", "empty")


def verdict(cosine: float | None, th: Thresholds) -> str:
    if cosine is None:
        return "empty"
    if cosine >= th.cosine:
        return "aligned"
    if cosine <= -th.cosine:
        return "conflicting"
    return "orthogonal"


def _layer(
    la: LayerSpec, lb: LayerSpec, g: PairGeometry, ka: int, kb: int, th: Thresholds, top_k: int
) -> LayerCompat:
    cos = g.cosine
    ratio = g.norm_b / g.norm_a if g.norm_a > 0 else None
    notes = []
    if ratio is not None and ratio > th.imbalance:
        notes.append(f"B's update is {ratio:.3g}× A's: B dominates an equal-weight merge")
    elif ratio is not None and 0 < ratio < 1 / th.imbalance:
        notes.append(f"A's update is {1 / ratio:.3g}× B's: A dominates an equal-weight merge")
    if g.norm_a == 0 or g.norm_b == 0:
        notes.append("one update is zero (untrained lora_B)")
    return LayerCompat(
        name=la.name,
        module_type=module_type(la.name),
        out_features=la.out_features,
        in_features=la.in_features,
        rank_a=la.r,
        rank_b=lb.r,
        numerical_rank_a=ka,
        numerical_rank_b=kb,
        norm_a=g.norm_a,
        norm_b=g.norm_b,
        norm_ratio=ratio,
        inner_product=g.inner,
        cosine=cos,
        col_cosines=[float(c) for c in g.col_cosines[:top_k]],
        row_cosines=[float(c) for c in g.row_cosines[:top_k]],
        col_overlap=PairGeometry.overlap(g.col_cosines),
        row_overlap=PairGeometry.overlap(g.row_cosines),
        verdict=verdict(cos, th),
        notes=notes,
    )


def _recommend(layers: list[LayerCompat], conflict_share: float, global_cos: float | None) -> str:
    if conflict_share > 0.25:
        return (
            f"{conflict_share:.0%} of the update energy sits in conflicting layers: a linear or svd merge "
            "cancels there; prefer ties, or keep the adapters separate"
        )
    if global_cos is not None and global_cos >= 0.5:
        return (
            "the updates largely agree: a linear or svd merge reinforces them (consider weights summing to 1)"
        )
    return "few conflicts: a linear or svd merge keeps both updates; certify the merge on each source task"


def merge_audit(
    a: Path, b: Path, *, thresholds: Thresholds | None = None, top_k: int = 8
) -> MergeAuditReport:
    """Compare two PEFT LoRA adapters on the same base; MergeError when they cannot be compared."""
    from gradience import __version__

    th = thresholds or Thresholds()
    if th.cosine <= 0 or th.cosine >= 1 or th.imbalance <= 1:
        raise MergeError("thresholds: cosine must be in (0, 1) and imbalance > 1")
    if top_k < 1:
        raise MergeError(f"--top-k must be ≥ 1, got {top_k}")
    paths = [Path(a), Path(b)]
    ad_a, ad_b = open_inputs(paths)
    base = common_base(paths, [ad_a, ad_b])
    map_a, map_b = layer_maps(paths, [ad_a, ad_b])
    shared = [name for name in map_a if name in map_b]
    if not shared:
        raise MergeError(f"{a} and {b} adapt no module in common: nothing to compare")

    def one(name: str, ws: object) -> LayerCompat:
        la, lb = map_a[name], map_b[name]
        xa = thin_svd(*ad_a.factors(la), la.scale)
        xb = thin_svd(*ad_b.factors(lb), lb.scale)
        return _layer(la, lb, pair_geometry(xa, xb), xa.k, xb.k, th, top_k)

    with one_blas_thread():  # layers on several threads instead (numpy releases the GIL)
        rows: list[LayerCompat] = list(ordered_map(one, shared))
    inner = float(sum(r.inner_product for r in rows))
    ea, eb = sum(r.norm_a**2 for r in rows), sum(r.norm_b**2 for r in rows)
    global_cos = inner / float(np.sqrt(ea * eb)) if ea > 0 and eb > 0 else None
    conflict = sum(r.norm_a**2 + r.norm_b**2 for r in rows if r.verdict == "conflicting")
    share = conflict / (ea + eb) if ea + eb > 0 else 0.0
    summary = CompatSummary(
        n_shared=len(rows),
        only_in_a=[n for n in map_a if n not in map_b],
        only_in_b=[n for n in map_b if n not in map_a],
        verdicts={v: sum(r.verdict == v for r in rows) for v in VERDICTS},
        global_cosine=global_cos,
        col_overlap_mean=float(np.mean([r.col_overlap for r in rows])),
        row_overlap_mean=float(np.mean([r.row_overlap for r in rows])),
        conflicting_energy_share=share,
        recommendation=_recommend(rows, share, global_cos),
    )
    return MergeAuditReport(
        gradience_version=__version__,
        adapter_a=str(a),
        adapter_b=str(b),
        base_model=base,
        thresholds=th,
        top_k=top_k,
        summary=summary,
        layers=rows,
    )
