"""`gradience bench plan` through the CLI: JSON/text output, exit codes, bad input → one line + exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gradience.cli import app

runner = CliRunner()


def bench_plan(*args: str):
    return runner.invoke(app, ["bench", "plan", *args])


def assert_bad_input(result, fragment: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_json_plan() -> None:
    result = bench_plan(
        "--margin", "0.025", "--power", "0.8", "--baseline-acc", "0.83", "--item-share", "1", "--json"
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["recommended_seeds"] == 3 and data["reachable"] is True
    assert data["evaluated"]["power"] >= 0.8 and data["policy"] == "safe_uniform"


def test_text_plan_and_unreachable_budget_exits_1() -> None:
    ok = bench_plan("--baseline-acc", "0.83", "--item-share", "1")
    assert ok.exit_code == 0 and "Recommended: 3 seeds" in ok.stdout
    short = bench_plan("--baseline-acc", "0.83", "--eval-items", "500", "--seeds", "3", "--json")
    assert short.exit_code == 1
    assert json.loads(short.stdout)["reachable"] is False


BENCH = "model: {name: m}\nlora: {target_modules: [query]}\n"


def test_config_flag(tmp_path: Path) -> None:
    cfg = tmp_path / "bench.yaml"
    cfg.write_text(
        BENCH + "train: {eval_samples: 2500}\ncompression: {seeds: [1, 2, 3], acc_tolerance: 0.03}\n"
    )
    result = bench_plan("--baseline-acc", "0.83", "--config", str(cfg), "--item-share", "1", "--json")
    data = json.loads(result.stdout)
    assert result.exit_code == 0 and (data["given_seeds"], data["given_eval_items"]) == (3, 2500)
    assert data["margin"] == 0.03
    flags = json.loads(bench_plan("--baseline-acc", "0.83", "--config", str(cfg), "--seeds", "5",
                                  "--eval-items", "900", "--margin", "0.02", "--json").stdout)  # fmt: skip
    assert (flags["given_seeds"], flags["given_eval_items"], flags["margin"]) == (5, 900, 0.02)  # flags win


def test_builtin_certification_config_judges_its_2000_items() -> None:
    data = json.loads(
        bench_plan("--baseline-acc", "0.83", "--config", "minilm_sst2_certify", "--json").stdout
    )
    assert (data["given_seeds"], data["given_eval_items"]) == (3, 2000)


def test_config_on_the_validation_split_leaves_items_to_the_data(tmp_path: Path) -> None:
    cfg = tmp_path / "bench.yaml"
    cfg.write_text(BENCH + "task: {eval_split: validation}\n")
    data = json.loads(bench_plan("--baseline-acc", "0.83", "--config", str(cfg), "--json").stdout)
    assert data["given_eval_items"] is None


@pytest.mark.parametrize(
    "policy_text, fragment",
    [
        ("scope: s\nmargin: 0.025\nmin_pass_fraction: 2/3\nextra_rule: 1\n", "unknown key 'extra_rule'"),
        ("scope: s\nmargin: 0.025\nmin_pass_fraction: 0\n", "min_pass_fraction"),
        ("scope: s\nmargin: [oops\n", "invalid YAML"),
    ],
)
def test_bad_policy_file_is_one_line_exit_2(tmp_path: Path, policy_text: str, fragment: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(policy_text)
    assert_bad_input(bench_plan("--baseline-acc", "0.83", "--policy", str(path)), fragment)


def test_bad_policy_from_config_and_bad_arguments(tmp_path: Path) -> None:
    cfg = tmp_path / "bench.yaml"
    cfg.write_text(BENCH + "compression: {policy: missing_policy.yaml}\n")
    assert_bad_input(bench_plan("--baseline-acc", "0.83", "--config", str(cfg)), "policy file not found")
    cfg.write_text(BENCH + "task: {eval_samples: 2000}\n")  # the shape the planner once read: rejected
    assert_bad_input(bench_plan("--baseline-acc", "0.83", "--config", str(cfg)), "task.eval_samples")
    assert_bad_input(bench_plan("--baseline-acc", "0.83", "--discordance", "0.9"), "discordance")
    assert_bad_input(bench_plan("--baseline-acc", "0.83", "--policy", "nope"), "unknown policy 'nope'")


def test_module_entry_point_bad_policy(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("margin: 0.025\nmin_pass_fraction: 2/3\n")
    proc = subprocess.run(
        [sys.executable, "-m", "gradience", "bench", "plan", "--baseline-acc", "0.83", "--policy", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"error: {path}: missing key 'scope'"]


def test_item_share_flag() -> None:
    result = bench_plan("--baseline-acc", "0.83", "--item-share", "0", "--json")
    data = json.loads(result.stdout)
    assert result.exit_code == 0 and data["item_share"] == 0 and data["recommended_seeds"] == 4
    assert_bad_input(bench_plan("--baseline-acc", "0.83", "--item-share", "1.5"), "item_share")
