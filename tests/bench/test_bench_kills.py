"""A bench SIGKILLed mid-training, between runs, or while writing its reports resumes to a complete,
consistent output; finished runs are never retrained. Kills are real (`GRADIENCE_FAULT_AT`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gradience.cli import app
from gradience.telemetry import read_telemetry


@pytest.mark.parametrize("point", ["bench:training", "bench:between_runs", "bench:reports"])
def test_sigkill_then_resume_completes(
    tmp_path: Path, tiny_model_dir: Path, sst2_dir: Path, make_config: Callable, point: str
) -> None:
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        yaml.safe_dump(
            make_config(
                tiny_model_dir,
                sst2_dir,
                compression={"variants_to_test": ["uniform_median", "truncate_median"]},
            )
        )
    )
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "GRADIENCE_FAULT_AT": point}
    proc = subprocess.run([sys.executable, "-m", "gradience", "bench", "--config", str(cfg), "--output", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == -9, proc.stderr[-2000:]
    finished = sorted(out.glob("seed_*/*/result.json"))
    stamps = {p: p.stat().st_mtime_ns for p in finished}
    if point == "bench:training":
        assert not finished  # killed inside the probe's training
    else:
        assert finished  # at least the probe was stored before the kill
    res = CliRunner().invoke(app, ["bench", "--config", str(cfg), "--output", str(out), "--resume"])
    assert res.exit_code == 0, res.output
    assert {p: p.stat().st_mtime_ns for p in finished} == stamps  # finished runs not redone
    report = json.loads((out / "bench.json").read_text())
    assert all(v["status"] == "ok" for v in report["compressed"].values())
    for name in ("bench.md", "verdicts.json", "bench_aggregate.json", "compression_configs.json"):
        assert (out / name).is_file()
    for run in out.glob("seed_*/*/run.jsonl"):
        log = read_telemetry(run)
        assert [e.event for e in log.events].count("run_start") >= 1 and not log.issues
