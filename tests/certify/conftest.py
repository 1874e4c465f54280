"""Fixtures: a tiny BERT that can learn a little, a LoRA really trained on SST-2 rows, eval files.

The tiny BERT is initialised with a wide range (0.3, not BERT's 0.02): with 0.02 the [CLS]
position barely sees the other tokens, every prediction is the majority class and every
candidate would agree trivially. With 0.3 a short LoRA run gives varied predictions, so
truncations really flip items.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from certify_data import SST2, _sst2_rows, write_tsv  # noqa: F401  (fixtures below use them)

from tiny_models import save_tiny_bert

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

TARGETS = ["query", "key", "value", "attention.output.dense"]
TRAIN_ROWS = range(3000, 3800)  # of SST-2 train.tsv: what the adapter is trained on
EVAL_ROWS = range(20_000, 20_300)  # disjoint: what certify evaluates


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Any:
    """Tiny models gain nothing from a second thread, and on a shared 2-core box it spins."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), initializer_range=0.3)


@pytest.fixture(scope="session")
def eval_tsv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tsv(tmp_path_factory.mktemp("eval") / "eval.tsv", _sst2_rows(EVAL_ROWS))


@pytest.fixture(scope="session")
def trained_adapter(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> Path:
    """A rank-8 LoRA trained for 150 steps with the bench's own loop (``train_lora``)."""
    import torch
    from peft import get_peft_model

    from gradience.bench.config import TaskConfig
    from gradience.bench.tasks import load_tokenizer, make_task
    from gradience.bench.tasks.base import TaskData
    from gradience.bench.tasks.data import read_file
    from gradience.bench.training import lora_config, seed_everything, train_lora

    folder = tmp_path_factory.mktemp("train")
    path = write_tsv(folder / "train.tsv", _sst2_rows(TRAIN_ROWS))
    task = make_task(TaskConfig(data=str(path)))
    ds = read_file(path)
    tok = load_tokenizer(str(tiny_dir))
    task.prepare(tok, ds)
    split = task.tokenise(tok, ds, list(range(len(ds))), "train")
    data = TaskData(split, split, None, None, 2, int(tok.pad_token_id), str(path), task=task)
    seed_everything(0)
    cpu = torch.device("cpu")
    model = get_peft_model(task.load_model(str(tiny_dir), data, cpu), lora_config(8, 16, TARGETS, 0.0, False))
    train_lora(model, split, task=task, steps=150, batch_size=16, lr=1e-2, weight_decay=0.0, seed=0,
               pad_token_id=int(tok.pad_token_id), device=cpu, label="train tiny LoRA")  # fmt: skip
    out = tmp_path_factory.mktemp("adapter") / "lora"
    model.save_pretrained(str(out))
    return out
