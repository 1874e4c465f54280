"""Task data: GLUE-style classification splits, tokenised once, padded per batch.

The eval items decide how much a verdict can tell (SPEC §5): they are shared by every
seed and variant, so the held-out slice is cut from the training split with a fixed
seed of its own, independent of the run seeds, and is disjoint from every item a run
trains on. The official validation split is evaluated beside it.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gradience.bench import BenchInputError
from gradience.bench.config import TaskConfig

SPLIT_SEED = 20_240_531  # fixes which train rows are held out; never a run seed
MAX_LENGTH = 128  # truncation only; batches are padded to their own longest item
SELECTION_SAMPLES = 256  # optional monitoring slice (train.eval_steps), never used to pick


@dataclass
class Split:
    """A tokenised split: ``rows`` index the source split so predictions can be traced back."""

    name: str
    rows: list[int]
    features: dict[str, list[list[int]]]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class TaskData:
    train: Split
    eval: Split  # the split verdicts are computed on
    beside: Split | None  # reported next to it (the official validation split under heldout)
    selection: Split | None
    num_labels: int
    pad_token_id: int
    source: str
    sizes: dict[str, int] = field(default_factory=dict)


def _read_local(data_dir: Path) -> dict[str, Any]:
    import datasets

    if not data_dir.is_dir():
        raise BenchInputError(
            f"task.data_dir '{data_dir}' does not exist (relative paths are read from {Path.cwd()}); "
            "point --data-dir at a folder holding GLUE-format train.tsv and dev.tsv"
        )
    files = {"train": data_dir / "train.tsv"}
    for name in ("dev.tsv", "validation.tsv"):
        if (data_dir / name).is_file():
            files["validation"] = data_dir / name
            break
    if not files["train"].is_file():
        raise BenchInputError(
            f"no train.tsv in task.data_dir '{data_dir}' (GLUE format: a header row, tab-separated)"
        )
    # QUOTE_NONE: GLUE TSVs contain bare quote characters that must stay part of the text.
    # datasets' own bars would interleave with ours on stderr (and break one-line errors).
    was_disabled = datasets.utils.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    ds_logger = logging.getLogger("datasets")  # it logs the parser's error too: ours is the one line
    level = ds_logger.level
    ds_logger.setLevel(logging.CRITICAL)
    try:
        ds = datasets.load_dataset(
            "csv",
            data_files={k: str(v) for k, v in files.items()},
            delimiter="\t",
            quoting=3,
            keep_in_memory=True,
        )
    except Exception as exc:  # ragged rows, bad encoding, …: the file is the problem, not the code
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        cause = exc.__cause__ or exc.__context__
        detail = str(cause).strip().splitlines()[0] if cause is not None and str(cause).strip() else ""
        raise BenchInputError(
            f"cannot read the TSV files in {data_dir} ({(detail or first)[:200]}); GLUE format is a header "
            "row and tab-separated columns, the same number in every row"
        ) from None
    finally:
        ds_logger.setLevel(level)
        if not was_disabled:
            datasets.enable_progress_bars()
    return dict(ds)


def _read_hub(task: TaskConfig) -> dict[str, Any]:
    import datasets

    try:
        ds = datasets.load_dataset(task.dataset, task.subset)
    except Exception as exc:  # offline, unknown name, …: all one user-facing problem
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BenchInputError(
            f"cannot load {task.dataset}/{task.subset} from the hub ({first[:160]}); offline, put GLUE-format "
            "train.tsv and dev.tsv in a folder and pass --data-dir DIR (or set task.data_dir)"
        ) from None
    return dict(ds)


def _check_columns(split: Any, task: TaskConfig, name: str) -> None:
    missing = [c for c in [*task.text_fields, task.label_field] if c not in split.column_names]
    if missing:
        raise BenchInputError(
            f"{name} split has no column(s) {missing}; it has {split.column_names} (set task.text_fields/label_field)"
        )


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


def _tokenise(tokenizer: Any, ds: Any, rows: list[int], task: TaskConfig, name: str) -> Split:
    sub = ds.select(rows)
    texts = [list(map(str, sub[c])) for c in task.text_fields]
    enc = tokenizer(*texts, truncation=True, max_length=MAX_LENGTH)
    keep = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    labels = [_label(x, task.label_field, name) for x in sub[task.label_field]]
    if any(lab < 0 for lab in labels):
        raise BenchInputError(f"{name} split has unlabelled rows (label < 0); the bench needs labelled items")
    return Split(name, list(rows), {k: enc[k] for k in keep}, labels)


def _label(value: Any, field: str, split: str) -> int:
    """Class labels are the integers 0..K-1 (GLUE's encoding); anything else is bad data."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, str)):
        raise BenchInputError(f"{split} split: label column '{field}' has a non-integer value {value!r}")
    try:
        as_float = float(value)
        if not as_float.is_integer():
            raise ValueError
        return int(as_float)
    except (ValueError, OverflowError):
        raise BenchInputError(
            f"{split} split: label column '{field}' holds {value!r}; labels must be integers 0..K-1"
        ) from None


@functools.lru_cache(maxsize=4)
def _load_cached(model_path: str, task_json: str, data_dir: str | None, sizes: tuple[Any, ...]) -> TaskData:
    from transformers import AutoTokenizer

    task = TaskConfig.model_validate_json(task_json)
    eval_samples, train_samples, beside_cap, selection = sizes
    raw = _read_local(Path(data_dir)) if data_dir else _read_hub(task)
    if "train" not in raw:
        raise BenchInputError(f"dataset {task.dataset}/{task.subset} has no train split")
    _check_columns(raw["train"], task, "train")
    has_val = "validation" in raw
    if has_val:
        _check_columns(raw["validation"], task, "validation")
    heldout = task.eval_split == "heldout"
    if not heldout and not has_val:
        raise BenchInputError(
            "task.eval_split is 'validation' but the data has no validation split (dev.tsv)"
        )
    try:
        tok = AutoTokenizer.from_pretrained(model_path)
    except Exception as exc:
        raise BenchInputError(
            f"cannot load a tokenizer for model '{model_path}': {str(exc).splitlines()[0]}"
        ) from None
    parts = split_rows(len(raw["train"]), eval_samples, train_samples, heldout, selection)
    train = _tokenise(tok, raw["train"], parts["train"], task, "train")
    if heldout:
        ev = _tokenise(tok, raw["train"], parts["heldout"], task, "heldout")
        beside = None
        if has_val:
            n_val = len(raw["validation"])
            rows = (
                list(range(n_val))
                if beside_cap is None
                else _slice(n_val, min(beside_cap, n_val), SPLIT_SEED)
            )
            beside = _tokenise(tok, raw["validation"], rows, task, "validation")
    else:
        n_val = len(raw["validation"])
        ev = _tokenise(
            tok, raw["validation"], _slice(n_val, min(eval_samples, n_val), SPLIT_SEED), task, "validation"
        )
        beside = None
    sel = _tokenise(tok, raw["train"], parts["selection"], task, "selection") if selection else None
    num_labels = max(max(train.labels), max(ev.labels)) + 1
    source = str(Path(data_dir).resolve()) if data_dir else f"hub:{task.dataset}/{task.subset}"
    sizes_out = {s.name: len(s) for s in (train, ev, beside, sel) if s is not None}
    return TaskData(train, ev, beside, sel, num_labels, int(tok.pad_token_id or 0), source, sizes_out)


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
    data_dir = os.path.abspath(task.data_dir) if task.data_dir else None
    beside_cap = eval_samples if smoke else None  # smoke: a tiny budget for the validation split too
    return _load_cached(
        model_path, task.model_dump_json(), data_dir, (eval_samples, train_samples, beside_cap, selection)
    )


def collate(split: Split, idx: list[int] | np.ndarray, pad_token_id: int) -> dict[str, Any]:
    """Pad one batch to its own longest item (dynamic padding)."""
    import torch

    width = max(len(split.features["input_ids"][i]) for i in idx)
    out: dict[str, Any] = {}
    for key, seqs in split.features.items():
        pad = pad_token_id if key == "input_ids" else 0
        out[key] = torch.tensor([seqs[i] + [pad] * (width - len(seqs[i])) for i in idx], dtype=torch.long)
    out["labels"] = torch.tensor([split.labels[i] for i in idx], dtype=torch.long)
    return out


def eval_batches(split: Split, batch_size: int) -> list[list[int]]:
    """Length-sorted batches: a fixed order (so reruns agree) with far less padding than random order."""
    order = sorted(range(len(split)), key=lambda i: len(split.features["input_ids"][i]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
