"""`gradience check` flags --model, --alpha, --task/--dataset and --verbose, each shown to have an
effect through the CLI (the value reaches the merged config and changes what the rules or the
text output say)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from gradience.cli import app

runner = CliRunner()


def check(*args: str):
    return runner.invoke(app, ["check", *args])


def check_json(*args: str) -> dict:
    res = check(*args, "--json")
    assert res.exit_code in (0, 1), (res.exit_code, res.stdout, res.stderr)
    return json.loads(res.stdout)


def actions(out: dict) -> list[str]:
    return [r["action"] for r in out["recommendations"]]


def test_model_flag_sets_and_overrides_the_model_name(tmp_path: Path) -> None:
    assert "model_name" not in check_json("--task-profile", "unknown")["config"]
    out = check_json("--model", "my-org/tiny-bert", "--task-profile", "unknown")
    assert out["config"]["model_name"] == "my-org/tiny-bert"
    assert out["sources"]["model_name"] == "command line"
    peft = tmp_path / "adapter_config.json"
    peft.write_text(json.dumps({"base_model_name_or_path": "from-file", "r": 8}))
    assert check_json("--peft", str(peft))["config"]["model_name"] == "from-file"
    out = check_json("--peft", str(peft), "--model", "from-flag")
    assert out["config"]["model_name"] == "from-flag" and out["sources"]["model_name"] == "command line"
    res = check("--peft", str(peft), "--model", "from-flag")
    assert res.exit_code == 0 and "from-flag" in res.stdout and "from-file" not in res.stdout


HR = ("--task-profile", "hard_reasoning", "--lr", "3e-4", "--r", "16", "--targets", "q_proj,v_proj")


def test_alpha_flag_drives_the_alpha_over_r_rule(tmp_path: Path) -> None:
    high = check_json(*HR, "--alpha", "32")  # alpha/r = 2 with lr > 1e-4: the rule fires
    assert high["config"]["alpha"] == 32.0 and high["sources"]["alpha"] == "command line"
    assert "consider_lower_alpha_over_r" in actions(high)
    exact = check_json(*HR, "--alpha", "16")  # alpha/r = 1 is the boundary: still fires
    assert "consider_lower_alpha_over_r" in actions(exact)
    low = check_json(*HR, "--alpha", "8")  # alpha/r = 0.5: silent
    assert "consider_lower_alpha_over_r" not in actions(low)
    assert "consider_lower_alpha_over_r" not in actions(check_json(*HR))  # no alpha: cannot judge
    # --alpha wins over the PEFT file's lora_alpha
    peft = tmp_path / "adapter_config.json"
    peft.write_text(json.dumps({"lora_alpha": 64}))
    assert "consider_lower_alpha_over_r" in actions(check_json(*HR, "--peft", str(peft)))
    over = check_json(*HR, "--peft", str(peft), "--alpha", "4")
    assert over["config"]["alpha"] == 4.0 and "consider_lower_alpha_over_r" not in actions(over)
    res = check(*HR, "--alpha", "32")
    assert re.search(r"^\s*alpha/r\s+2\s*$", res.stdout, re.MULTILINE), res.stdout


def test_task_flag_infers_the_profile_and_announces_it() -> None:
    base = ("--lr", "3e-4", "--r", "8", "--targets", "q_proj")
    none = check_json(*base)
    assert none["task_profile"] == "unknown" and none["profile_source"] == "default"
    assert "calibration_probe" in actions(none)
    reasoning = check_json(*base, "--task", "gsm8k")
    assert reasoning["task_profile"] == "hard_reasoning" and reasoning["profile_source"] == "inferred"
    assert reasoning["config"]["dataset_name"] == "gsm8k"
    assert {"set_task_profile", "lower_lr"} <= set(actions(reasoning))
    assert "calibration_probe" not in actions(reasoning)
    classify = check_json(*base, "--dataset", "glue/sst2")  # the alias of --task
    assert classify["task_profile"] == "easy_classification"
    assert "lower_lr" not in actions(classify)  # 3e-4 is fine for classification (limit 5e-4)
    # an explicit profile wins over the one the task name implies, and nothing is announced
    explicit = check_json(*base, "--task", "gsm8k", "--task-profile", "easy_classification")
    assert explicit["task_profile"] == "easy_classification" and explicit["profile_source"] == "explicit"
    assert "set_task_profile" not in actions(explicit)


def test_verbose_adds_reasons_suggestions_and_sources(tmp_path: Path) -> None:
    args = ("--task", "gsm8k", "--lr", "3e-4", "--r", "8", "--targets", "q_proj")
    plain, verbose = check(*args), check(*args, "--verbose")
    assert plain.exit_code == verbose.exit_code == 0
    why = "Above 1e-4, LoRA on reasoning data tends to memorise"  # the lower_lr rule's reason
    assert why not in plain.stdout and why in verbose.stdout
    assert "suggested:" not in plain.stdout and "suggested:" in verbose.stdout
    assert "(command line)" not in plain.stdout and "(command line)" in verbose.stdout
    # on bad input --verbose also prints the traceback; without it, one line
    bad = tmp_path / "bad.json"
    bad.write_text('{"lr": ')
    quiet, loud = check(str(bad)), check(str(bad), "--verbose")
    assert quiet.exit_code == loud.exit_code == 2
    assert "Traceback" not in quiet.stderr and len(quiet.stderr.strip().splitlines()) == 1
    assert "Traceback" in loud.stderr and "invalid JSON" in loud.stderr


def test_rslora_scale_is_alpha_over_sqrt_r(tmp_path: Path) -> None:
    """The check uses PEFT's scale: with use_rslora, α=8 at r=16 is 8/√16 = 2 (fires), not 8/16 = 0.5."""
    peft = tmp_path / "adapter_config.json"
    peft.write_text(json.dumps({"lora_alpha": 8, "use_rslora": True}))
    out = check_json(*HR, "--peft", str(peft))
    assert "consider_lower_alpha_over_r" in actions(out)
    peft.write_text(json.dumps({"lora_alpha": 8, "use_rslora": False}))
    assert "consider_lower_alpha_over_r" not in actions(check_json(*HR, "--peft", str(peft)))
    peft.write_text(json.dumps({"lora_alpha": 8, "use_rslora": True}))
    res = check(*HR, "--peft", str(peft))
    assert re.search(r"^\s*alpha/sqrt\(r\)\s+2\s*$", res.stdout, re.MULTILINE), res.stdout
