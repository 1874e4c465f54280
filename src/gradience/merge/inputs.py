"""Opening several adapters and deciding whether they can be compared or merged at all.

Two adapters belong together only if they were trained on the same base: the configs' base model
names (when both are recorded) must be equal, and every module they share must have the same
shape and kind. Anything else would compare or add updates of different weight matrices.
"""

from __future__ import annotations

from pathlib import Path

from gradience.audit import Adapter, LayerSpec, open_adapter
from gradience.merge.errors import MergeError


def open_inputs(paths: list[Path]) -> list[Adapter]:
    adapters = [open_adapter(Path(p)) for p in paths]
    for path, ad in zip(paths, adapters, strict=True):
        if ad.config.use_dora or any(la.magnitude_key for la in ad.layers):
            raise MergeError(
                f"{path} is a DoRA adapter: its update m·(W+ΔW)/‖W+ΔW‖ depends on the base weights, "
                "so it is not a low-rank ΔW that can be compared or added; merge plain LoRA adapters"
            )
    return adapters


def common_base(paths: list[Path], adapters: list[Adapter]) -> str | None:
    """The shared base model name (None when no config records one); different names → MergeError."""
    named = [(p, ad.config.base_model_name_or_path) for p, ad in zip(paths, adapters, strict=True)]
    named = [(p, n) for p, n in named if n]
    if len({n for _, n in named}) > 1:
        (p0, n0), (p1, n1) = named[0], next((p, n) for p, n in named if n != named[0][1])
        raise MergeError(f"different base models: {p0} was trained on {n0!r}, {p1} on {n1!r}")
    return named[0][1] if named else None


def layer_maps(paths: list[Path], adapters: list[Adapter]) -> list[dict[str, LayerSpec]]:
    """Each adapter's layers by name; a shared module of a different shape → MergeError."""
    maps = [{la.name: la for la in ad.layers} for ad in adapters]
    first: dict[str, tuple[Path, LayerSpec]] = {}
    for path, layers in zip(paths, maps, strict=True):
        for name, la in layers.items():
            if name not in first:
                first[name] = (path, la)
                continue
            p0, la0 = first[name]
            if (la0.kind, la0.out_features, la0.in_features) != (la.kind, la.out_features, la.in_features):
                raise MergeError(
                    f"different base models: module {name} is {la0.kind} {la0.out_features}×{la0.in_features} "
                    f"in {p0} but {la.kind} {la.out_features}×{la.in_features} in {path}"
                )
    return maps
