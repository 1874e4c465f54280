"""Upstream's command forms: `check` flags and space-separated --targets, `gradience-bench`,
and `audit --append` creating a missing run file."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gradience.cli import app
from gradience.compat.bench_cli import translate_bench_argv
from gradience.compat.cli_args import translate_argv
from gradience.telemetry import read_telemetry
from tiny_models import make_adapter


def test_check_takes_optimizer_notes_and_space_separated_targets() -> None:
    args = ["check", "--r", "8", "--alpha", "16", "--lr", "1e-4", "--targets", "q_proj", "v_proj",
            "--optimizer", "adamw", "--notes", "from upstream", "--json"]  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "gradience", *args], capture_output=True, text=True, check=False
    )
    assert out.returncode in (0, 1), out.stderr
    cfg = json.loads(out.stdout)["config"]
    assert cfg["target_modules"] == ["q_proj", "v_proj"]
    assert cfg["optimizer"] == "adamw" and cfg["notes"] == "from upstream"


def test_targets_translation_leaves_other_commands_and_forms_alone() -> None:
    assert translate_argv(["check", "--targets", "q", "k", "--lr", "1"]) == [
        "check", "--targets", "q", "--targets", "k", "--lr", "1"]  # fmt: skip
    assert translate_argv(["check", "--targets", "q,k"]) == ["check", "--targets", "q,k"]
    assert translate_argv(["audit", "--x", "a", "b"]) == ["audit", "--x", "a", "b"]


def test_gradience_bench_flags(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="gradience.compat"):
        got = translate_bench_argv(["--config", "c.yaml", "--output", "o", "-v", "--keep-artifacts",
                                    "--max-candidates", "3", "--full-mode", "--smoke"])  # fmt: skip
    assert got == ["--config", "c.yaml", "--output", "o", "--verbose", "--smoke"]
    noted = " ".join(r.getMessage() for r in caplog.records)
    assert all(f in noted for f in ("--keep-artifacts", "--max-candidates", "--full-mode"))


def test_gradience_bench_console_script_is_the_bench() -> None:
    code = "import sys; sys.argv = ['gradience-bench', '--help']; from gradience.cli import bench_main; bench_main()"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and "--config" in out.stdout and "gradience-bench" in out.stdout


def test_audit_append_creates_a_missing_run_file(tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    make_adapter(adapter, arch="llama")
    run = tmp_path / "new_run.jsonl"
    res = CliRunner().invoke(app, ["audit", "--peft-dir", str(adapter), "--append", str(run)])
    assert res.exit_code == 0, res.output
    start, metrics = read_telemetry(run, strict=True).events
    assert start.event == "run_start" and metrics.payload["kind"] == "lora_audit"
    assert "created" in res.stderr
    missing_folder = CliRunner().invoke(
        app, ["audit", "--peft-dir", str(adapter), "--append", str(tmp_path / "no" / "r.jsonl")]
    )
    assert missing_folder.exit_code == 2 and len(missing_folder.output.strip().splitlines()) == 1
