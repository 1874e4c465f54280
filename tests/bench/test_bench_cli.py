"""Bad bench input through the CLI: one line on stderr, exit 2, nothing trained."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gradience.cli import app


def _run(tmp_path: Path, data: dict | None, *extra: str) -> tuple[int, str]:
    args = ["bench", "--output", str(tmp_path / "out"), *extra]
    if data is not None:
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
        args += ["--config", str(tmp_path / "c.yaml")]
    res = CliRunner().invoke(app, args)
    return res.exit_code, res.stderr


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda c: c["train"].update(lrr=1), "unknown key 'train.lrr'"),
        (lambda c: c["lora"].update(probe_r=3), "lora.probe_r=3 is not in compression.allowed_ranks"),
        (lambda c: c["train"].update(max_steps="lots"), "'train.max_steps'"),
        (
            lambda c: c["task"].update(data_dir="/no/such/glue"),
            "task.data_dir '/no/such/glue' does not exist",
        ),
        (lambda c: c["task"].update(data_dir=None), "--data-dir DIR"),
        (lambda c: c["model"].update(name="/no/such/model"), "cannot load a tokenizer for model"),
        (lambda c: c["compression"].update(policy="no_such_policy"), "no_such_policy"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    tmp_path: Path, tiny_model_dir: Path, sst2_dir: Path, make_config: Callable, edit: Callable, needle: str
) -> None:
    cfg = make_config(tiny_model_dir, sst2_dir)
    edit(cfg)
    code, err = _run(tmp_path, cfg)
    assert code == 2, err
    assert needle in err and err.count("\n") == 1 and err.startswith("error: ")
    assert not (tmp_path / "out" / "seed_7").exists()


def test_missing_config_and_unknown_builtin(tmp_path: Path) -> None:
    code, err = _run(tmp_path, None)
    assert code == 2 and "--config is required" in err and "minilm_sst2" in err
    code, err = _run(tmp_path, None, "--config", "no_such_builtin")
    assert code == 2 and "neither a file nor a built-in name" in err


def test_flag_overrides_are_validated(
    tmp_path: Path, tiny_model_dir: Path, sst2_dir: Path, make_config: Callable
) -> None:
    cfg = make_config(tiny_model_dir, sst2_dir)
    code, err = _run(tmp_path, cfg, "--device", "tpu")
    assert code == 2 and "'runtime.device'" in err
    code, err = _run(tmp_path, cfg, "--seeds", "1,x")
    assert code == 2 and "--seeds" in err
    code, err = _run(tmp_path, cfg, "--data-dir", str(tmp_path / "missing"))
    assert code == 2 and "does not exist" in err


def test_help_lists_every_flag_and_the_plan_subcommand() -> None:
    res = CliRunner().invoke(app, ["bench", "--help"])
    assert res.exit_code == 0
    flags = ["--config", "--output", "--smoke", "--ci", "--device", "--seeds", "--data-dir", "--resume", "--json",
             "--verbose", "--executor", "--ray-address", "--workers", "plan"]  # fmt: skip
    assert all(f in res.output for f in flags), res.output
