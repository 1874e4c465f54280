"""`gradience check` through the CLI: text/JSON output, exit 0/1, bad input → one line + exit 2."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gradience.cli import app

runner = CliRunner()


def check(*args: str):
    return runner.invoke(app, ["check", *args])


def test_json_output_and_exit_zero(tmp_path: Path) -> None:
    res = check("--dataset", "glue/sst2", "--lr", "1e-4", "--r", "8", "--targets", "query,value", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["task_profile"] == "easy_classification" and out["profile_source"] == "inferred"
    assert out["config"]["target_modules"] == ["query", "value"]
    assert [r["action"] for r in out["recommendations"]] == ["config_ok", "set_task_profile"]
    assert set(out["recommendations"][0]) >= {"severity", "action", "message", "why", "confidence"}


def test_repeated_targets_and_text_output(tmp_path: Path) -> None:
    peft = tmp_path / "adapter_config.json"
    peft.write_text(json.dumps({"r": 64, "lora_alpha": 128, "target_modules": ["q_proj"]}))
    res = check(
        "--peft",
        str(peft),
        "--task-profile",
        "hard_reasoning",
        "--lr",
        "3e-4",
        "--targets",
        "q_proj",
        "--targets",
        "up_proj",
    )
    assert res.exit_code == 0, res.output
    for action in (
        "lower_lr",
        "consider_reduce_rank",
        "prefer_attention_only",
        "consider_lower_alpha_over_r",
    ):
        assert action in res.stdout


def test_error_finding_exits_one(tmp_path: Path) -> None:
    res = check("--task-profile", "easy_classification", "--weight-decay", "-0.1", "--json")
    assert res.exit_code == 1
    assert json.loads(res.stdout)["recommendations"][0]["action"] == "fix_weight_decay"


def _pickle_dir(tmp_path: Path) -> Path:
    d = tmp_path / "run"
    d.mkdir()
    (d / "training_args.bin").write_bytes(pickle.dumps({"learning_rate": 1e-4}))
    return d


@pytest.mark.parametrize(
    ("make_args", "fragment"),
    [
        (lambda p: [str(p / "missing.yaml")], "config file not found"),
        (lambda p: [str(_text(p / "bad.json", '{"lr": '))], "invalid JSON"),
        (lambda p: ["--training-dir", str(_pickle_dir(p))], "is a pickle"),
        (lambda p: ["--training", str(_pickle_dir(p) / "training_args.bin")], "is a pickle"),
        (lambda p: ["--task-profile", "vibes"], "unknown task profile"),
        (lambda p: ["--peft-dir", str(p / "nope")], "not a directory"),
        (lambda p: ["--peft", str(_text(p / "a.json", "{}")), "--peft-dir", str(p)], "not both"),
    ],
)
def test_bad_input_is_one_line_and_exit_two(tmp_path: Path, make_args, fragment: str) -> None:
    res = check(*make_args(tmp_path))
    assert res.exit_code == 2, (res.exit_code, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def _text(path: Path, content: str) -> Path:
    path.write_text(content)
    return path
