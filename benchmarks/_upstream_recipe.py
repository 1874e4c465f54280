"""The plain recipe upstream Gradience v0.3.1 used, as faithfully as we can write it, for bench_speed.

HF ``Trainer`` + PEFT LoRA, every example padded to 128 tokens, evaluation every
``eval_steps`` on the eval items with ``load_best_model_at_end`` (checkpoints saved at each
evaluation, the best by accuracy reloaded), the probe audited, then the compressed variants
trained one after another the same way. Same learning rate, steps, batch size, training
items, LoRA settings and seeds as the bench it is compared with; the variants keep the probe's
scale (upstream forced α = r, a defect we do not copy: it would change their accuracy, not the time).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

PAD_TO = 128


def _dataset(tok: Any, texts: list[str], labels: list[int]) -> Any:
    from datasets import Dataset

    enc = tok(texts, padding="max_length", truncation=True, max_length=PAD_TO)
    return Dataset.from_dict({**{k: enc[k] for k in enc}, "labels": labels})


def train_and_eval(model_path: str, cfg: Any, rank: int, alpha: float, train: Any, evals: Any, seed: int,
                   eval_steps: int, out: Path) -> dict[str, Any]:  # fmt: skip
    """One Trainer run; returns the best checkpoint's predictions on the eval items and the timings."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    lc = LoraConfig(task_type=TaskType.SEQ_CLS, r=rank, lora_alpha=alpha, lora_dropout=cfg.lora.dropout,
                    target_modules=list(cfg.lora.target_modules), use_rslora=cfg.lora.use_rslora)  # fmt: skip
    base = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=2)
    model = get_peft_model(base, lc)
    args = TrainingArguments(
        output_dir=str(out), max_steps=cfg.train.max_steps, learning_rate=cfg.train.lr,
        weight_decay=cfg.train.weight_decay, per_device_train_batch_size=cfg.train.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.train.per_device_eval_batch_size, eval_strategy="steps",
        eval_steps=eval_steps, save_strategy="steps", save_steps=eval_steps, load_best_model_at_end=True,
        metric_for_best_model="accuracy", logging_steps=eval_steps, report_to=[], seed=seed, use_cpu=True,
        disable_tqdm=True, save_total_limit=2,
    )  # fmt: skip

    def metrics(p: Any) -> dict[str, float]:
        return {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())}

    trainer = Trainer(
        model=model, args=args, train_dataset=train, eval_dataset=evals, compute_metrics=metrics
    )
    t0 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t0
    pred = trainer.predict(evals)
    correct = np.argmax(pred.predictions, -1) == pred.label_ids
    adapter = out / "adapter"
    model.save_pretrained(str(adapter))
    steps, batch = cfg.train.max_steps, cfg.train.per_device_train_batch_size
    real = _real_tokens(train, steps, batch)
    return {"correct": correct, "accuracy": float(correct.mean()), "train_s": train_s, "adapter": adapter,
            "real_tokens": real, "padded_tokens": steps * batch * PAD_TO}  # fmt: skip


def _real_tokens(train: Any, steps: int, batch: int) -> int:
    """Non-pad tokens seen: the mean real length × examples drawn (the Trainer shuffles, so the mean)."""
    lengths = np.asarray([sum(m) for m in train["attention_mask"]])
    return int(lengths.mean() * steps * batch)


def run_recipe(model_path: str, cfg: Any, train_rows: tuple[list[str], list[int]],
               eval_rows: tuple[list[str], list[int]], eval_steps: int) -> dict[str, Any]:  # fmt: skip
    """Probe → audit → uniform_median and uniform_p90 retrained, one after another (upstream's variants)."""
    from transformers import AutoTokenizer

    from gradience.audit import audit_adapter

    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(model_path)
    train, evals = _dataset(tok, *train_rows), _dataset(tok, *eval_rows)
    seed, lo = cfg.train.seed, cfg.lora
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="upstream-") as tmp:
        runs["probe"] = train_and_eval(model_path, cfg, lo.probe_r, lo.alpha, train, evals, seed, eval_steps,
                                       Path(tmp) / "probe")  # fmt: skip
        sugg = audit_adapter(
            runs["probe"]["adapter"], allowed_ranks=cfg.compression.allowed_ranks
        ).suggestions
        for name, rank in (
            ("uniform_median", sugg.uniform_median.rank),
            ("uniform_p90", sugg.uniform_p90.rank),
        ):
            if rank == lo.probe_r:
                continue  # a control: upstream skips it too
            alpha = lo.alpha / lo.probe_r * rank
            runs[name] = train_and_eval(model_path, cfg, rank, alpha, train, evals, seed, eval_steps,
                                        Path(tmp) / name)  # fmt: skip
            runs[name]["rank"] = rank
        for r in runs.values():
            r.pop("adapter", None)
    return {"wall_s": time.perf_counter() - t0, "runs": runs}
