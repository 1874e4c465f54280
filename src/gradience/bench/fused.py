"""Fused LoRA training: K jobs on one frozen base model, one forward and one backward per step.

A bench trains seeds × variants adapters on the same frozen base, each on small batches that
leave the CPU's matmul units mostly idle. Here every job is a named PEFT adapter of one model;
each step stacks the jobs' batches (job k owns rows k·b … (k+1)·b − 1), the frozen weights see
one large batch, and every LoRA branch and classifier head (``modules_to_save``) sees only its
own rows. The loss is the sum of the jobs' own mean losses: their parameters are disjoint, so
each job's gradient is exactly the gradient it would get alone. Each job keeps its own seed
(initial state and data order, taken from a model built exactly as ``train_lora``'s caller
builds it), rank pattern, scale, dropout mask, AdamW state, schedule and gradient clipping.

Exact up to float rounding when the jobs share every frozen weight (checked: a base whose
frozen weights depend on the seed is refused as ``FusedUnsupported``) and the model has no
random layers outside LoRA (dropout in the base draws one stream for the stacked batch, so
with dropout on the runs are equally random, not identical). Right padding to the longest
group is exact under the attention mask.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradience.bench.precision import frozen_bf16
from gradience.bench.tasks import Split, Task
from gradience.bench.training import LOG_POINTS, MAX_GRAD_NORM, TrainStats, _batches, progress
from gradience.files import checkpoint

_GROUPS: list[list[tuple[str, slice]]] = []  # the row groups of the forward pass in flight
PASS_TOKENS = 4096  # a packed forward pass's tokens at most: 12 SST-2 jobs of batch 16 fit in one


class FusedUnsupported(RuntimeError):
    """These jobs cannot share one model exactly (the executor then trains them one by one)."""


@dataclass
class FusedJob:
    adapter: str  # its adapter name inside the fused model
    seed: int
    label: str
    writer: Any = None
    params: list[Any] = field(default_factory=list)
    failure: BaseException | None = None


@contextlib.contextmanager
def row_groups(groups: list[tuple[str, slice]]) -> Iterator[None]:
    """The pass's rows belong to these jobs, in order: consecutive slices covering every row."""
    at = 0
    for _, rows in groups:
        if rows.start != at or rows.stop < at:
            raise ValueError(f"row groups must be consecutive slices from 0, got {groups}")
        at = rows.stop
    _GROUPS.append(groups)
    try:
        yield
    finally:
        _GROUPS.pop()


def _split(x: Any) -> list[tuple[str, Any]]:
    """Each job's rows of ``x``, as views from one ``split``: its backward writes every job's
    gradient into one tensor, where indexing (``x[rows]``) would have autograd allocate and add
    a zero tensor the size of ``x`` per job and layer (measured: most of a fused step's copies)."""
    groups = _GROUPS[-1]
    sizes = [rows.stop - rows.start for _, rows in groups]
    return [(name, part) for (name, _), part in zip(groups, x.split(sizes), strict=True)]


def _lora_forward(self: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
    """A LoRA Linear with several adapters: the base once, each adapter on its own rows."""
    import torch

    result = self.base_layer(x, *args, **kwargs)
    parts = []
    for name, rows in _split(x):
        if name in self.lora_A:
            parts.append(
                self.lora_B[name](self.lora_A[name](self.lora_dropout[name](rows))) * self.scaling[name]
            )
        else:  # this job does not adapt this module
            parts.append(rows.new_zeros((*rows.shape[:-1], result.shape[-1])))
    return result + torch.cat(parts, dim=0)


def _head_forward(self: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
    """A modules_to_save head: each job's own copy on its own rows."""
    import torch

    return torch.cat([self.modules_to_save[name](rows, *args, **kwargs) for name, rows in _split(x)])


@contextlib.contextmanager
def fused_forward(model: Any) -> Iterator[None]:
    """Route every LoRA layer and head of ``model`` through the row-grouped forward while inside."""
    from peft.tuners.lora.layer import Linear, LoraLayer
    from peft.utils.other import ModulesToSaveWrapper

    patched = []
    for mod in model.modules():
        if isinstance(mod, LoraLayer):
            if not isinstance(mod, Linear) or mod.lora_variant:
                raise FusedUnsupported(
                    f"fused training handles plain LoRA Linear layers, not {type(mod).__name__}"
                )
            mod.forward = _lora_forward.__get__(mod)
            patched.append(mod)
        elif isinstance(mod, ModulesToSaveWrapper):
            mod.forward = _head_forward.__get__(mod)
            patched.append(mod)
    try:
        yield
    finally:
        for mod in patched:
            del mod.forward  # the class's forward again


def _frozen(model: Any) -> dict[str, Any]:
    return {n: p for n, p in model.named_parameters() if not p.requires_grad and "original_module" not in n}


def build(models: list[Any], configs: list[Any], names: list[str]) -> Any:
    """One PEFT model holding every job's adapter, each at the state of its own freshly built
    model (``models[k]``: the job's seeded base + ``get_peft_model``, as trained alone). The first
    model becomes the fused one; the others are only read."""
    import torch
    from peft.utils.save_and_load import get_peft_model_state_dict, set_peft_model_state_dict

    fused = models[0]
    states = [{k: v.detach().clone() for k, v in get_peft_model_state_dict(m).items()} for m in models]
    base = _frozen(fused)
    for m in models[1:]:
        other = _frozen(m)
        if other.keys() != base.keys() or any(not torch.equal(base[n], other[n]) for n in base):
            raise FusedUnsupported("the jobs' frozen weights differ (a seed-dependent base layer)")
    if fused.active_adapter != names[0]:
        raise ValueError(f"the first job's adapter must be named {fused.active_adapter!r}")
    for name, cfg in zip(names[1:], configs[1:], strict=True):
        fused.add_adapter(name, cfg)
    for name, state in zip(names, states, strict=True):
        set_peft_model_state_dict(fused, state, adapter_name=name)
    for n, p in fused.named_parameters():  # PEFT trains only the active adapter; here every one
        p.requires_grad = ("lora_" in n or "modules_to_save" in n) and any(f".{a}." in n for a in names)
    return fused


def loss_sum(task: Task, logits: Any, labels: Any) -> tuple[Any, int]:
    """(summed loss, count) of these rows, so that Σ sums / Σ counts over a job's rows is the
    loss the HF model computes for its batch alone: mean over items, or over response tokens."""
    import torch.nn.functional as F

    if task.peft_task_type == "CAUSAL_LM":  # next-token: logit t predicts label t+1, −100 ignored
        target = labels[:, 1:].reshape(-1)
        flat = logits[:, :-1].float().reshape(-1, logits.shape[-1])
        return F.cross_entropy(flat, target, ignore_index=-100, reduction="sum"), int((target != -100).sum())
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="sum"), len(
        labels
    )


def _loss_counts(task: Task, data: Split) -> np.ndarray:
    """What each row adds to its batch's loss denominator: 1 item, or its response tokens."""
    if task.peft_task_type != "CAUSAL_LM":
        return np.ones(len(data), dtype=np.int64)
    return np.asarray([sum(t != -100 for t in row[1:]) for row in data.features["labels"]], dtype=np.int64)


def plan_chunks(lengths: list[np.ndarray], chunk_rows: int) -> list[list[tuple[int, np.ndarray]]]:
    """The step's forward passes: every job's rows sorted by length and cut into chunks of
    ``chunk_rows``, so each pass pads to its own longest row (short rows no longer pay for a long
    one); inside a chunk the rows are ordered by job, so each job owns a contiguous slice.
    Returns, per chunk, (job, positions in that job's batch) in row order."""
    rows = sorted(
        ((int(n), k, i) for k, lens in enumerate(lengths) for i, n in enumerate(lens)), key=lambda t: t[0]
    )
    chunks = []
    for start in range(0, len(rows), chunk_rows):
        part = sorted(rows[start : start + chunk_rows], key=lambda t: (t[1], t[2]))
        by_job: dict[int, list[int]] = {}
        for _, k, i in part:
            by_job.setdefault(k, []).append(i)
        chunks.append([(k, np.asarray(ix)) for k, ix in by_job.items()])
    return chunks


def plan_passes(
    bins_per_job: list[int], capacity: int, max_tokens: int
) -> list[list[tuple[int, np.ndarray]]]:
    """The step's forward passes when every job's rows are packed in bins of one ``capacity``:
    whole jobs, in order, as many per pass as fit in ``max_tokens`` (at least one). Each job then
    meets each LoRA layer once per pass rather than once per length-sorted chunk it has rows in
    (the certification bench's fused training: 1,418 s → 848 s). Same return shape as
    ``plan_chunks``."""
    passes: list[list[tuple[int, np.ndarray]]] = [[]]
    used = 0
    for k, n in enumerate(bins_per_job):
        if passes[-1] and (used + n) * capacity > max_tokens:
            passes.append([])
            used = 0
        passes[-1].append((k, np.arange(n)))
        used += n
    return passes


def _padded_logits(
    model: Any, task: Task, data: Split, parts: list[tuple[str, np.ndarray]], pad_token_id: int, device: Any
) -> tuple[Any, Any, list[tuple[str, slice]]]:
    """The jobs' rows stacked and right-padded to the longest; each job's slice of them."""
    rows = np.concatenate([r for _, r in parts])
    batch = {k: v.to(device) for k, v in task.collate(data, rows, pad_token_id).items()}
    labels = batch.pop("labels")
    groups, at = [], 0
    for name, r in parts:
        groups.append((name, slice(at, at + len(r))))
        at += len(r)
    with row_groups(groups):
        return model(**batch).logits, labels, groups


def train_fused(
    model: Any, jobs: list[FusedJob], data: Split, *, task: Task, steps: int, batch_size: int, lr: float,
    weight_decay: float, warmup_ratio: float, pad_token_id: int, device: Any, label: str,
    chunk_rows: int | None = None, precision: str = "fp32", pack: bool | None = None,
    pass_tokens: int = PASS_TOKENS,
) -> list[TrainStats | None]:  # fmt: skip
    """Train every job for ``steps`` steps; a job whose loss turns non-finite stops there (its
    ``failure`` set, the others go on). Per job, what ``train_lora`` returns alone. Each step runs
    the jobs' rows in length-sorted chunks of ``chunk_rows`` (default: the batch size) or, where
    the model allows packing (``bench.packing``) unless ``pack`` is False, packed in bins as long as
    the step's longest row, whole jobs per pass up to ``pass_tokens`` (``plan_passes``)."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    from gradience.bench.packing import pack_rows, packable, packed_logits

    pack = packable(model, task) if pack is None else pack and packable(model, task)

    chunk_rows = chunk_rows or batch_size
    by_name = dict(model.named_parameters())
    for job in jobs:
        job.params = [p for n, p in by_name.items() if p.requires_grad and f".{job.adapter}." in n]
    opts = [torch.optim.AdamW(j.params, lr=lr, weight_decay=weight_decay) for j in jobs]
    scheds = [get_linear_schedule_with_warmup(o, math.ceil(warmup_ratio * steps), steps) for o in opts]
    orders = [_batches(len(data), batch_size, steps, j.seed) for j in jobs]
    width = np.asarray([len(x) for x in data.features["input_ids"]])
    per_row = _loss_counts(task, data)
    losses: list[list[float]] = [[] for _ in jobs]
    tokens = [0] * len(jobs)
    log_every = max(1, steps // LOG_POINTS)
    t0 = time.perf_counter()
    model.train()
    with fused_forward(model), frozen_bf16(model, precision == "bf16"), progress(label, steps) as advance:
        for step in range(1, steps + 1):
            alive = [k for k, j in enumerate(jobs) if j.failure is None]
            if not alive:
                break
            idx = {k: next(orders[k]) for k in alive}
            counts = dict.fromkeys(alive, 0)
            sums: dict[int, float] = dict.fromkeys(alive, 0.0)
            for k in alive:  # a job's mean is over its whole batch, whatever the chunks
                counts[k] = int(per_row[idx[k]].sum())
            if pack:  # bins of one capacity, whole jobs per pass
                cap = max(int(width[idx[k]].max()) for k in alive)
                units = {k: pack_rows(idx[k], width, cap) for k in alive}
                plan = plan_passes([len(units[k]) for k in alive], cap, pass_tokens)
            else:  # batch rows, length-sorted into chunks
                units = {k: [idx[k][i : i + 1] for i in range(len(idx[k]))] for k in alive}
                plan = plan_chunks([width[idx[k]] for k in alive], chunk_rows)
            for chunk in plan:
                parts = [(jobs[alive[j]].adapter, [units[alive[j]][p] for p in pos]) for j, pos in chunk]
                if pack:
                    logits, labels, groups = packed_logits(model, data, parts, pad_token_id, device)
                else:
                    flat = [(name, np.concatenate(us)) for name, us in parts]
                    logits, labels, groups = _padded_logits(model, task, data, flat, pad_token_id, device)
                logits = logits.float()
                total = None
                for (j, _), (_, us), (_, sl) in zip(chunk, parts, groups, strict=True):
                    k = alive[j]
                    tokens[k] += int(sum(width[u].sum() for u in us))
                    part, _ = loss_sum(task, logits[sl], labels[sl])
                    sums[k] += float(part.detach())
                    scaled = part / max(counts[k], 1)
                    total = scaled if total is None else total + scaled
                if total is not None:
                    total.backward()
            for k in alive:
                loss = sums[k] / max(counts[k], 1)
                if not math.isfinite(loss):
                    jobs[k].failure = RuntimeError(
                        f"{jobs[k].label}: non-finite loss at step {step}; lower train.lr"
                    )
                    continue
                losses[k].append(loss)
                grad_norm = float(torch.nn.utils.clip_grad_norm_(jobs[k].params, MAX_GRAD_NORM))
                opts[k].step()
                scheds[k].step()
                if jobs[k].writer is not None and (step % log_every == 0 or step == steps):
                    jobs[k].writer.train_step(step, loss=loss, lr=scheds[k].get_last_lr()[0], grad_norm=grad_norm,
                                              epoch=step * batch_size / len(data))  # fmt: skip
            for o in opts:
                o.zero_grad(set_to_none=True)
            if step == 2:
                checkpoint("bench:training")
            advance(1, " ".join(f"{np.mean(x[-20:]):.3f}" for x in losses if x))
    wall = time.perf_counter() - t0
    out: list[TrainStats | None] = []
    for k, job in enumerate(jobs):
        if job.failure is not None:
            out.append(None)
            continue
        tail = losses[k][-max(1, steps // 10) :]
        out.append(TrainStats(steps=steps, final_loss=losses[k][-1], mean_loss_last_10pct=float(np.mean(tail)),
                              wall_s=wall, train_tokens=tokens[k]))  # fmt: skip
    return out
