"""Task data for the bench: read from anywhere, split once, tokenised once, scored per item.

The eval items decide how much a verdict can tell (SPEC §5): they are shared by every
seed and variant, so the held-out slice is cut from the training split with a fixed
seed of its own, independent of the run seeds, and is disjoint from every item a run
trains on. The official validation split is evaluated beside it.

Task types (``task.type``) are registered in ``TASK_TYPES``; each is one module.
"""

from __future__ import annotations

import functools
import hashlib
import os
from typing import Any

import numpy as np

from gradience.bench import BenchInputError
from gradience.bench.config import TaskConfig
from gradience.bench.tasks.base import ACCURACY, Metric, Split, SplitEval, Task, TaskData
from gradience.bench.tasks.causal_lm import CausalLMTask
from gradience.bench.tasks.classification import ClassificationTask

SPLIT_SEED = 20_240_531  # fixes which train rows are held out; never a run seed
MAX_LENGTH = 128  # classification truncation; batches are padded to their own longest item
SELECTION_SAMPLES = 256  # optional monitoring slice (train.eval_steps), never used to pick

TASK_TYPES: dict[str, type[Task]] = {"classification": ClassificationTask, "causal_lm": CausalLMTask}

__all__ = ["ACCURACY", "SPLIT_SEED", "TASK_TYPES", "Metric", "Split", "SplitEval", "Task", "TaskData",
           "collate", "eval_batches", "load_task_data", "make_task", "split_rows"]  # fmt: skip


def make_task(cfg: TaskConfig) -> Task:
    try:
        return TASK_TYPES[cfg.type](cfg)
    except KeyError:
        raise BenchInputError(f"unknown task.type {cfg.type!r}; known: {', '.join(TASK_TYPES)}") from None


def task_metric(cfg: TaskConfig) -> Metric:
    """The metric a config's task reports, without reading any data."""
    return make_task(cfg).metric


def _slice(n: int, k: int, seed: int) -> list[int]:
    """k of n rows in a fixed pseudo-random order (sorted, so files read naturally)."""
    return sorted(np.random.default_rng(seed).permutation(n)[:k].tolist())


def split_rows(
    n_train: int, eval_samples: int, train_samples: int | None, heldout: bool, selection: bool
) -> dict[str, list[int]]:
    """Train/heldout/selection row indices: disjoint, and the same for every seed and variant."""
    perm = np.random.default_rng(SPLIT_SEED).permutation(n_train).tolist()
    n_eval = eval_samples if heldout else 0
    n_sel = SELECTION_SAMPLES if selection else 0
    pool = n_train - n_eval - n_sel
    n_tr = pool if train_samples is None else train_samples
    if n_tr > pool or pool < 1:
        raise BenchInputError(
            f"the train split has {n_train} rows, too few for train.train_samples={train_samples} plus "
            f"{n_eval} held-out and {n_sel} selection items; lower train.train_samples or train.eval_samples"
        )
    return {
        "heldout": sorted(perm[:n_eval]),
        "selection": sorted(perm[n_eval : n_eval + n_sel]),
        "train": perm[n_eval + n_sel : n_eval + n_sel + n_tr],  # order irrelevant: each seed shuffles
    }


def load_tokenizer(model_path: str) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(model_path)
    except Exception as exc:
        raise BenchInputError(
            f"cannot load a tokenizer for model '{model_path}': {str(exc).splitlines()[0]}"
        ) from None
    if tok.pad_token_id is None and tok.eos_token_id is not None:
        tok.pad_token = tok.eos_token  # decoder-only tokenizers often have no pad token
    return tok


def _fingerprint(source: str, task: TaskConfig, splits: list[Split]) -> str:
    h = hashlib.sha256(f"{source}|{task.model_dump_json()}".encode())
    for s in splits:
        h.update(f"|{s.name}:{s.rows}".encode())
        h.update(str(s.features.get("input_ids")).encode())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=4)
def _load_cached(model_path: str, task_json: str, sizes: tuple[Any, ...]) -> TaskData:
    from gradience.bench.tasks.data import read_source

    cfg = TaskConfig.model_validate_json(task_json)
    task = make_task(cfg)
    eval_samples, train_samples, beside_cap, selection = sizes
    raw, source = read_source(cfg)
    for name, ds in raw.items():
        if len(ds) == 0:
            raise BenchInputError(f"the {name} split of {source} is empty")
        task.check_columns(ds, name)
    has_val = "validation" in raw
    heldout = cfg.eval_split == "heldout"
    if not heldout and not has_val:
        raise BenchInputError(
            "task.eval_split is 'validation' but the data has no validation split (dev.tsv)"
        )
    tok = load_tokenizer(model_path)
    task.prepare(tok, raw["train"])
    parts = split_rows(len(raw["train"]), eval_samples, train_samples, heldout, selection)
    train = task.tokenise(tok, raw["train"], parts["train"], "train")
    beside = None
    if heldout:
        ev = task.tokenise(tok, raw["train"], parts["heldout"], "heldout")
        if has_val:
            n_val = len(raw["validation"])
            cap = n_val if beside_cap is None else min(beside_cap, n_val)
            rows = list(range(n_val)) if cap == n_val else _slice(n_val, cap, SPLIT_SEED)
            beside = task.tokenise(tok, raw["validation"], rows, "validation")
    else:
        n_val = len(raw["validation"])
        rows = _slice(n_val, min(eval_samples, n_val), SPLIT_SEED)
        ev = task.tokenise(tok, raw["validation"], rows, "validation")
    sel = task.tokenise(tok, raw["train"], parts["selection"], "selection") if selection else None
    splits = [s for s in (train, ev, beside, sel) if s is not None]
    return TaskData(
        train, ev, beside, sel, task.num_labels([train, ev]), int(tok.pad_token_id or 0), source,
        {s.name: len(s) for s in splits}, list(getattr(task, "label_names", [])), _fingerprint(source, cfg, splits), task,
    )  # fmt: skip


def load_task_data(
    model_path: str,
    task: TaskConfig,
    train_samples: int | None,
    eval_samples: int,
    *,
    smoke: bool,
    selection: bool,
) -> TaskData:
    """Tokenised splits for a bench; cached, so the probe and every variant share one tokenisation."""
    data = task.model_copy()
    for key in ("data_dir", "data"):  # absolute, so the cache key and worker processes agree
        value = getattr(data, key)
        if value and os.path.exists(value):
            setattr(data, key, os.path.abspath(value))
    beside_cap = eval_samples if smoke else None  # smoke: a tiny budget for the validation split too
    return _load_cached(
        model_path, data.model_dump_json(), (eval_samples, train_samples, beside_cap, selection)
    )


def collate(split: Split, idx: list[int] | np.ndarray, pad_token_id: int) -> dict[str, Any]:
    """A classification batch padded to its own longest item (kept for callers of the GLUE era)."""
    return ClassificationTask(TaskConfig()).collate(split, idx, pad_token_id)


def eval_batches(split: Split, batch_size: int) -> list[list[int]]:
    """Length-sorted batches: a fixed order (so reruns agree) with far less padding than random order."""
    order = sorted(range(len(split)), key=lambda i: len(split.features["input_ids"][i]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
