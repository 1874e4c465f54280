"""LoRA training and evaluation: a plain torch loop instead of the HF Trainer.

Why plain: the bench trains many small adapters, so per-step overhead matters and
every knob must be visible — AdamW, linear warmup/decay, gradient clipping at 1.0,
seeds fixed for python/numpy/torch and for the data order, fp32. The final model is
evaluated once: no checkpoint is ever chosen by looking at the eval items.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from gradience.bench import BenchInputError
from gradience.bench.precision import frozen_bf16
from gradience.bench.tasks import Split, SplitEval, Task
from gradience.files import checkpoint

MAX_GRAD_NORM = 1.0
LOG_POINTS = 50  # about this many train_step events per run


class TrainStats(BaseModel):
    steps: int
    final_loss: float
    mean_loss_last_10pct: float
    wall_s: float
    train_tokens: int  # real (non-pad) tokens seen


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> Any:
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise BenchInputError("runtime.device is 'cuda' but torch sees no CUDA device; use --device cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise BenchInputError("runtime.device is 'mps' but this torch has no MPS backend; use --device cpu")
    return torch.device(name)


_progress_factory: Any = None  # a worker process relays its loops' progress to the driver instead


def set_progress_factory(factory: Any) -> Any:
    """Replace the rich bar of ``progress`` (e.g. by a relay to a driver process, or a no-op);
    returns the one it replaces, so a caller can put it back."""
    global _progress_factory
    before, _progress_factory = _progress_factory, factory
    return before


def progress_bar() -> Any:
    """The bench's rich bar on stderr (stdout stays parseable for --json): count, elapsed, ETA."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    columns += [TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}")]
    return Progress(*columns, console=Console(stderr=True))


@contextlib.contextmanager
def progress(description: str, total: int) -> Iterator[Any]:
    """Advance with ``advance(n, info)``: a rich bar here, or whatever a worker installed."""
    if _progress_factory is not None:
        with _progress_factory(description, total) as advance:
            yield advance
        return
    with progress_bar() as bar:
        task = bar.add_task(description, total=total, info="")
        yield lambda n=1, info="": bar.update(task, advance=n, info=info)


def lora_config(
    r: int,
    alpha: float,
    target_modules: list[str],
    dropout: float,
    use_rslora: bool,
    rank_pattern: dict[str, int] | None = None,
    alpha_pattern: dict[str, float] | None = None,
    task_type: str = "SEQ_CLS",
) -> Any:
    from peft import LoraConfig, TaskType

    return LoraConfig(
        task_type=getattr(TaskType, task_type),  # the task's; SEQ_CLS also saves the classifier head
        r=r,
        lora_alpha=alpha,
        target_modules=list(target_modules),
        lora_dropout=dropout,
        use_rslora=use_rslora,
        rank_pattern=dict(rank_pattern or {}),
        alpha_pattern=dict(alpha_pattern or {}),
    )


def _batches(n: int, batch_size: int, steps: int, seed: int) -> Iterator[np.ndarray]:
    """Seeded data order: fresh permutation per epoch, batches may straddle epochs."""
    rng = np.random.default_rng(seed)
    buf = np.empty(0, dtype=np.int64)
    for _ in range(steps):
        while len(buf) < batch_size:
            buf = np.concatenate([buf, rng.permutation(n)])
        yield buf[:batch_size]
        buf = buf[batch_size:]


def train_lora(
    model: Any, data: Split, *, task: Task, steps: int, batch_size: int, lr: float, weight_decay: float, seed: int,
    warmup_ratio: float = 0.06,
    pad_token_id: int, device: Any, writer: Any = None, label: str = "train",
    on_eval: Any = None, eval_steps: int | None = None, precision: str = "fp32",
) -> TrainStats:  # fmt: skip
    import torch
    from transformers import get_linear_schedule_with_warmup

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = get_linear_schedule_with_warmup(opt, math.ceil(warmup_ratio * steps), steps)
    log_every = max(1, steps // LOG_POINTS)
    losses: list[float] = []
    tokens = 0
    t0 = time.perf_counter()
    model.train()
    with frozen_bf16(model, precision == "bf16"), progress(label, steps) as advance:
        for step, idx in enumerate(_batches(len(data), batch_size, steps, seed), start=1):
            batch = {k: v.to(device) for k, v in task.collate(data, idx, pad_token_id).items()}
            tokens += int(batch["attention_mask"].sum())
            loss = model(**batch).loss.float()
            if not torch.isfinite(loss):
                raise RuntimeError(f"{label}: non-finite loss at step {step}; lower train.lr")
            loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM))
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            if step == 2:
                checkpoint("bench:training")  # crash-safety tests kill here, mid-run
            if writer is not None and (step % log_every == 0 or step == steps):
                epoch = step * batch_size / len(data)
                writer.train_step(
                    step, loss=losses[-1], lr=sched.get_last_lr()[0], grad_norm=grad_norm, epoch=epoch
                )
            if on_eval is not None and eval_steps and step % eval_steps == 0 and step < steps:
                on_eval(step)
                model.train()
            advance(1, f"loss {np.mean(losses[-20:]):.3f}")
    tail = losses[-max(1, steps // 10) :]
    return TrainStats(
        steps=steps, final_loss=losses[-1], mean_loss_last_10pct=float(np.mean(tail)),
        wall_s=time.perf_counter() - t0, train_tokens=tokens,
    )  # fmt: skip


def evaluate(
    model: Any, task: Task, split: Split, batch_size: int, pad_token_id: int, device: Any, label: str
) -> SplitEval:
    """The task's metric and every item's outcome, in the split's row order."""
    return task.evaluate(model, split, batch_size, pad_token_id, device, label)


def saved_ranks(adapter_dir: Path) -> dict[str, int]:
    """Each LoRA module's real rank, read from the saved tensors' shapes (not the config)."""
    from safetensors import safe_open

    from gradience.audit import split_key, strip_prefix  # the one LoRA key parser

    ranks: dict[str, int] = {}
    with safe_open(str(adapter_dir / "adapter_model.safetensors"), framework="pt") as f:
        for key in f.keys():
            parsed = split_key(key)
            if parsed is not None and parsed[1] in ("lora_A", "lora_embedding_A") and parsed[3] != "bias":
                ranks[strip_prefix(parsed[0])] = int(f.get_slice(key).get_shape()[0])
    return ranks


def verify_ranks(adapter_dir: Path, expected: dict[str, int], default_r: int) -> dict[str, int]:
    """Fail loudly if PEFT gave any layer another rank than asked (upstream's per-layer bug)."""
    ranks = saved_ranks(adapter_dir)
    wrong = {m: (r, expected.get(m, default_r)) for m, r in ranks.items() if r != expected.get(m, default_r)}
    missing = sorted(set(expected) - set(ranks))
    if wrong or missing:
        raise RuntimeError(f"adapter {adapter_dir} has wrong ranks {wrong} (saved, asked); missing {missing}")
    return ranks
