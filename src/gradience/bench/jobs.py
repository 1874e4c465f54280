"""A bench job as a value: inputs in, a folder's worth of bytes out.

Executors may run a job in this process, in a worker process or on another machine
(Ray), so a job never writes into the output layout itself: it runs ``run_job`` in a
scratch folder and returns every file it made as bytes (``JobOutput``); the driver
writes them (``store_output``), ``result.json`` last. A variant's only input besides
the config is its probe's output — the audit that sets its ranks and, for truncation,
the probe adapter — so the dependency is a plain argument, which Ray can pass as an
object reference.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradience.audit import AuditReport
from gradience.bench.config import BenchConfig
from gradience.bench.runs import RESULT_FILE, RunResult, RunSpec, run_job
from gradience.bench.variants import gate_status, variant_specs
from gradience.files import scratch_dir, write_json_atomic

SCRATCH_PREFIX = "gradience-job-"  # + owner pid: a later bench sweeps those of dead processes


@dataclass
class Failure:
    why: str


def describe(exc: BaseException) -> str:
    """One line for a failed job: the exception's type and the first line of its message."""
    msg = str(exc).strip()
    return f"{type(exc).__name__}: {msg.splitlines()[0]}" if msg else type(exc).__name__


@dataclass
class JobOutput:
    """A finished run: its result and every file of its folder (``result.json`` excluded)."""

    result: RunResult
    files: dict[str, bytes]

    def json(self, name: str) -> Any:
        return json.loads(self.files[name].decode("utf-8"))


def _collect(run_dir: Path) -> dict[str, bytes]:
    return {
        p.relative_to(run_dir).as_posix(): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != RESULT_FILE and not p.name.startswith(".")
    }


def execute_job(cfg: BenchConfig, spec: RunSpec, probe: JobOutput | None, smoke: bool) -> JobOutput:
    """Run one job in a scratch folder; a truncation gets its probe's adapter from ``probe``."""
    with scratch_dir(SCRATCH_PREFIX) as root:
        if spec.method == "truncate":
            if probe is None or spec.source is None:
                raise RuntimeError(f"{spec.name}: a truncation needs its probe's output")
            src = root / spec.source
            for rel, data in probe.files.items():
                if rel.startswith("adapter/"):
                    (src / rel).parent.mkdir(parents=True, exist_ok=True)
                    (src / rel).write_bytes(data)
        run_dir = root / spec.name
        result = run_job(cfg, spec, run_dir, smoke=smoke)
        return JobOutput(result=result, files=_collect(run_dir) if run_dir.is_dir() else {})


def execute_group(cfg: BenchConfig, specs: list[RunSpec], smoke: bool) -> list[JobOutput | Failure]:
    """Train jobs together (``runs.run_fused``) in one scratch folder; per job its output or why
    it failed (a plain value, so it crosses process boundaries)."""
    from gradience.bench.runs import run_fused

    with scratch_dir(SCRATCH_PREFIX) as root:
        dirs = [root / f"{s.seed}" / s.name for s in specs]
        results = run_fused(cfg, specs, dirs, smoke=smoke)
        return [
            Failure(describe(r)) if isinstance(r, BaseException) else JobOutput(result=r, files=_collect(d))
            for r, d in zip(results, dirs, strict=True)
        ]


def store_output(run_dir: Path, out: JobOutput) -> None:
    """Write a job's files into its folder (cleared first), ``result.json`` atomically, last."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    for rel, data in out.files.items():
        path = run_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    write_json_atomic(run_dir / RESULT_FILE, out.result.model_dump(mode="json"))


def read_output(run_dir: Path, result: RunResult) -> JobOutput:
    """A finished run read back from disk (a resumed probe feeding its variants)."""
    return JobOutput(result=result, files=_collect(run_dir))


def plan_variants(cfg: BenchConfig, seed: int, probe: JobOutput, smoke: bool) -> list[RunSpec]:
    """The variant jobs a finished probe calls for: none if its gate fails outside smoke."""
    if gate_status(cfg, probe.result, smoke) == "UNDERTRAINED":
        return []
    return variant_specs(cfg, seed, AuditReport.model_validate_json(probe.files["audit.json"]))


def job_key(seed: int, name: str) -> str:
    return f"seed_{seed}/{name}"
