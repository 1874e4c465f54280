"""Task data: the held-out slice is disjoint from training, and the same for every seed and budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gradience.bench import BenchInputError
from gradience.bench.config import TaskConfig
from gradience.bench.tasks import collate, eval_batches, load_task_data, split_rows


def test_split_rows_disjoint_and_stable() -> None:
    a = split_rows(5000, eval_samples=500, train_samples=1000, heldout=True, selection=True)
    assert len(a["heldout"]) == 500 and len(a["train"]) == 1000 and len(a["selection"]) == 256
    assert not set(a["heldout"]) & set(a["train"])
    assert not set(a["selection"]) & (set(a["train"]) | set(a["heldout"]))
    # The held-out items depend on neither the training budget nor the selection slice.
    b = split_rows(5000, eval_samples=500, train_samples=3000, heldout=True, selection=False)
    assert a["heldout"] == b["heldout"]
    assert split_rows(5000, 500, 1000, True, True) == a  # deterministic
    c = split_rows(5000, eval_samples=500, train_samples=None, heldout=True, selection=False)
    assert len(c["train"]) == 4500 and not set(c["train"]) & set(c["heldout"])


def test_split_rows_too_small_is_input_error() -> None:
    with pytest.raises(BenchInputError, match="train_samples"):
        split_rows(100, eval_samples=80, train_samples=50, heldout=True, selection=False)


def test_sst2_heldout_disjoint_from_training_text(sst2_dir: Path, tiny_model_dir: Path) -> None:
    task = TaskConfig(data_dir=str(sst2_dir))
    data = load_task_data(str(tiny_model_dir), task, 400, 150, smoke=False, selection=False)
    assert data.eval.name == "heldout" and len(data.eval) == 150 and len(data.train) == 400
    assert not set(data.eval.rows) & set(data.train.rows)
    assert data.beside is not None and data.beside.name == "validation" and len(data.beside) == 872
    assert data.num_labels == 2 and set(data.train.labels) == {0, 1}
    # The same held-out items come back under another training budget (another bench, same eval set).
    other = load_task_data(str(tiny_model_dir), task, 200, 150, smoke=True, selection=False)
    assert other.eval.rows == data.eval.rows and other.eval.features == data.eval.features
    assert len(other.beside) == 150  # smoke caps the validation split too
    # Cached: tokenised once per bench, shared by every run.
    assert load_task_data(str(tiny_model_dir), task, 400, 150, smoke=False, selection=False) is data


def test_dynamic_padding(sst2_dir: Path, tiny_model_dir: Path) -> None:
    data = load_task_data(
        str(tiny_model_dir), TaskConfig(data_dir=str(sst2_dir)), 400, 150, smoke=False, selection=False
    )
    lengths = [len(x) for x in data.train.features["input_ids"]]
    idx = np.arange(16)
    batch = collate(data.train, idx, data.pad_token_id)
    assert batch["input_ids"].shape == (16, max(lengths[:16]))  # padded to the batch's longest, not 128
    assert int(batch["attention_mask"].sum()) == sum(lengths[:16])
    batches = eval_batches(data.eval, 64)
    assert sorted(i for b in batches for i in b) == list(range(len(data.eval)))


def test_sentence_pairs_use_both_fields(tmp_path: Path, tiny_model_dir: Path) -> None:
    rows = ["premise\thypothesis\tlabel"] + [f"a cat sat {i}\ta dog ran {i}\t{i % 2}" for i in range(40)]
    (tmp_path / "train.tsv").write_text("\n".join(rows) + "\n")
    (tmp_path / "dev.tsv").write_text("\n".join(rows[:11]) + "\n")
    task = TaskConfig(data_dir=str(tmp_path), text_fields=["premise", "hypothesis"])
    data = load_task_data(str(tiny_model_dir), task, 20, 10, smoke=False, selection=False)
    assert all(1 in x for x in data.train.features["token_type_ids"])  # second segment present
    dog = 3899  # the MiniLM vocabulary's "dog"
    assert all(dog in x for x in data.train.features["input_ids"])


def test_missing_data_and_columns_are_input_errors(tmp_path: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(BenchInputError, match="does not exist"):
        load_task_data(
            str(tiny_model_dir),
            TaskConfig(data_dir=str(tmp_path / "nope")),
            10,
            10,
            smoke=False,
            selection=False,
        )
    (tmp_path / "train.tsv").write_text("text\tlabel\nhello\t1\n")
    with pytest.raises(BenchInputError, match="no column"):
        load_task_data(
            str(tiny_model_dir), TaskConfig(data_dir=str(tmp_path)), 10, 10, smoke=False, selection=False
        )


def test_offline_hub_says_how_to_supply_files(tiny_model_dir: Path) -> None:
    with pytest.raises(BenchInputError, match="--data-dir"):
        load_task_data(str(tiny_model_dir), TaskConfig(data_dir=None), 10, 10, smoke=False, selection=False)
