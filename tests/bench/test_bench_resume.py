"""Kill test: a bench killed (SIGKILL) after its first finished run resumes without retraining it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from typer.testing import CliRunner

from gradience.cli import app
from gradience.telemetry import read_telemetry


def test_killed_bench_resumes_without_retraining(
    tmp_path: Path, tiny_model_dir: Path, sst2_dir: Path, make_config: Callable
) -> None:
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(make_config(tiny_model_dir, sst2_dir)))
    out = tmp_path / "out"
    probe_result = out / "seed_7" / "probe_r8" / "result.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gradience.bench.run_bench", "--config", str(cfg), "--output", str(out)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not probe_result.is_file():
            assert proc.poll() is None, "the bench exited before its first run finished"
            assert time.monotonic() < deadline, "the probe never finished"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)  # a real kill: no cleanup code runs
    finally:
        proc.wait(timeout=60)
    assert not (out / "bench.json").exists(), "the bench finished before the kill; the test proves nothing"
    before = probe_result.read_bytes(), probe_result.stat().st_mtime_ns

    res = CliRunner().invoke(app, ["bench", "--config", str(cfg), "--output", str(out), "--resume"])
    assert res.exit_code == 0, res.output
    assert "resume: seed_7/probe_r8 already finished" in res.output
    assert (probe_result.read_bytes(), probe_result.stat().st_mtime_ns) == before  # not retrained
    starts = [
        e for e in read_telemetry(out / "seed_7" / "probe_r8" / "run.jsonl").events if e.event == "run_start"
    ]
    assert len(starts) == 1
    internal = json.loads((out / "bench_internal.json").read_text())
    assert "seed_7/probe_r8" in internal["resumed_runs"]
    rep = json.loads((out / "bench.json").read_text())
    assert all(v["status"] == "ok" for v in rep["compressed"].values())
    for v in rep["compressed"].values():  # the run the kill interrupted was redone from scratch
        run_dir = out / "seed_7" / v["per_seed"][0]["run"]
        log = read_telemetry(run_dir / "run.jsonl")
        assert [e.event for e in log.events].count("run_start") == 1 and not log.issues
