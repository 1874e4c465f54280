"""Shared fixtures: offline hub, the repository's SST-2 copy, and a tiny random BERT."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from causal_fixtures import causal_lm_dir  # noqa: F401  (the pre-trained tiny Llama, a session fixture)

from gradience.bench.config import TaskConfig
from gradience.bench.tasks import load_task_data
from tiny_models import save_tiny_bert

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

SST2 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "glue-sst2"
TARGETS = ["query", "key", "value", "attention.output.dense"]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Any:
    """Tiny models gain nothing from a second thread, and on a shared 2-core box it spins."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def sst2_dir() -> Path:
    if not (SST2 / "train.tsv").is_file():
        pytest.fail(f"the SST-2 copy is expected at {SST2} (../shared/data/glue-sst2 beside the repository)")
    return SST2


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide random BERT with the real MiniLM tokenizer, built offline."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def make_config() -> Callable[..., dict[str, Any]]:
    return tiny_config


def tiny_config(model_dir: Path, data_dir: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A complete config dict for the tiny model: seconds per run on 2 cores."""
    cfg: dict[str, Any] = {
        "bench_version": "0.2",
        "model": {"name": str(model_dir)},
        "task": {"data_dir": str(data_dir)},
        "train": {"max_steps": 30, "lr": 1e-2, "per_device_train_batch_size": 16, "train_samples": 320,
                  "eval_samples": 120, "per_device_eval_batch_size": 64},
        "lora": {"probe_r": 8, "alpha": 16, "dropout": 0.0, "target_modules": TARGETS},
        "compression": {"seeds": [7], "probe_gate": 0.0, "allowed_ranks": [1, 2, 4, 8]},
        "runtime": {"smoke_max_steps": 10, "smoke_train_samples": 160, "smoke_eval_samples": 64},
    }  # fmt: skip
    for section, values in sections.items():
        cfg[section].update(values)
    return cfg


@pytest.fixture(scope="session")
def no_dropout_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("bert_no_dropout"), initializer_range=0.3, hidden_dropout_prob=0.0,
                          attention_probs_dropout_prob=0.0, classifier_dropout=0.0)  # fmt: skip


@pytest.fixture(scope="session")
def data(no_dropout_bert: Path, sst2_dir: Path) -> Any:
    cfg = TaskConfig(type="classification", data_dir=str(sst2_dir))
    return load_task_data(str(no_dropout_bert), cfg, 400, 120, smoke=False, selection=False)
