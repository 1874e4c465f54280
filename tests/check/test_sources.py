"""Config sources: aliases, nesting, precedence, discovery, pickle refusal, safe YAML, profiles."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from gradience.check import CheckInputError, config_from_snapshot, infer_task_profile, merge_sources
from gradience.telemetry import ConfigSnapshot


def _write(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_aliases_in_a_flat_file(tmp_path: Path) -> None:
    cfg = merge_sources(
        _write(
            tmp_path / "c.json",
            {"learning_rate": 1e-4, "lora_alpha": 16, "lora_r": 8, "targets": "q_proj, v_proj", "wd": 0.01},
        )
    )
    assert (cfg.lr, cfg.alpha, cfg.r, cfg.weight_decay) == (1e-4, 16.0, 8, 0.01)
    assert cfg.target_modules == ["q_proj", "v_proj"] and cfg.update_scale == 2.0


def test_nested_yaml_bench_style(tmp_path: Path) -> None:
    path = tmp_path / "bench.yaml"
    path.write_text(
        "model:\n  name: distilbert-base-uncased\n"
        "task:\n  dataset: glue\n  subset: sst2\n"
        "train:\n  lr: 5.0e-5\n  weight_decay: 0.0\n"
        "lora:\n  probe_r: 32\n  alpha: 32\n  target_modules: [q_lin, v_lin]\n"
    )
    cfg = merge_sources(path)
    assert cfg.model_name == "distilbert-base-uncased" and cfg.dataset_label == "glue/sst2"
    assert (cfg.lr, cfg.r, cfg.alpha, cfg.target_modules) == (5e-5, 32, 32.0, ["q_lin", "v_lin"])
    assert infer_task_profile(cfg.dataset_label) == "easy_classification"


def test_config_snapshot_shape(tmp_path: Path) -> None:
    snap = ConfigSnapshot(model_name="m", dataset_name="gsm8k")
    snap.optimizer.lr, snap.optimizer.weight_decay = 2e-4, 0.1
    snap.lora.r, snap.lora.alpha, snap.lora.target_modules = 16, 32, ["q_proj"]
    from_file = merge_sources(_write(tmp_path / "s.json", snap.model_dump(mode="json")))
    from_run = config_from_snapshot(snap.model_dump(mode="json"))
    for cfg in (from_file, from_run):
        assert (cfg.lr, cfg.weight_decay, cfg.r, cfg.alpha, cfg.dataset_name) == (
            2e-4,
            0.1,
            16,
            32.0,
            "gsm8k",
        )


def test_conflicting_aliases_in_one_file_are_an_error(tmp_path: Path) -> None:
    with pytest.raises(CheckInputError, match="conflicting values for lr"):
        merge_sources(_write(tmp_path / "c.json", {"lr": 1e-4, "learning_rate": 2e-4}))
    same = merge_sources(_write(tmp_path / "d.json", {"lr": 1e-4, "learning_rate": 1e-4}))
    assert same.lr == 1e-4


def test_precedence_config_peft_training_cli(tmp_path: Path) -> None:
    config = _write(tmp_path / "c.json", {"lr": 1e-4, "r": 4, "dataset": "sst2"})
    peft = _write(tmp_path / "adapter_config.json", {"r": 8, "lora_alpha": 16, "target_modules": ["query"]})
    training = _write(tmp_path / "training_args.json", {"learning_rate": 2e-4, "weight_decay": 0.0})
    cfg = merge_sources(config, peft, training, overrides={"lr": 3e-4, "r": None})
    assert (cfg.lr, cfg.r, cfg.alpha, cfg.dataset_name) == (3e-4, 8, 16.0, "sst2")
    assert cfg.sources == {
        "lr": "command line",
        "r": str(peft),
        "dataset_name": str(config),
        "alpha": str(peft),
        "target_modules": str(peft),
        "weight_decay": str(training),
    }


def test_peft_dir_discovery(tmp_path: Path) -> None:
    top = tmp_path / "a"
    _write(top / "adapter_config.json", {"r": 4})
    assert merge_sources(peft_dir=top).r == 4
    nested = tmp_path / "b"
    _write(nested / "checkpoint-10" / "adapter_config.json", {"r": 16})
    assert merge_sources(peft_dir=nested).r == 16
    _write(nested / "checkpoint-20" / "adapter_config.json", {"r": 16})
    with pytest.raises(CheckInputError, match="ambiguous: 2 adapter_config.json files"):
        merge_sources(peft_dir=nested)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckInputError, match="no adapter_config.json"):
        merge_sources(peft_dir=tmp_path / "empty")
    with pytest.raises(CheckInputError, match="not a directory"):
        merge_sources(peft_dir=tmp_path / "missing")


def test_training_dir_discovery_and_ambiguity(tmp_path: Path) -> None:
    _write(tmp_path / "t" / "training_args.json", {"learning_rate": 1e-4})
    assert merge_sources(training_dir=tmp_path / "t").lr == 1e-4
    (tmp_path / "t" / "training_args.yaml").write_text("learning_rate: 2.0e-4\n")
    with pytest.raises(CheckInputError, match="ambiguous"):
        merge_sources(training_dir=tmp_path / "t")


class _Evil:
    """Unpickling this creates a marker file: proof that nothing was unpickled if it is absent."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_training_args_bin_is_refused_and_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    run.mkdir()
    (run / "training_args.bin").write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(CheckInputError, match="training_args.bin is a pickle"):
        merge_sources(training_dir=run)
    with pytest.raises(CheckInputError, match="is a pickle"):
        merge_sources(training=run / "training_args.bin")
    disguised = tmp_path / "args.json"
    disguised.write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(CheckInputError, match="is a pickle"):
        merge_sources(training=disguised)
    assert not marker.exists()


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "c.yaml"
    path.write_text(f"lr: !!python/object/apply:builtins.open ['{marker}', 'w']\n")
    with pytest.raises(CheckInputError, match="invalid YAML"):
        merge_sources(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ('{"lr": ', "invalid JSON"),
        ("[1, 2]", "must hold a mapping"),
        ("", "is empty"),
        ('{"lr": "fast"}', "lr must be a number"),
        ('{"r": 8.5}', "r must be an integer"),
        ('{"r": 0}', "r must be a positive integer"),
        ('{"task_profile": "vibes"}', "unknown task profile"),
    ],
)
def test_bad_files(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(content)
    with pytest.raises(CheckInputError, match=fragment):
        merge_sources(path)


@pytest.mark.parametrize(
    ("name", "profile"),
    [
        ("gsm8k", "hard_reasoning"),
        ("openai/gsm8k", "hard_reasoning"),
        ("hendrycks_math", "hard_reasoning"),
        ("ai2_arc", "hard_reasoning"),
        ("glue/sst2", "easy_classification"),
        ("SST-2", "easy_classification"),
        ("glue/mnli_matched", "easy_classification"),
        ("qnli", "easy_classification"),
        ("ag_news", "easy_classification"),
        ("cnn_dailymail", "generation"),
        ("my_private_corpus", None),
        ("", None),
        ("arcade_scores", None),
    ],
)
def test_profile_inference(name: str, profile: str | None) -> None:
    assert infer_task_profile(name) == profile
