"""A built-in config's SST-2 folder is optional: absent, the hub's glue/sst2 stands in, said as a note;
a folder the user names (--data-dir, or a config without the fallback) must exist."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from gradience.bench import BenchInputError
from gradience.bench.config import TaskConfig, apply_overrides, load_config
from gradience.bench.tasks import data


@pytest.fixture
def hub_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []

    def fake_hub(name: str, config: str | None, splits: dict[str, str]) -> dict[str, Any]:
        calls.append((name, config))
        return {"train": ["from the hub"]}

    monkeypatch.setattr(data, "_read_hub", fake_hub)
    return calls


def test_missing_builtin_folder_falls_back_to_the_hub(tmp_path, hub_calls, caplog) -> None:
    task = TaskConfig(data_dir=str(tmp_path / "absent"), data_dir_fallback="hub")
    with caplog.at_level(logging.WARNING, logger="gradience"):
        raw, source = data.read_source(task)
    assert raw == {"train": ["from the hub"]} and source == "hub:glue/sst2"
    assert hub_calls == [("glue", "sst2")]
    assert any("absent not found; loading glue/sst2 from the hub" in r.getMessage() for r in caplog.records)


def test_present_folder_is_read_even_with_the_fallback(sst2_dir, hub_calls) -> None:
    raw, source = data.read_source(TaskConfig(data_dir=str(sst2_dir), data_dir_fallback="hub"))
    assert not hub_calls and source == str(sst2_dir.resolve()) and len(raw["train"]) > 0


def test_missing_folder_without_the_fallback_is_an_error(tmp_path, hub_calls) -> None:
    with pytest.raises(BenchInputError, match="does not exist"):
        data.read_source(TaskConfig(data_dir=str(tmp_path / "absent")))
    assert not hub_calls


def test_builtin_configs_fall_back_and_data_dir_flag_does_not(tmp_path) -> None:
    for name in ("minilm_sst2", "minilm_sst2_smoke", "minilm_sst2_certify"):
        assert load_config(name).task.data_dir_fallback == "hub"
    eff = apply_overrides(load_config("minilm_sst2"), data_dir=str(tmp_path / "mine"))
    assert eff.task.data_dir_fallback == "error"
    with pytest.raises(BenchInputError, match="does not exist"):
        data.read_source(eff.task)
