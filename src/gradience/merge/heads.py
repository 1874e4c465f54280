"""Non-LoRA tensors (classifier heads, modules_to_save, LoRA biases, trainable tokens) of a merge.

They are not low-rank updates, so no merge rule applies to them: they are carried only when every
input holds the same keys with bit-identical values, or taken whole from the one input named by
`--head-from` (with its modules_to_save). Anything else is refused rather than guessed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gradience.audit import Adapter
from gradience.merge.errors import MergeError


def input_label(i: int) -> str:
    return chr(ord("A") + i) if i < 26 else str(i + 1)


def resolve_head_from(choice: str, paths: list[Path]) -> int:
    """--head-from as a letter (A, B, …), a 1-based position, or one of the input paths."""
    labels = [input_label(i) for i in range(len(paths))]
    if choice.upper() in labels:
        return labels.index(choice.upper())
    if choice.isdigit() and 1 <= int(choice) <= len(paths):
        return int(choice) - 1
    for i, p in enumerate(paths):
        if Path(choice).resolve() == Path(p).resolve():
            return i
    raise MergeError(f"--head-from {choice!r} names none of the inputs (use {', '.join(labels)} or a path)")


def carried_tensors(
    adapters: list[Adapter], paths: list[Path], head_from: int | None
) -> tuple[dict[str, tuple[str, np.ndarray]], int]:
    """The non-LoRA tensors to write (safetensors code, stored bits), and the input whose config they follow."""
    if head_from is not None:
        src = adapters[head_from]
        return {k: src.stored(k) for k in src.other_keys}, head_from
    first = adapters[0]
    keys = first.other_keys
    for i, ad in enumerate(adapters[1:], start=1):
        if set(ad.other_keys) != set(keys):
            extra = sorted(set(ad.other_keys) ^ set(keys))[0]
            raise MergeError(
                f"non-LoRA tensor {extra} is in only some inputs ({paths[0]} vs {paths[i]}); "
                "pass --head-from A (or B, …) to take heads and modules_to_save from one adapter"
            )
    out = {}
    for key in keys:
        ref_code, ref = first.stored(key)
        for i, ad in enumerate(adapters[1:], start=1):
            t_code, t = ad.stored(key)
            if t_code != ref_code or t.shape != ref.shape or not np.array_equal(t, ref):
                raise MergeError(
                    f"non-LoRA tensor {key} differs between {paths[0]} and {paths[i]} (heads or "
                    "modules_to_save trained separately); pass --head-from A (or B, …) to take them from one"
                )
        out[key] = (ref_code, ref)
    return out, 0
