"""Ray: every (seed, run) job a Ray task, run by the same scheduler as the local executors.

The scheduler (``executors.schedule``) decides what runs and when: a probe's variants are
submitted once its output reaches the driver, a job that fails — it raised, or its worker
died — is retried once and then reported failed, and resume look-ups and failure keys are
the local executors' own. This module is only a ``Runner``: ``submit`` starts a Ray task
(the probe's output travels with a variant as an argument), ``next_done`` waits for the next
to finish. Each task asks for ``runtime.cpus_per_job`` CPUs (default 1; torch uses that many
threads) and ``runtime.gpus_per_job`` GPUs (default 1 with ``device: cuda``, else 0); Ray
itself never retries (``max_retries=0``), so a job is attempted exactly as often as locally.
With ``runtime.fuse: auto`` each fused group (``bench.fused``) is one task asking for its jobs'
summed CPUs; every group is submitted at once.
Outputs come back as bytes and the driver writes them, so workers need no shared filesystem
for results — only for the data (``task.data_dir`` readable at the same path on every node).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

from gradience.bench import BenchInputError
from gradience.bench.config import BenchConfig
from gradience.bench.executors import Failure, Task, describe, group_cpus, schedule
from gradience.bench.jobs import JobOutput, execute_group, execute_job
from gradience.bench.runs import RunSpec


def _in_worker(threads: int) -> None:
    import torch

    from gradience.bench import training

    torch.set_num_threads(threads)
    # no bars in workers: they would interleave in the driver's log
    training.set_progress_factory(
        lambda description, total: contextlib.nullcontext(lambda n=1, info="": None)
    )


def ray_job(cfg_json: str, spec_json: str, probe: JobOutput | None, smoke: bool, threads: int) -> JobOutput:
    _in_worker(threads)
    cfg, spec = BenchConfig.model_validate_json(cfg_json), RunSpec.model_validate_json(spec_json)
    return execute_job(cfg, spec, probe, smoke)


def ray_group(cfg_json: str, spec_jsons: list[str], smoke: bool, threads: int) -> list[JobOutput | Failure]:
    _in_worker(threads)
    cfg = BenchConfig.model_validate_json(cfg_json)
    return execute_group(cfg, [RunSpec.model_validate_json(s) for s in spec_jsons], smoke)


@functools.lru_cache(maxsize=2)
def _remote(fn: Callable[..., Any]) -> Any:
    import ray

    return ray.remote(fn)


def _connect(address: str | None) -> Any:
    try:
        import ray
    except ImportError:
        raise BenchInputError("runtime.executor 'ray' needs Ray: pip install 'gradience[ray]'") from None
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise BenchInputError(f"cannot reach the Ray cluster at {address or 'local'}: {exc}") from None
    return ray


class RayRunner:
    """Tasks on a Ray cluster; the scheduler's ``Runner``."""

    def __init__(
        self, cfg: BenchConfig, smoke: bool, address: str | None, log: Callable[[str], None]
    ) -> None:
        self.ray = _connect(address)
        rt = cfg.runtime
        self.cpus = rt.cpus_per_job or 1
        gpus = rt.gpus_per_job if rt.gpus_per_job is not None else (1 if rt.device == "cuda" else 0)
        self.gpus = gpus
        self.task = _remote(ray_job).options(
            num_cpus=self.cpus, num_gpus=gpus, max_retries=0, retry_exceptions=False
        )
        self.cfg, self.cfg_json, self.smoke, self.log = cfg, cfg.model_dump_json(), smoke, log
        self.pending: dict[Any, Task] = {}
        log(f"ray: tasks of {self.cpus} CPU, {gpus} GPU each")

    def submit(self, task: Task) -> None:
        ref = self.task.remote(self.cfg_json, task.spec.model_dump_json(), task.probe, self.smoke, self.cpus)
        self.pending[ref] = task

    def busy(self) -> bool:
        return bool(self.pending)

    def next_done(self) -> tuple[Task, JobOutput | Failure]:
        [ref], _ = self.ray.wait(list(self.pending), num_returns=1)
        task = self.pending.pop(ref)
        try:
            return task, self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, BenchInputError):
                raise BenchInputError(str(exc.cause)) from None
            return task, Failure(describe(exc.cause))
        except self.ray.exceptions.RayError as exc:  # its worker died, an object was lost, …
            return task, Failure(describe(exc))

    def run_groups(self, groups: list[list[RunSpec]]) -> list[list[JobOutput | Failure]]:
        """Every fused group a Ray task at once, asking for its jobs' summed CPUs (capped at the
        largest node's) and one job's GPUs (the fused model lives on one device)."""
        node_cpus = max(
            (int(n["Resources"].get("CPU", 0)) for n in self.ray.nodes() if n.get("Alive")), default=1
        )
        refs = []
        for specs in groups:
            cpus = group_cpus(self.cfg, len(specs), node_cpus)
            self.log(f"ray: fused group of {len(specs)} jobs, {cpus} CPU, {self.gpus} GPU")
            task = _remote(ray_group).options(
                num_cpus=cpus, num_gpus=self.gpus, max_retries=0, retry_exceptions=False
            )
            refs.append(task.remote(self.cfg_json, [s.model_dump_json() for s in specs], self.smoke, cpus))
        return [self._group_outcome(ref, len(specs)) for ref, specs in zip(refs, groups, strict=True)]

    def _group_outcome(self, ref: Any, n: int) -> list[JobOutput | Failure]:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, BenchInputError):
                raise BenchInputError(str(exc.cause)) from None
            return [Failure(describe(exc.cause))] * n
        except self.ray.exceptions.RayError as exc:  # its worker died: each job is retried alone
            return [Failure(describe(exc))] * n

    def close(self) -> None:
        for ref in self.pending:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
        self.pending.clear()


class RayExecutor:
    def __init__(self, address: str | None = None, log: Callable[[str], None] = print) -> None:
        self.address, self.log = address, log

    def run(self, cfg: BenchConfig, probes: list[RunSpec], store: Any, smoke: bool) -> None:
        schedule(cfg, probes, store, smoke, RayRunner(cfg, smoke, self.address, self.log))
