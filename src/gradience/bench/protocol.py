"""The bench protocol of SPEC §5, per seed: probe → gate → audit → variants → evaluate.

Upstream's order bugs are designed out here: the gate is applied to each probe before
any variant of that seed is built, the audit reads the probe's *final* saved adapter,
and per-layer variants name every layer's rank explicitly (``variants.py``). The jobs
form a small graph — each variant depends on its seed's probe only — which an executor
(``executors/``) runs in any order it likes; it reports every outcome to the
``RunStore``, the one place that writes the output layout and answers ``--resume``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradience.audit import AuditReport
from gradience.bench.config import BenchConfig, RunOptions, resolve_model_path
from gradience.bench.jobs import JobOutput, job_key, read_output, store_output
from gradience.bench.runs import RunResult, RunSpec, fingerprint, finished_result
from gradience.bench.tasks import task_metric
from gradience.bench.variants import GateStatus, gate_status, probe_spec
from gradience.files import checkpoint


@dataclass
class SeedOutcome:
    seed: int
    probe: RunResult
    gate: GateStatus
    audit: AuditReport | None = None
    variants: dict[str, RunResult] = field(default_factory=dict)


@dataclass
class BenchRun:
    """Everything the reports need, in memory."""

    cfg: BenchConfig
    opts: RunOptions
    out_dir: Path
    model_path: str
    seeds: list[SeedOutcome]
    skipped_on_resume: list[str]
    data: Any = None  # the tokenised TaskData every run used
    wall_s: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)  # "seed_<s>/<run>" → why, after its retry


def seed_dir(out_dir: Path, seed: int) -> Path:
    return out_dir / f"seed_{seed}"


class RunStore:
    """The driver's side of every executor: resume look-ups, results written into the layout."""

    def __init__(self, cfg: BenchConfig, out_dir: Path, opts: RunOptions, log: Any) -> None:
        self.cfg, self.out_dir, self.opts, self.log = cfg, out_dir, opts, log
        self.results: dict[str, RunResult] = {}
        self.failed: dict[str, str] = {}
        self.resumed: list[str] = []

    def path(self, spec: RunSpec) -> Path:
        return seed_dir(self.out_dir, spec.seed) / spec.name

    def resumable(self, spec: RunSpec) -> JobOutput | None:
        """With --resume, a run whose result.json matches its fingerprint is reused, not re-run."""
        if not self.opts.resume:
            return None
        done = finished_result(self.path(spec), fingerprint(self.cfg, spec))
        if done is None:
            return None
        key = job_key(spec.seed, spec.name)
        self.results[key] = done
        self.resumed.append(key)
        self.log(f"resume: {key} already finished, not re-run")
        return read_output(self.path(spec), done)

    def store(self, out: JobOutput) -> None:
        store_output(self.path(out.result.spec), out)
        self.results[job_key(out.result.spec.seed, out.result.spec.name)] = out.result
        _log_result(out.result, self.log)
        checkpoint("bench:between_runs")

    def fail(self, key: str, why: str) -> None:
        self.failed[key] = why
        self.log(f"{key}: FAILED after its retry: {why}")


def _log_result(res: RunResult, log: Any) -> None:
    s = res.spec
    if res.status == "skipped_control":
        log(f"seed {s.seed} {s.name}: skipped control ({s.note})")
        return
    accs = ", ".join(f"{res.eval_split_names[k]} {m.value:.3f} (n={m.n})" for k, m in res.eval.items())
    log(f"seed {s.seed} {s.name}: {accs}; LoRA params {res.lora_params:,}; {res.wall_s:.0f}s")


def _outcomes(cfg: BenchConfig, store: RunStore, opts: RunOptions, log: Any) -> list[SeedOutcome]:
    outcomes = []
    for seed in cfg.seeds:
        probe = store.results.get(job_key(seed, probe_spec(cfg, seed).name))
        if probe is None:
            continue  # failed: listed in store.failed; its variants could not run
        gate = gate_status(cfg, probe, opts.smoke)
        audit_path = seed_dir(store.out_dir, seed) / probe.spec.name / "audit.json"
        out = SeedOutcome(seed, probe, gate, AuditReport.model_validate_json(audit_path.read_bytes()))
        if gate != "PASSED":
            acc = probe.eval["eval"].value
            metric = task_metric(cfg.task)
            sign = "<" if metric.higher_is_better else ">"
            log(f"seed {seed}: probe {metric.title} {acc:.3f} {sign} probe_gate {cfg.compression.probe_gate}: {gate}"
                + ("; variants still run (smoke)" if gate == "UNDERTRAINED_SMOKE" else "; variants not trained"))  # fmt: skip
        for key, res in store.results.items():
            if key.startswith(f"seed_{seed}/") and res.spec.variant != "probe":
                out.variants[res.spec.variant] = res
        order = list(cfg.compression.variants_to_test)
        out.variants = dict(sorted(out.variants.items(), key=lambda kv: order.index(kv[0])))
        outcomes.append(out)
    return outcomes


def run_protocol(
    cfg: BenchConfig, out_dir: Path, opts: RunOptions, executor: Any = None, log: Any = print
) -> BenchRun:
    """Steps (1)–(6) for every seed; verdicts and reports are the caller's next step."""
    from gradience.bench import BenchInputError
    from gradience.bench.executors import make_executor
    from gradience.bench.tasks import load_task_data

    executor = executor or make_executor(cfg, log)
    model_path = resolve_model_path(cfg.model.name)
    tr = cfg.train
    # Load and tokenise once up front: bad data fails before any training, and jobs reuse the cache.
    data = load_task_data(model_path, cfg.task, tr.train_samples, tr.eval_samples, smoke=opts.smoke,
                          selection=tr.eval_steps is not None)  # fmt: skip
    store = RunStore(cfg, out_dir, opts, log)
    executor.run(cfg, [probe_spec(cfg, s) for s in cfg.seeds], store, opts.smoke)
    outcomes = _outcomes(cfg, store, opts, log)
    if not outcomes:
        raise BenchInputError(f"every probe failed, nothing to report: {store.failed}")
    return BenchRun(cfg, opts, out_dir, model_path, outcomes, store.resumed, data, failed=dict(store.failed))
