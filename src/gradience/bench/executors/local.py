"""Local execution: in this process (one worker), or a pool of spawned worker processes.

Either runner trains fused groups (``runtime.fuse: auto``): in this process one group after
another, in the pool each group in a worker, as many at once as there are workers.

Worker processes are long-lived (torch, the model code and the tokenised data load once
per worker, not per job) and each gets its share of the CPU threads, so N workers do not
oversubscribe the cores. The driver waits on the workers' pipes and process sentinels
together: a worker that dies mid-job (killed, out of memory) is noticed at once, its job
retried on a fresh worker, and no other job is disturbed.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from multiprocessing.connection import wait
from typing import Any

from gradience.bench import BenchInputError
from gradience.bench.config import BenchConfig
from gradience.bench.executors import Failure, Task, describe, group_cpus, schedule, threads_per_job
from gradience.bench.jobs import JobOutput, execute_group, execute_job, job_key
from gradience.bench.runs import RunSpec


class InlineRunner:
    """One job after another in the driver (the tokenised data is shared through a cache)."""

    def __init__(self, cfg: BenchConfig, smoke: bool) -> None:
        self.cfg, self.smoke, self.queue = cfg, smoke, deque[Task]()

    def submit(self, task: Task) -> None:
        self.queue.append(task)

    def busy(self) -> bool:
        return bool(self.queue)

    def next_done(self) -> tuple[Task, JobOutput | Failure]:
        import torch

        task = self.queue.popleft()
        before = torch.get_num_threads()
        torch.set_num_threads(self.cfg.runtime.cpus_per_job or before)
        try:
            return task, execute_job(self.cfg, task.spec, task.probe, self.smoke)
        except BenchInputError:
            raise
        except Exception as exc:  # noqa: BLE001 - any job failure is retried, then reported
            return task, Failure(describe(exc))
        finally:
            torch.set_num_threads(before)

    def run_groups(self, groups: list[list[RunSpec]]) -> list[list[JobOutput | Failure]]:
        """Train each group fused, in this process (``bench.fused``), one group after another."""
        return [self._group(specs) for specs in groups]

    def _group(self, specs: list[RunSpec]) -> list[JobOutput | Failure]:
        import torch

        from gradience.bench.jobs import execute_group

        before = torch.get_num_threads()
        cpus = os.cpu_count() or 1
        torch.set_num_threads(
            group_cpus(self.cfg, len(specs), cpus) if self.cfg.runtime.cpus_per_job else before
        )
        try:
            return execute_group(self.cfg, specs, self.smoke)
        except BenchInputError:
            raise
        except Exception as exc:  # noqa: BLE001 - the whole group failed: each job is retried alone
            return [Failure(describe(exc))] * len(specs)
        finally:
            torch.set_num_threads(before)

    def close(self) -> None:
        self.queue.clear()


def _worker_main(conn: Any, threads: int) -> None:
    """A worker's loop: receive a job, report it started, send its output (or its error)."""
    import signal

    import torch

    from gradience.bench import training

    def terminate(signum: int, frame: Any) -> None:  # unwind, so the job's scratch folder goes too
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    torch.set_num_threads(threads)
    current = {"key": ""}

    @contextlib.contextmanager
    def relay(description: str, total: int) -> Iterator[Callable[..., None]]:
        state = {"done": 0, "sent": 0.0}

        def advance(n: int = 1, info: str = "") -> None:
            state["done"] += n
            now = time.monotonic()
            if now - state["sent"] > 0.5 or state["done"] >= total:
                state["sent"] = now
                conn.send(("progress", current["key"], description, state["done"], total, info))

        yield advance

    training.set_progress_factory(relay)
    while True:
        msg = conn.recv()
        if msg is None:
            return
        kind, key, cfg_json, spec_json, probe, smoke = msg
        current["key"] = key
        conn.send(("started", key, os.getpid()))
        try:
            cfg = BenchConfig.model_validate_json(cfg_json)
            if kind == "group":  # spec_json: the group's specs; each job's output or Failure back
                out: Any = execute_group(cfg, [RunSpec.model_validate_json(j) for j in spec_json], smoke)
            else:
                out = execute_job(cfg, RunSpec.model_validate_json(spec_json), probe, smoke)
            conn.send(("done", key, out))
        except BenchInputError as exc:
            conn.send(("input_error", key, str(exc)))
        except Exception as exc:  # noqa: BLE001 - reported to the driver, which retries
            conn.send(("error", key, describe(exc)))


class _Worker:
    def __init__(self, ctx: Any, threads: int) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, threads), daemon=True)
        self.proc.start()
        child.close()
        self.task: Task | None = None


class ProcessRunner:
    """A pool of ``workers`` spawned processes, ``threads`` torch threads each."""

    def __init__(self, cfg: BenchConfig, smoke: bool, workers: int, log: Callable[[str], None]) -> None:
        self.cfg_json, self.smoke, self.n, self.log = cfg.model_dump_json(), smoke, workers, log
        self.threads = threads_per_job(cfg, workers)
        self.ctx = mp.get_context("spawn")  # no forked torch/OpenMP state in the children
        self.queue: deque[Task] = deque()
        self.workers: list[_Worker] = []
        self.bars = _Bars()

    def submit(self, task: Task) -> None:
        self.queue.append(task)

    def busy(self) -> bool:
        return bool(self.queue) or any(w.task for w in self.workers)

    def _dispatch(self) -> None:
        while self.queue:
            idle = next((w for w in self.workers if w.task is None), None)
            if idle is None and len(self.workers) < self.n:
                idle = _Worker(self.ctx, self.threads)
                self.workers.append(idle)
            if idle is None:
                return
            task = idle.task = self.queue.popleft()
            idle.conn.send(
                ("job", task.key, self.cfg_json, task.spec.model_dump_json(), task.probe, self.smoke)
            )

    def run_groups(self, groups: list[list[RunSpec]]) -> list[list[JobOutput | Failure]]:
        """Each fused group in a worker process, up to ``workers`` groups at once (the pool is
        idle when the scheduler calls this). A worker that dies fails its group's jobs, which
        the scheduler then retries alone; a bad-input error stops the bench as for a single job."""
        out: list[list[JobOutput | Failure]] = [[] for _ in groups]
        pending = deque(enumerate(groups))
        running: dict[_Worker, tuple[int, str]] = {}
        while pending or running:
            while pending and len(running) < self.n:
                w = next((w for w in self.workers if w not in running), None)
                if w is None:
                    w = _Worker(self.ctx, self.threads)
                    self.workers.append(w)
                i, specs = pending.popleft()
                key = "fused " + "+".join(job_key(s.seed, s.name) for s in specs)
                running[w] = (i, key)
                w.conn.send(
                    ("group", key, self.cfg_json, [s.model_dump_json() for s in specs], None, self.smoke)
                )
            ready = wait([w.conn for w in running] + [w.proc.sentinel for w in running])
            for w in [w for w in running if w.conn in ready or w.proc.sentinel in ready]:
                i, key = running[w]
                try:
                    msg = w.conn.recv() if w.conn in ready else None
                except (EOFError, OSError):
                    msg = None
                if msg is None:
                    del running[w]
                    out[i] = [self._bury(w, key)] * len(groups[i])
                elif msg[0] == "started":
                    self.log(f"{key}: started (worker pid {msg[2]})")
                elif msg[0] == "progress":
                    self.bars.update(key, *msg[2:])
                else:
                    del running[w]
                    self.bars.finish(key)
                    if msg[0] == "input_error":
                        raise BenchInputError(msg[2])
                    out[i] = msg[2] if msg[0] == "done" else [Failure(msg[2])] * len(groups[i])
        return out

    def next_done(self) -> tuple[Task, JobOutput | Failure]:
        while True:
            self._dispatch()
            busy = [w for w in self.workers if w.task is not None]
            ready = wait([w.conn for w in busy] + [w.proc.sentinel for w in busy])
            for w in busy:
                if w.conn in ready:
                    try:
                        msg = w.conn.recv()
                    except (EOFError, OSError):
                        return self._died(w)
                    done = self._handle(w, msg)
                    if done is not None:
                        return done
                elif w.proc.sentinel in ready:
                    return self._died(w)

    def _handle(self, w: _Worker, msg: tuple[Any, ...]) -> tuple[Task, JobOutput | Failure] | None:
        kind, key = msg[0], msg[1]
        task = w.task
        assert task is not None and key == task.key
        if kind == "started":
            self.log(f"{key}: started (attempt {task.attempt}, worker pid {msg[2]})")
            return None
        if kind == "progress":
            self.bars.update(key, *msg[2:])
            return None
        w.task = None
        self.bars.finish(key)
        if kind == "input_error":
            raise BenchInputError(msg[2])
        return task, (msg[2] if kind == "done" else Failure(msg[2]))

    def _died(self, w: _Worker) -> tuple[Task, JobOutput | Failure]:
        task = w.task
        assert task is not None
        return task, self._bury(w, task.key)

    def _bury(self, w: _Worker, key: str) -> Failure:
        """A worker that died: out of the pool, its bars closed, the Failure of what it ran."""
        w.proc.join(timeout=5)
        self.workers.remove(w)
        self.bars.finish(key)
        return Failure(f"worker process died (exit code {w.proc.exitcode})")

    def close(self) -> None:
        self.bars.close()
        for w in self.workers:
            with contextlib.suppress(OSError):
                w.conn.send(None)
        for w in self.workers:
            w.proc.join(timeout=10)
            if w.proc.is_alive():
                w.proc.kill()
        self.workers.clear()


class _Bars:
    """The driver's view of every worker's training/eval loops: one rich bar per loop, with ETA."""

    def __init__(self) -> None:
        self.progress: Any = None
        self.tasks: dict[tuple[str, str], Any] = {}

    def update(self, key: str, description: str, done: int, total: int, info: str) -> None:
        from gradience.bench.training import progress_bar

        if self.progress is None:
            self.progress = progress_bar()
            self.progress.start()
        tid = self.tasks.get((key, description))
        if tid is None:
            tid = self.tasks[(key, description)] = self.progress.add_task(description, total=total, info="")
        self.progress.update(tid, completed=done, info=info)

    def finish(self, key: str) -> None:
        for k in [k for k in self.tasks if k[0] == key]:
            self.progress.remove_task(self.tasks.pop(k))

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


class LocalExecutor:
    def __init__(self, workers: int = 1, log: Callable[[str], None] = print) -> None:
        self.workers, self.log = workers, log

    def run(self, cfg: BenchConfig, probes: list[RunSpec], store: Any, smoke: bool) -> None:
        runner: Any = (
            InlineRunner(cfg, smoke)
            if self.workers == 1
            else ProcessRunner(cfg, smoke, self.workers, self.log)
        )
        schedule(cfg, probes, store, smoke, runner)
