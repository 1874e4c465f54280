"""The user's data as evaluation items: read once, sampled with a fixed seed, tokenised once.

The bench cuts a held-out slice from a training split; certify's data is all evaluation data.
A source with a validation split (dev.tsv, a hub 'validation' split) is evaluated on that
split, anything else on its one (train) split. ``--eval-samples N`` takes N rows with the
tasks' fixed SPLIT_SEED, so reruns and --resume see the same items. The label list is learned
from the training split when there is one (the order a bench-trained head was trained with),
and ``--labels`` overrides it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradience.bench import BenchInputError
from gradience.bench.config import TaskConfig
from gradience.bench.tasks import SPLIT_SEED, Split, Task, TaskData, load_tokenizer, make_task

MIN_ITEMS = 20


@dataclass
class EvalItems:
    task: Task
    split: Split
    data: TaskData  # what task.load_model needs (num_labels, pad token)
    source: str
    split_name: str  # of the source: validation or train
    n_rows: int  # rows in that split before sampling


def _fingerprint(source: str, cfg: TaskConfig, split: Split) -> str:
    h = hashlib.sha256(f"{source}|{cfg.model_dump_json()}|{split.name}:{split.rows}".encode())
    for key in sorted(split.features):
        h.update(f"|{key}:{split.features[key]}".encode())
    h.update(f"|{split.labels}|{split.items}".encode())
    return h.hexdigest()[:16]


def load_eval_items(model_path: str, cfg: TaskConfig, eval_samples: int | None) -> EvalItems:
    from gradience.bench.tasks.data import read_source

    task = make_task(cfg)
    raw, source = read_source(cfg)
    name = "validation" if "validation" in raw else "train"
    ds = raw[name]
    task.check_columns(ds, name)
    tok = load_tokenizer(model_path)
    task.prepare(tok, raw["train"] if "train" in raw and not cfg.labels else ds)
    n = len(ds)
    if eval_samples is not None and eval_samples < n:
        rows = sorted(np.random.default_rng(SPLIT_SEED).permutation(n)[:eval_samples].tolist())
    else:
        rows = list(range(n))
    if len(rows) < MIN_ITEMS:
        raise BenchInputError(
            f"{len(rows)} eval items ({source}, {name} split); certify needs at least {MIN_ITEMS} "
            "(and resolves small margins only with hundreds to thousands)"
        )
    split = task.tokenise(tok, ds, rows, name)
    num_labels = task.num_labels([split])
    labels: list[str] = list(getattr(task, "label_names", []))
    pad = int(tok.pad_token_id or 0)
    data = TaskData(
        split, split, None, None, num_labels, pad, source, {name: len(split)}, labels,
        _fingerprint(source, cfg, split), task,
    )  # fmt: skip
    return EvalItems(task, split, data, source, name, n)


def task_config(base: dict[str, Any], overrides: dict[str, Any], where: str) -> TaskConfig:
    """``--task-config`` keys, then the flags that were given, validated as one TaskConfig."""
    from pydantic import ValidationError

    from gradience.files import describe_validation_error

    merged = {**base, **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return TaskConfig.model_validate(merged)
    except ValidationError as err:
        raise BenchInputError(
            f"invalid task settings ({where}): " + describe_validation_error(err, "task")
        ) from None


def read_task_config(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    from gradience.files import MalformedInput, loads_yaml, read_text

    try:
        data = loads_yaml(read_text(path, "task config"), f"task config {path}")
    except MalformedInput as exc:
        raise BenchInputError(str(exc)) from None
    if not isinstance(data, dict):
        raise BenchInputError(
            f"task config {path} must be a mapping of task keys (type, data, text_fields, …)"
        )
    return data.get("task", data) if isinstance(data.get("task"), dict) else data
