"""Executors: a worker pool and Ray give the same runs as in-process; killed workers are retried, then reported."""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gradience.bench.run_bench import REPORT_FILES, run_bench


def _config(tmp_path: Path, make_config: Callable, tiny_model_dir: Path, sst2_dir: Path) -> Path:
    cfg = make_config(tiny_model_dir, sst2_dir, runtime={"cpus_per_job": 1})  # same kernels everywhere
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _preds(out: Path) -> dict[str, Any]:
    """Every run's per-example predictions on every split, by run folder."""
    found = {}
    for ev in sorted(out.glob("seed_*/*/eval.json")):
        splits = json.loads(ev.read_text())["splits"]
        found[f"{ev.parent.parent.name}/{ev.parent.name}"] = {
            k: (v["rows"], v["preds"]) for k, v in splits.items()
        }
    return found


def _shape(obj: Any) -> Any:
    """The structure of a JSON value: keys and types, not values."""
    if isinstance(obj, dict):
        return {k: _shape(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_shape(v) for v in obj[:1]]
    return type(obj).__name__ if obj is not None else None


@pytest.fixture(scope="module")
def inline(tmp_path_factory: pytest.TempPathFactory, make_config: Callable, tiny_model_dir: Path,
           sst2_dir: Path) -> dict[str, Any]:  # fmt: skip
    root = tmp_path_factory.mktemp("inline")
    cfg = _config(root, make_config, tiny_model_dir, sst2_dir)
    outcome = run_bench(str(cfg), root / "out", log=lambda m: None)
    assert outcome.exit_code == 0
    return {"cfg": cfg, "out": root / "out", "report": outcome.report}


def _same_runs(a: dict[str, Any], b_out: Path, b_report: dict[str, Any]) -> None:
    for name in REPORT_FILES:
        assert (b_out / name).is_file(), name
    assert _preds(b_out) == _preds(a["out"]) and len(_preds(b_out)) >= 4
    assert _shape(b_report) == _shape(a["report"])
    for name, v in a["report"]["compressed"].items():
        w = b_report["compressed"][name]
        assert (w["status"], w["accuracy"], w["params"]) == (v["status"], v["accuracy"], v["params"]), name


def test_worker_pool_gives_the_same_runs_as_in_process(inline: dict[str, Any], tmp_path: Path) -> None:
    logs: list[str] = []
    outcome = run_bench(str(inline["cfg"]), tmp_path / "out", workers=2, log=logs.append)
    assert outcome.exit_code == 0
    _same_runs(inline, tmp_path / "out", outcome.report)
    pids = {int(m.group(1)) for line in logs if (m := re.search(r"worker pid (\d+)", line))}
    assert len(pids) == 2 and os.getpid() not in pids  # two worker processes did the jobs


def test_killed_worker_is_retried_then_reported_failed(inline: dict[str, Any], tmp_path: Path) -> None:
    """SIGKILL the worker of the first variant job on both attempts and of the second on its first."""
    logs: list[str] = []
    kills: dict[str, int] = {}
    budget: dict[str, int] = {}

    def log(msg: str) -> None:
        logs.append(msg)
        m = re.match(r"(seed_\d+/(?!probe)\S+): started \(attempt (\d), worker pid (\d+)\)", msg)
        if m is None:
            return
        key = m.group(1)
        if key not in budget and len(budget) < 2:
            budget[key] = 2 if not budget else 1
        if kills.get(key, 0) < budget.get(key, 0):
            kills[key] = kills.get(key, 0) + 1
            os.kill(int(m.group(3)), signal.SIGKILL)  # a real kill, mid-job: no cleanup runs in the worker

    outcome = run_bench(str(inline["cfg"]), tmp_path / "out", workers=2, log=log)
    assert outcome.exit_code == 0  # the bench finishes and reports; the failure is in the report
    dead, retried = list(budget)
    assert kills == {dead: 2, retried: 1}
    assert any(line.startswith(f"{dead}: attempt 1 failed (worker process died") for line in logs)
    rep = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert list(rep["summary"]["failed_runs"]) == [dead]
    assert "worker process died" in rep["summary"]["failed_runs"][dead]
    by_run = {s["run"]: (name, s) for name, v in rep["compressed"].items() for s in v["per_seed"]}
    name, seed_run = by_run[dead.split("/")[1]]
    assert seed_run["status"] == "failed" and rep["compressed"][name]["status"] == "failed"
    assert rep["compressed"][name]["verdict"]["point"] == "FAILED_TO_RUN"
    assert not (tmp_path / "out" / dead).exists()  # nothing half-written where the dead job ran
    assert "FAILED" in (tmp_path / "out" / "bench.md").read_text()
    # every other job's result is intact and equal to the undisturbed run's, the retried one included
    ok = _preds(tmp_path / "out")
    assert retried in ok and dead not in ok
    assert ok == {k: v for k, v in _preds(inline["out"]).items() if k != dead}


def test_ray_executor_gives_the_same_runs_as_in_process(inline: dict[str, Any], tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="ray is a dev dependency; pip install -e '.[dev]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        logs: list[str] = []
        outcome = run_bench(str(inline["cfg"]), tmp_path / "out", executor="ray", log=logs.append)
    finally:
        ray.shutdown()
    assert outcome.exit_code == 0
    assert any(line.startswith("ray: ") for line in logs)
    _same_runs(inline, tmp_path / "out", outcome.report)
    assert outcome.report["protocol"]["seeds"] == [7]


def _failing_job(inline: dict[str, Any]) -> str:
    """A variant job that will really run (not a skipped control): its worker is killed each time."""
    return next(s["run"] for v in inline["report"]["compressed"].values() for s in v["per_seed"]
                if v["status"] == "ok" and s["status"] == "ok")  # fmt: skip


def test_pool_and_ray_share_one_scheduler_retries_and_failure_keys(
    inline: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same job's worker SIGKILLed on every attempt: both executors retry it once, report it under
    the same key, and finish every other job identically."""
    ray = pytest.importorskip("ray", reason="ray is a dev dependency; pip install -e '.[dev]'")
    victim = _failing_job(inline)
    monkeypatch.setenv("GRADIENCE_FAULT_AT", f"bench:job:{victim}")  # inherited by workers of both kinds
    reports, logs = {}, {}
    for executor in ("local", "ray"):
        logs[executor] = []
        if executor == "ray":
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            out = run_bench(str(inline["cfg"]), tmp_path / executor, workers=2 if executor == "local" else None,
                            executor=executor, log=logs[executor].append)  # fmt: skip
        finally:
            if executor == "ray":
                ray.shutdown()
        assert out.exit_code == 0
        reports[executor] = out.report
    for executor, rep in reports.items():
        assert list(rep["summary"]["failed_runs"]) == [f"seed_7/{victim}"], executor
        retried = [line for line in logs[executor] if line.startswith(f"seed_7/{victim}: attempt 1 failed")]
        assert len(retried) == 1, (executor, logs[executor])
    ok = {k: v for k, v in _preds(inline["out"]).items() if not k.endswith(victim)}
    assert _preds(tmp_path / "local") == ok == _preds(tmp_path / "ray")


def _fused_reference(
    inline: dict[str, Any], tmp_path: Path, seeds: list[int] | None = None, **runtime: Any
) -> tuple[Path, Any, list[str]]:
    """The inline config with `runtime` overrides, written out, and its in-process bench: (config
    path, outcome, its "fused: training" log lines)."""
    cfg = yaml.safe_load(inline["cfg"].read_text())
    cfg["runtime"].update(runtime)
    if seeds is not None:
        cfg["compression"]["seeds"] = seeds
    path = tmp_path / "fused.yaml"
    path.write_text(yaml.safe_dump(cfg))
    logs: list[str] = []
    outcome = run_bench(str(path), tmp_path / "local", log=logs.append)
    assert outcome.exit_code == 0
    return path, outcome, [line for line in logs if line.startswith("fused: training")]


def test_ray_trains_fused_groups_as_tasks_with_the_same_runs_as_in_process(
    inline: dict[str, Any], tmp_path: Path
) -> None:
    """``runtime.fuse: auto``: the retrained variants go to Ray as one task asking for their summed
    CPUs, and every run's predictions equal the in-process fused bench's."""
    ray = pytest.importorskip("ray", reason="ray is a dev dependency; pip install -e '.[dev]'")
    path, local, fused = _fused_reference(inline, tmp_path, fuse="auto")
    assert len(fused) == 1, fused  # one seed: the probe alone, then its retrained variants together
    n_jobs = fused[0].count("seed_7/")
    assert n_jobs >= 2
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        logs: list[str] = []
        outcome = run_bench(str(path), tmp_path / "ray", executor="ray", log=logs.append)
    finally:
        ray.shutdown()
    assert outcome.exit_code == 0
    assert f"ray: fused group of {n_jobs} jobs, 2 CPU, 0 GPU" in logs, logs
    _same_runs({"out": tmp_path / "local", "report": local.report}, tmp_path / "ray", outcome.report)


def test_worker_pool_trains_fused_groups_in_its_workers_with_the_same_runs_as_in_process(
    inline: dict[str, Any], tmp_path: Path
) -> None:
    """``runtime.fuse: auto`` with ``workers: 2``: groups of at most two jobs, two groups at a time
    in the two worker processes, and every run's predictions equal the in-process fused bench's."""
    path, local, groups = _fused_reference(inline, tmp_path, seeds=[7, 8], fuse="auto", fuse_max_jobs=2)
    assert len(groups) >= 3, groups  # the two probes together, then the variants two by two
    logs: list[str] = []
    outcome = run_bench(str(path), tmp_path / "pool", workers=2, log=logs.append)
    assert outcome.exit_code == 0
    assert [line for line in logs if line.startswith("fused: training")] == groups
    started = [m for line in logs if (m := re.match(r"fused (\S+): started \(worker pid (\d+)\)", line))]
    assert len(started) == len(groups) and len({m.group(2) for m in started}) == 2, logs
    assert not any("retrying" in line for line in logs), logs
    _same_runs({"out": tmp_path / "local", "report": local.report}, tmp_path / "pool", outcome.report)
