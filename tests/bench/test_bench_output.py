"""The bench's --output: refused when it would touch the user's files, never left empty on failure,
and scratch folders gone on every exit path a process survives (swept after a kill)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from typer.testing import CliRunner

from gradience.cli import app


def _bench(cfg_path: Path, out: Path, *extra: str):
    return CliRunner().invoke(app, ["bench", "--config", str(cfg_path), "--output", str(out), *extra])


def _config(tmp_path: Path, make_config: Callable, tiny_model_dir: Path, sst2_dir: Path, **edit) -> Path:
    cfg = make_config(tiny_model_dir, sst2_dir)
    for section, values in edit.items():
        cfg[section].update(values)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_output_that_is_a_file_or_a_user_folder_is_refused_unchanged(
    tmp_path: Path, tiny_model_dir: Path, sst2_dir: Path, make_config: Callable
) -> None:
    cfg = _config(tmp_path, make_config, tiny_model_dir, sst2_dir)
    (tmp_path / "afile").write_text("keep")
    res = _bench(cfg, tmp_path / "afile")
    assert res.exit_code == 2 and "not a directory" in res.stderr and res.stderr.count("\n") == 1
    assert (tmp_path / "afile").read_text() == "keep"
    user = tmp_path / "user"
    user.mkdir()
    (user / "thesis.tex").write_text("mine")
    res = _bench(cfg, user)
    assert res.exit_code == 2 and "not written by Gradience" in res.stderr and res.stderr.count("\n") == 1
    assert [p.name for p in user.iterdir()] == ["thesis.tex"]


def test_failed_bench_leaves_no_empty_output_and_sweeps_dead_scratch(
    tmp_path: Path, tiny_model_dir: Path, sst2_dir: Path, make_config: Callable
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = Path(tempfile.gettempdir()) / f"gradience-job-{dead.pid}-test"
    stale.mkdir(exist_ok=True)
    (stale / "adapter_model.safetensors").write_bytes(b"x" * 1024)
    cfg = _config(tmp_path, make_config, tiny_model_dir, sst2_dir, model={"name": "/no/such/model"})
    res = _bench(cfg, tmp_path / "out")
    assert res.exit_code == 2 and "cannot load a tokenizer" in res.stderr
    assert not (tmp_path / "out").exists()
    assert not stale.exists() and f"removed scratch folder {stale}" in res.stderr


def test_sigterm_mid_probe_removes_the_job_scratch_folder(
    tmp_path: Path, tiny_model_dir: Path, sst2_dir: Path, make_config: Callable
) -> None:
    cfg = _config(tmp_path, make_config, tiny_model_dir, sst2_dir, train={"max_steps": 3000})
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gradience", "bench", "--config", str(cfg), "--output", str(out)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    pattern = f"gradience-job-{proc.pid}-*"
    try:
        deadline = time.monotonic() + 300
        while not list(Path(tempfile.gettempdir()).glob(pattern)):
            assert proc.poll() is None and time.monotonic() < deadline, "the probe job never started"
            time.sleep(0.05)
        time.sleep(1.0)  # well inside training
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not list(Path(tempfile.gettempdir()).glob(pattern))
    assert not out.exists()  # nothing had finished: no empty output folder either


def test_read_only_output_location_is_one_line_exit_2(
    tmp_path: Path, tiny_model_dir: Path, sst2_dir: Path, make_config: Callable, monkeypatch
) -> None:
    from fs_faults import read_only_folder

    cfg = _config(tmp_path, make_config, tiny_model_dir, sst2_dir)
    ro = tmp_path / "ro"
    ro.mkdir()
    read_only_folder(monkeypatch, ro)
    res = _bench(cfg, ro / "out")
    assert res.exit_code == 2 and res.stderr == f"error: Read-only file system: {ro / 'out'}\n"
    assert list(ro.iterdir()) == []


def test_disk_full_mid_bench_is_exit_2_and_resume_completes(
    tmp_path: Path, tiny_model_dir: Path, sst2_dir: Path, make_config: Callable, monkeypatch
) -> None:
    """The disk fills while the second run is stored: one line, exit 2; the first run survives and
    --resume (space freed) finishes the bench without retraining it."""
    import errno
    import json

    import gradience.bench.protocol as protocol

    cfg = _config(tmp_path, make_config, tiny_model_dir, sst2_dir)
    out = tmp_path / "out"
    real_store, calls = protocol.store_output, []

    def store_output(run_dir, job):
        calls.append(run_dir)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(run_dir / "adapter_model.safetensors"))
        real_store(run_dir, job)

    monkeypatch.setattr(protocol, "store_output", store_output)
    res = _bench(cfg, out)
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]  # beside the run log
    assert res.exit_code == 2 and len(errors) == 1 and "No space left on device" in errors[0]
    assert res.stderr.rstrip().endswith(errors[0]) and "Traceback" not in res.stderr
    first = calls[0] / "result.json"
    stamp = first.stat().st_mtime_ns
    monkeypatch.setattr(protocol, "store_output", real_store)
    res = _bench(cfg, out, "--resume")
    assert res.exit_code == 0, res.output
    assert first.stat().st_mtime_ns == stamp
    assert all(
        v["status"] == "ok" for v in json.loads((out / "bench.json").read_text())["compressed"].values()
    )
