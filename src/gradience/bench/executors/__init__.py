"""Executors run the bench's job graph: every probe, then each probe's variants once it is done.

``local`` runs jobs in this process (``runtime.workers: 1``) or in a pool of worker
processes; ``ray`` submits each job as a Ray task, a variant depending on its probe's
object reference. Either way a job that fails — an exception, or its worker killed —
is retried once and then reported as failed while every other job goes on, and every
result is written by the driver through the ``RunStore``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gradience.bench.config import BenchConfig
from gradience.bench.jobs import Failure, JobOutput, describe, job_key, plan_variants
from gradience.bench.runs import RunSpec

MAX_ATTEMPTS = 2  # a job is retried once


class Executor(Protocol):
    def run(self, cfg: BenchConfig, probes: list[RunSpec], store: Any, smoke: bool) -> None:
        """Run every probe and the variants each calls for; report each outcome to ``store``."""
        ...


@dataclass
class Task:
    spec: RunSpec
    probe: JobOutput | None  # the dependency's output, for variants
    attempt: int = 1

    @property
    def key(self) -> str:
        return job_key(self.spec.seed, self.spec.name)


class Runner(Protocol):
    """Where tasks execute: ``submit`` queues one, ``next_done`` blocks until one has an outcome."""

    def submit(self, task: Task) -> None: ...
    def busy(self) -> bool: ...
    def next_done(self) -> tuple[Task, JobOutput | Failure]: ...
    def close(self) -> None: ...


def fusable(cfg: BenchConfig, runner: Runner) -> bool:
    """Fused training (``runtime.fuse: auto``) needs a runner that trains groups (in this process
    or as Ray tasks) and no selection monitor during training (it evaluates one model mid-run)."""
    return cfg.runtime.fuse == "auto" and hasattr(runner, "run_groups") and cfg.train.eval_steps is None


def group_cpus(cfg: BenchConfig, n_jobs: int, available: int) -> int:
    """A fused group asks for its jobs' summed CPUs (``runtime.cpus_per_job``, default 1 each),
    never more than ``available`` (a request no node can meet would wait forever)."""
    return max(1, min((cfg.runtime.cpus_per_job or 1) * n_jobs, available))


def _fused_phase(
    cfg: BenchConfig, tasks: list[Task], store: Any, runner: Any
) -> tuple[list[Task], list[tuple[Task, JobOutput]]]:
    """Train the ``train`` tasks in fused groups, storing each finished job at once; return the
    tasks left for the runner (the others, and each failed job's retry, alone) and what finished."""
    train = [t for t in tasks if t.spec.method == "train"]
    rest = [t for t in tasks if t.spec.method != "train"]
    size, done = cfg.runtime.fuse_max_jobs, []
    groups = [train[i : i + size] for i in range(0, len(train), size)]
    rest += [g[0] for g in groups if len(g) == 1]
    groups = [g for g in groups if len(g) > 1]
    for group in groups:
        store.log(f"fused: training {', '.join(t.key for t in group)} together")
    outcomes = runner.run_groups([[t.spec for t in g] for g in groups]) if groups else []
    for group, outs in zip(groups, outcomes, strict=True):
        for task, out in zip(group, outs, strict=True):
            if isinstance(out, JobOutput):
                store.store(out)
                done.append((task, out))
            else:
                store.log(f"{task.key}: fused attempt failed ({out.why}); retrying alone")
                rest.append(Task(task.spec, task.probe, task.attempt + 1))
    return rest, done


def schedule(cfg: BenchConfig, probes: list[RunSpec], store: Any, smoke: bool, runner: Runner) -> None:
    """Dependency-driven: a probe's variants are submitted the moment its output arrives. With
    ``runtime.fuse: auto`` every probe is trained first (in fused groups; a lone one or a retry
    alone), then every variant of every seed, the retrained ones in fused groups."""
    hold = fusable(cfg, runner)  # while fusing probes, their variants wait to be grouped
    probed: list[tuple[int, JobOutput]] = []

    def release(seed: int, out: JobOutput) -> None:
        if hold:
            probed.append((seed, out))
            return
        for spec in plan_variants(cfg, seed, out, smoke):
            if store.resumable(spec) is None:
                runner.submit(Task(spec, out))

    def drain() -> None:
        while runner.busy():
            task, outcome = runner.next_done()
            if isinstance(outcome, JobOutput):
                store.store(outcome)
                if task.spec.variant == "probe":
                    release(task.spec.seed, outcome)
            elif task.attempt < MAX_ATTEMPTS:
                store.log(f"{task.key}: attempt {task.attempt} failed ({outcome.why}); retrying")
                runner.submit(Task(task.spec, task.probe, task.attempt + 1))
            else:
                store.fail(task.key, outcome.why)

    try:
        todo, resumed = [], []
        for spec in probes:
            done = store.resumable(spec)
            if done is None:
                todo.append(Task(spec, None))
            else:
                resumed.append((spec.seed, done))
        if hold:
            todo, fused = _fused_phase(cfg, todo, store, runner)
            probed += resumed + [(t.spec.seed, out) for t, out in fused]
            for task in todo:
                runner.submit(task)
            drain()
            hold = False
            todo = [Task(spec, out) for seed, out in probed for spec in plan_variants(cfg, seed, out, smoke)
                    if store.resumable(spec) is None]  # fmt: skip
            todo, _ = _fused_phase(cfg, todo, store, runner)
            resumed = []
        for task in todo:
            runner.submit(task)
        for seed, out in resumed:
            release(seed, out)
        drain()
    finally:
        runner.close()


def threads_per_job(cfg: BenchConfig, workers: int) -> int:
    """CPU threads for one job: ``runtime.cpus_per_job``, else the cores shared out evenly."""
    return cfg.runtime.cpus_per_job or max(1, (os.cpu_count() or 1) // workers)


def make_executor(cfg: BenchConfig, log: Callable[[str], None]) -> Executor:
    if cfg.runtime.executor == "ray":
        from gradience.bench.executors.ray import RayExecutor

        return RayExecutor(cfg.runtime.ray_address, log)
    from gradience.bench.executors.local import LocalExecutor

    return LocalExecutor(cfg.runtime.workers, log)


__all__ = [
    "MAX_ATTEMPTS",
    "Executor",
    "Failure",
    "Task",
    "describe",
    "fusable",
    "group_cpus",
    "make_executor",
    "schedule",
    "threads_per_job",
]
