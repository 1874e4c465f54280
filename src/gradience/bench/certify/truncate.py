"""Truncate-and-evaluate for the bench's truncate_* variants: the same machinery as certify.

The bench trains a probe, saves it, and judges SVD truncations of it. Evaluating each
truncation by writing it, reloading the model and wrapping it in PEFT repeats work certify
does once; this function takes one base model, swaps each truncation's merged update into it
and hands back the task's ``SplitEval`` per plan (per-item outcomes in the split's row order,
as ``task.evaluate`` returns them). The base model's weights are restored bit for bit after
each plan; its head (and any other non-LoRA tensor of the adapter) is replaced by the adapter's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gradience.audit import open_adapter
from gradience.bench.certify.evaluate import evaluate_items
from gradience.bench.certify.ladder import candidate, factors, scan
from gradience.bench.certify.swap import WeightSwap, load_carried
from gradience.bench.tasks import Split, SplitEval, Task
from gradience.compress import CompressionPlan


def evaluate_truncations(
    base_model: Any,
    adapter_dir: Path,
    plans: Mapping[str, CompressionPlan],
    *,
    task: Task,
    split: Split,
    batch_size: int,
    pad_token_id: int,
    device: Any,
    label: str = "truncate",
) -> dict[str, SplitEval]:
    """Each plan's truncation of the adapter in ``adapter_dir``, evaluated on ``split`` by weight
    swapping. ``base_model`` is what ``task.load_model`` returns (it is modified: the adapter's
    non-LoRA tensors are loaded into it). A plan is what ``compress_adapter`` would be given (rank,
    rank_pattern, energy, budget_*), so the evaluated factors are the ones compress writes."""
    adapter = open_adapter(Path(adapter_dir))
    layers = scan(adapter)
    model = load_carried(base_model, Path(adapter_dir)).to(device)
    swap = WeightSwap(model, adapter)
    out = {}
    for name, plan in plans.items():
        cand = candidate(layers, name, "plan", 0.0, plan)
        with swap.merged(factors(adapter, layers, cand.ranks)) as merged:
            out[name], _ = evaluate_items(
                task, merged, split, batch_size=batch_size, pad_token_id=pad_token_id, device=device,
                label=f"{label} {name}",
            )  # fmt: skip
    return out
