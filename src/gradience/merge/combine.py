"""merge_adapters: several PEFT LoRA adapters on one base → one PEFT LoRA adapter.

linear: the weighted sum Σ w_t·s_t·B_t·A_t is itself a product of concatenated factors,
        [w_1·s_1·B_1 … w_n·s_n·B_n]·[A_1; …; A_n], written as is: lossless, rank Σ r_t.
svd:    the same concatenation, truncated by the audit's r×r-core machinery (compress's
        `truncate_factors`): the Eckart–Young best rank-k approximation of that exact sum, with
        ΔW never formed. k: --rank, --energy, or by default the largest input rank.
ties, dare: elementwise on the dense updates (see `elementwise`), one layer at a time, then an
        SVD of the merged dense update to --rank / --energy or its full numerical rank.

Every written layer has α = its rank, so PEFT's scale is exactly 1 and the factors carry the
whole merged update. Output tensors are kept until the file is written (memory: the output
adapter plus one layer's work), then streamed into safetensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gradience.audit import Adapter, LayerSpec, energy_rank, module_type
from gradience.audit.metrics import numerical_rank
from gradience.audit.parallel import ordered_map
from gradience.audit.spectra import Workspace, gram_cores, one_blas_thread, spectrum_from_grams, to_f64
from gradience.audit.store import cast_into, encode
from gradience.compress.factors import core_eig, truncated
from gradience.compress.peft_config import LayerTarget, build_config
from gradience.compress.st_writer import SafetensorsStreamWriter
from gradience.files import check_output_dir, staged_output, write_json_atomic
from gradience.merge import elementwise
from gradience.merge.errors import MergeError
from gradience.merge.heads import carried_tensors, input_label, resolve_head_from
from gradience.merge.inputs import common_base, layer_maps, open_inputs
from gradience.merge.plan import MergePlan
from gradience.merge.report import MergedLayer, MergeReport

_CODES = {"fp32": "F32", "fp16": "F16", "bf16": "BF16"}  # --dtype → safetensors code


@dataclass
class _Part:
    """One input's contribution to one layer: ΔW_t = scale·B·A, weighted by w."""

    index: int
    weight: float
    spec: LayerSpec
    a: np.ndarray  # r×in, as read (float16/32/64; bf16 already widened)
    b: np.ndarray  # out×r


def _rank(plan: MergePlan, sigma: np.ndarray, default: int, cap: int) -> int:
    if plan.rank is not None:
        k = plan.rank
    elif plan.energy is not None:
        k = energy_rank(sigma, plan.energy)
    else:
        k = default
    return max(1, min(k, cap))


def _concatenated(parts: list[_Part], ws: Workspace) -> tuple[np.ndarray, np.ndarray]:
    """[A_1; …; A_n] and [w_1·s_1·B_1 … w_n·s_n·B_n] in float64, cast straight into buffers the
    thread reuses layer after layer (fresh multi-MB arrays per layer cost page faults)."""
    n_in, n_out, rs = parts[0].a.shape[1], parts[0].b.shape[0], [p.a.shape[0] for p in parts]
    a_cat = ws.take("a_cat", sum(rs) * n_in, np.float64).reshape(sum(rs), n_in)
    b_cat = ws.take("b_cat", n_out * sum(rs), np.float64).reshape(n_out, sum(rs))
    at = 0
    for p, r in zip(parts, rs, strict=True):
        cast_into(a_cat[at : at + r], p.a)  # a contiguous block of rows
        b64 = ws.take("b_one", p.b.size, np.float64).reshape(p.b.shape)
        cast_into(b64, p.b)
        np.multiply(b64, p.weight * p.spec.scale, out=b_cat[:, at : at + r])
        at += r
    return a_cat, b_cat


def _merge_layer(
    plan: MergePlan, parts: list[_Part], j: int, ws: Workspace | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A' k×in, B' out×k, σ of the exact merged update) for one layer; nothing returned lives
    in `ws`."""
    if plan.method in ("linear", "svd"):
        a_cat, b_cat = _concatenated(parts, ws or Workspace())
        cores = gram_cores(a_cat, b_cat)
        eig = core_eig(cores.ga, cores.gb)  # also the spectrum, when G_A is well conditioned
        sigma = eig.sigma if eig is not None else spectrum_from_grams(cores.ga, cores.gb)
        if plan.method == "linear":
            return a_cat.copy(), b_cat.copy(), sigma
        cap = min(a_cat.shape[0], a_cat.shape[1], b_cat.shape[0])
        k = _rank(plan, sigma, max(p.spec.r for p in parts), cap)
        a2, b2 = truncated(a_cat, b_cat, k, (cores.ga, cores.gb), eig=eig)
        return a2, b2, sigma
    parts = [_Part(p.index, p.weight, p.spec, *to_f64(p.a, p.b)) for p in parts]
    deltas = [p.spec.scale * (p.b @ p.a) for p in parts]
    weights = [p.weight for p in parts]
    density = float(plan.density_used or 1.0)
    if plan.method == "ties":
        merged = elementwise.ties(deltas, weights, density)
    else:
        merged = elementwise.dare(deltas, weights, density, plan.seed, j, [p.index for p in parts])
    del deltas
    u, s, vh = np.linalg.svd(merged, full_matrices=False)
    k = _rank(plan, s, max(1, numerical_rank(s, rtol=max(merged.shape) * np.finfo(np.float64).eps)), s.size)
    root = np.sqrt(s[:k])
    return root[:, None] * vh[:k], u[:, :k] * root, s


def _check_configs(paths: list[Path], adapters: list[Adapter]) -> None:
    for field in ("fan_in_fan_out", "task_type"):
        values = {getattr(ad.config, field) for ad in adapters}
        if len(values) > 1:
            raise MergeError(
                f"the inputs disagree on {field} ({', '.join(map(str, sorted(values, key=str)))})"
            )


def _order(paths: list[Path], maps: list[dict[str, LayerSpec]], allow_missing: bool) -> list[str]:
    names: list[str] = []
    for layers in maps:
        names += [n for n in layers if n not in names]
    if not allow_missing:
        for name in names:
            missing = [str(p) for p, layers in zip(paths, maps, strict=True) if name not in layers]
            if missing:
                raise MergeError(
                    f"module {name} is not adapted by {missing[0]}; pass --allow-missing to count "
                    "a missing update as zero"
                )
    return names


def merge_adapters(
    sources: list[Path], dst: Path, plan: MergePlan, *, overwrite: bool = False
) -> MergeReport:
    """Merge the adapters in `sources` into a new PEFT adapter folder `dst` (written atomically)."""
    from gradience import __version__

    paths = [Path(s) for s in sources]
    weights = plan.resolved_weights(len(paths))
    dst = Path(dst)
    check_output_dir(dst, paths, overwrite=overwrite)
    head_ix = resolve_head_from(plan.head_from, paths) if plan.head_from is not None else None
    adapters = open_inputs(paths)
    base = common_base(paths, adapters)
    _check_configs(paths, adapters)
    maps = layer_maps(paths, adapters)
    names = _order(paths, maps, plan.allow_missing)
    carried, cfg_ix = carried_tensors(adapters, paths, head_ix)
    code = _CODES[plan.dtype]
    tensors: dict[str, tuple[str, np.ndarray]] = {}  # key → (safetensors code, storage array)
    rows, targets = [], []

    def one(item: tuple[int, str], ws: Workspace) -> tuple[Any, ...]:
        j, name = item
        parts, shapes = [], []
        for i, (ad, layers) in enumerate(zip(adapters, maps, strict=True)):
            if name in layers:
                sp = layers[name]
                shapes.append((ad.shape(sp.a_key), ad.shape(sp.b_key)))
                a, b = ad.factors(sp)  # matrices, bf16 widened; conv kernels flattened
                parts.append(_Part(i, weights[i], sp, a, b))
        a2, b2, sigma = _merge_layer(plan, parts, j, ws)
        return parts[0].spec, shapes[0], a2, b2, sigma, len(parts), [p.spec.r for p in parts]

    # factor merges: layers on several threads (numpy releases the GIL); ties/dare hold dense
    # out×in updates, so one layer at a time
    with one_blas_thread():
        for name, (spec, (a_shape, b_shape), a2, b2, sigma, n_src, ranks) in zip(
            names,
            ordered_map(one, list(enumerate(names)), workers=None if plan.method in ("linear", "svd") else 1),
            strict=True,
        ):
            k = a2.shape[0]
            tensors[spec.a_key] = (code, encode(a2.reshape(k, *a_shape[1:]), code))
            tensors[spec.b_key] = (code, encode(b2.reshape(b_shape[0], k, *b_shape[2:]), code))
            e = sigma**2
            total = float(e.sum())
            rows.append(
                MergedLayer(
                    name=name,
                    module_type=module_type(name),
                    sources=n_src,
                    input_ranks=ranks,
                    rank=k,
                    frob_norm=total**0.5,
                    retained_energy=float(e[:k].sum()) / total if total > 0 else 1.0,
                    frob_error=float(max(e[k:].sum(), 0.0)) ** 0.5,
                )
            )
            targets.append(LayerTarget(name, k, float(k), 1.0))
    raw = dict(adapters[cfg_ix].config.raw)
    raw.update(
        use_rslora=False,
        use_dora=False,
        target_modules=sorted(names),
        layers_to_transform=None,
        layers_pattern=None,
        base_model_name_or_path=base,
    )
    config = build_config(raw, targets, rslora=False)
    report = MergeReport(
        gradience_version=__version__,
        method=plan.method,
        sources=[str(p) for p in paths],
        weights=weights,
        options=plan.model_dump(mode="json", exclude={"method", "weights"}, exclude_none=True)
        | ({"density": plan.density_used} if plan.density_used is not None else {}),
        base_model=base,
        destination=str(dst),
        carried_keys=list(carried),
        head_from=input_label(head_ix) if head_ix is not None else None,
        lora_params=sum(t.size for _, t in tensors.values()),
        layers=rows,
    )
    tensors.update(carried)
    entries = [(key, c, tuple(t.shape)) for key, (c, t) in tensors.items()]
    with staged_output(dst, kind="merge", inputs=paths, overwrite=overwrite) as tmp:
        with SafetensorsStreamWriter(tmp / "adapter_model.safetensors", entries, {"format": "pt"}) as writer:
            for key, (_, t) in tensors.items():
                writer.write(key, t)
        write_json_atomic(tmp / "adapter_config.json", config)
        write_json_atomic(tmp / "merge_report.json", report.to_json())
    return report
