"""Upstream's shipped bench configs are translated key by key: mapped, noted, or refused in one line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from gradience.bench import BenchInputError
from gradience.bench.config import load_config
from gradience.compat.bench_config import MAPPED, NO_EFFECT, REFUSED, _flatten, is_upstream_config

FIXTURES = Path(__file__).parent / "upstream_0_11"
CONFIGS = sorted(FIXTURES.glob("*.yaml"))
CAUSAL = {
    p.name for p in CONFIGS if (yaml.safe_load(p.read_text()).get("model") or {}).get("type") == "causal_lm"
}


def test_the_fixture_set_is_upstreams_whole_shipped_set() -> None:
    assert len(CONFIGS) == 45 and len(CAUSAL) == 6
    assert all(is_upstream_config(yaml.safe_load(p.read_text())) for p in CONFIGS)


@pytest.mark.parametrize("path", [p for p in CONFIGS if p.name not in CAUSAL], ids=lambda p: p.stem)
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
