"""Ray: every (seed, run) job a Ray task; a variant takes its probe's object reference.

The dependency is Ray's to resolve — a variant task starts when its probe's output
exists, wherever that was computed — so the driver never polls. Each task asks for
``runtime.cpus_per_job`` CPUs (default 1; torch uses that many threads) and
``runtime.gpus_per_job`` GPUs (default 1 with ``device: cuda``, else 0). A task that
raises or whose worker dies is retried once by Ray (``max_retries=1``); after that it
is reported as failed and the others go on. Outputs come back as bytes and the driver
writes them, so workers need no shared filesystem for results — only for the data
(``task.data_dir`` must be readable at the same path on every node).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

from gradience.bench import BenchInputError
from gradience.bench.config import BenchConfig
from gradience.bench.executors import describe
from gradience.bench.jobs import JobOutput, execute_job, job_key, plan_variants
from gradience.bench.runs import RunSpec


def _in_worker(threads: int) -> None:
    import torch

    from gradience.bench import training

    torch.set_num_threads(threads)
    # no bars in workers: they would interleave in the driver's log
    training.set_progress_factory(
        lambda description, total: contextlib.nullcontext(lambda n=1, info="": None)
    )


def probe_job(cfg_json: str, spec_json: str, smoke: bool, threads: int) -> JobOutput:
    _in_worker(threads)
    return execute_job(
        BenchConfig.model_validate_json(cfg_json), RunSpec.model_validate_json(spec_json), None, smoke
    )


def variant_job(
    cfg_json: str, variant: str, seed: int, smoke: bool, threads: int, probe: JobOutput
) -> JobOutput | None:
    """The variant's spec comes from its probe's audit; None when the probe's gate stops it."""
    _in_worker(threads)
    cfg = BenchConfig.model_validate_json(cfg_json)
    spec = next((s for s in plan_variants(cfg, seed, probe, smoke) if s.variant == variant), None)
    return None if spec is None else execute_job(cfg, spec, probe, smoke)


@functools.lru_cache(maxsize=1)
def _remote() -> tuple[Any, Any]:
    import ray

    return ray.remote(probe_job), ray.remote(variant_job)


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


class RayExecutor:
    def __init__(self, address: str | None = None, log: Callable[[str], None] = print) -> None:
        self.address, self.log = address, log

    def run(self, cfg: BenchConfig, probes: list[RunSpec], store: Any, smoke: bool) -> None:
        ray = _connect(self.address)
        rt = cfg.runtime
        cpus = rt.cpus_per_job or 1
        gpus = rt.gpus_per_job if rt.gpus_per_job is not None else (1 if rt.device == "cuda" else 0)
        opts = {"num_cpus": cpus, "num_gpus": gpus, "max_retries": 1, "retry_exceptions": True}
        probe_task, variant_task = (f.options(**opts) for f in _remote())
        cfg_json = cfg.model_dump_json()
        pending: dict[Any, str] = {}
        for spec in probes:
            done = store.resumable(spec)
            if done is None:
                ref = probe_task.remote(cfg_json, spec.model_dump_json(), smoke, cpus)
                pending[ref] = job_key(spec.seed, spec.name)
                variants = list(cfg.compression.variants_to_test)
            else:
                ref = ray.put(done)
                variants = [
                    s.variant
                    for s in plan_variants(cfg, spec.seed, done, smoke)
                    if store.resumable(s) is None
                ]
            for v in variants:
                pending[variant_task.remote(cfg_json, v, spec.seed, smoke, cpus, ref)] = job_key(spec.seed, v)
        self.log(f"ray: {len(pending)} tasks submitted ({cpus} CPU, {gpus} GPU each)")
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            key = pending.pop(ref)
            try:
                out = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:
                cause = exc.cause
                if isinstance(cause, BenchInputError):
                    raise BenchInputError(str(cause)) from None
                store.fail(key, describe(cause))
                continue
            except ray.exceptions.RayError as exc:  # worker died twice, lost object, …
                store.fail(key, describe(exc))
                continue
            if out is not None:
                store.store(out)
