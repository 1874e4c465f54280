"""The bench protocol of SPEC §5, per seed: probe → gate → audit → variants → evaluate → verdicts.

Upstream's order bugs are designed out here: the gate is applied to each probe before
any variant of that seed is built, the audit reads the probe's *final* saved adapter,
and per-layer variants name every layer's rank explicitly (nothing falls back to the
probe's rank). Jobs go through an executor in two stages (all probes, then all
variants), so a parallel executor can fan each stage out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from gradience.bench.config import BenchConfig, RunOptions, resolve_model_path
from gradience.bench.runs import RunResult, RunSpec, fingerprint, finished_result, run_job, scaled_alpha

GateStatus = Literal["PASSED", "UNDERTRAINED", "UNDERTRAINED_SMOKE"]
Job = tuple[RunSpec, Path]


class Executor(Protocol):
    """Runs independent jobs; calls ``on_result`` as each finishes; returns results in job order."""

    def run(
        self, cfg: BenchConfig, jobs: Sequence[Job], smoke: bool, on_result: Callable[[RunResult], None]
    ) -> list[RunResult]: ...


class LocalExecutor:
    """One job after another in this process (the tokenised data is shared through a cache)."""

    def run(
        self, cfg: BenchConfig, jobs: Sequence[Job], smoke: bool, on_result: Callable[[RunResult], None]
    ) -> list[RunResult]:
        results = []
        for spec, path in jobs:
            results.append(run_job(cfg, spec, path, smoke=smoke))
            on_result(results[-1])
        return results


@dataclass
class SeedOutcome:
    seed: int
    probe: RunResult
    gate: GateStatus
    audit: dict[str, Any] | None = None
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


def seed_dir(out_dir: Path, seed: int) -> Path:
    return out_dir / f"seed_{seed}"


def probe_spec(cfg: BenchConfig, seed: int) -> RunSpec:
    r = cfg.lora.probe_r
    return RunSpec(name=f"probe_r{r}", variant="probe", seed=seed, method="train", r=r, alpha=cfg.lora.alpha)


def _uniform(cfg: BenchConfig, seed: int, variant: str, rank: int, method: str, source: str) -> RunSpec:
    probe_r = cfg.lora.probe_r
    skip = rank == probe_r
    return RunSpec(
        name=f"{variant}_r{rank}", variant=variant, seed=seed, method="skip" if skip else method,  # type: ignore[arg-type]
        r=rank, alpha=scaled_alpha(cfg, rank), source=source if method == "truncate" else None,
        note="control: the suggested rank equals the probe's, so this variant is the probe" if skip else "",
    )  # fmt: skip


def _pattern(
    cfg: BenchConfig, seed: int, variant: str, pattern: dict[str, int], method: str, source: str
) -> RunSpec:
    skip = all(k == cfg.lora.probe_r for k in pattern.values())
    return RunSpec(
        name=variant, variant=variant, seed=seed, method="skip" if skip else method,  # type: ignore[arg-type]
        r=max(pattern.values()), alpha=scaled_alpha(cfg, max(pattern.values())),
        rank_pattern=dict(pattern), alpha_pattern={m: scaled_alpha(cfg, k) for m, k in pattern.items()},
        source=source if method == "truncate" else None,
        note="control: every suggested rank equals the probe's, so this variant is the probe" if skip else "",
    )  # fmt: skip


def shuffle_within_type(pattern: dict[str, int], types: dict[str, str], seed: int) -> dict[str, int]:
    """Permute ranks among layers of the same module type: same budget, uninformed placement."""
    rng = np.random.default_rng([seed, 7])
    out = dict(pattern)
    for t in sorted(set(types.values())):
        names = sorted(m for m in pattern if types[m] == t)
        ranks = [pattern[m] for m in names]
        out.update(zip(names, (ranks[i] for i in rng.permutation(len(ranks))), strict=True))
    return out


def variant_specs(cfg: BenchConfig, seed: int, audit: dict[str, Any]) -> list[RunSpec]:
    """The variants of ``compression.variants_to_test``, from the probe's audit, in config order."""
    sugg = audit["suggestions"]
    layers = audit["layers"]
    suggested = sugg["per_layer"]["rank_pattern"] or {}
    missing = [la["name"] for la in layers if la["name"] not in suggested]
    if missing:
        raise RuntimeError(f"audit's per_layer suggestion does not name every layer: {missing[:3]}")
    pattern = {la["name"]: int(suggested[la["name"]]) for la in layers}
    types = {la["name"]: la["module_type"] for la in layers}
    source = probe_spec(cfg, seed).name
    build: dict[str, Callable[[], RunSpec]] = {
        "uniform_median": lambda: _uniform(
            cfg, seed, "uniform_median", sugg["uniform_median"]["rank"], "train", source
        ),
        "uniform_p90": lambda: _uniform(
            cfg, seed, "uniform_p90", sugg["uniform_p90"]["rank"], "train", source
        ),
        "per_layer": lambda: _pattern(cfg, seed, "per_layer", pattern, "train", source),
        "per_layer_shuffled": lambda: _pattern(
            cfg, seed, "per_layer_shuffled", shuffle_within_type(pattern, types, seed), "train", source
        ),
        "truncate_median": lambda: _uniform(
            cfg, seed, "truncate_median", sugg["uniform_median"]["rank"], "truncate", source
        ),
        "truncate_per_layer": lambda: _pattern(cfg, seed, "truncate_per_layer", pattern, "truncate", source),
    }
    return [build[v]() for v in cfg.compression.variants_to_test]


def gate_status(cfg: BenchConfig, probe: RunResult, smoke: bool) -> GateStatus:
    if probe.eval["eval"].accuracy >= cfg.compression.probe_gate:
        return "PASSED"
    return "UNDERTRAINED_SMOKE" if smoke else "UNDERTRAINED"


def _run_stage(
    cfg: BenchConfig, opts: RunOptions, executor: Executor, jobs: list[Job], skipped: list[str], log: Any
) -> list[RunResult]:
    """Resume: a run whose result.json matches its fingerprint is reused, not retrained."""
    results: dict[int, RunResult] = {}
    todo: list[tuple[int, Job]] = []
    for i, (spec, path) in enumerate(jobs):
        done = finished_result(path, fingerprint(cfg, spec)) if opts.resume else None
        if done is not None:
            results[i] = done
            skipped.append(f"{path.parent.name}/{path.name}")
            log(f"resume: {path.parent.name}/{path.name} already finished, not re-run")
        else:
            todo.append((i, (spec, path)))
    done_now = executor.run(cfg, [j for _, j in todo], opts.smoke, lambda res: _log_result(res, log))
    for (i, _), res in zip(todo, done_now, strict=True):
        results[i] = res
    return [results[i] for i in range(len(jobs))]


def _log_result(res: RunResult, log: Any) -> None:
    s = res.spec
    if res.status == "skipped_control":
        log(f"seed {s.seed} {s.name}: skipped control ({s.note})")
        return
    accs = ", ".join(f"{res.eval_split_names[k]} {m.accuracy:.3f} (n={m.n})" for k, m in res.eval.items())
    log(f"seed {s.seed} {s.name}: {accs}; LoRA params {res.lora_params:,}; {res.wall_s:.0f}s")


def run_protocol(
    cfg: BenchConfig, out_dir: Path, opts: RunOptions, executor: Executor | None = None, log: Any = print
) -> BenchRun:
    """Steps (1)–(6) for every seed; verdicts and reports are the caller's next step."""
    from gradience.bench.tasks import load_task_data

    executor = executor or LocalExecutor()
    model_path = resolve_model_path(cfg.model.name)
    tr = cfg.train
    # Load and tokenise once up front: bad data fails before any training, and jobs reuse the cache.
    data = load_task_data(model_path, cfg.task, tr.train_samples, tr.eval_samples, smoke=opts.smoke,
                          selection=tr.eval_steps is not None)  # fmt: skip
    skipped: list[str] = []
    seeds = cfg.seeds
    probe_jobs = [(probe_spec(cfg, s), seed_dir(out_dir, s) / probe_spec(cfg, s).name) for s in seeds]
    probes = _run_stage(cfg, opts, executor, probe_jobs, skipped, log)
    outcomes: list[SeedOutcome] = []
    variant_jobs: list[Job] = []
    for seed, probe in zip(seeds, probes, strict=True):
        gate = gate_status(cfg, probe, opts.smoke)
        probe_dir = seed_dir(out_dir, seed) / probe.spec.name
        audit = json.loads((probe_dir / "audit.json").read_text(encoding="utf-8"))
        outcomes.append(SeedOutcome(seed, probe, gate, audit))
        if gate != "PASSED":
            acc = probe.eval["eval"].accuracy
            log(f"seed {seed}: probe accuracy {acc:.3f} < probe_gate {cfg.compression.probe_gate}: {gate}"
                + ("; variants still run (smoke)" if gate == "UNDERTRAINED_SMOKE" else "; variants not trained"))  # fmt: skip
        if gate == "UNDERTRAINED":
            continue
        variant_jobs += [
            (spec, seed_dir(out_dir, seed) / spec.name) for spec in variant_specs(cfg, seed, audit)
        ]
    variants = _run_stage(cfg, opts, executor, variant_jobs, skipped, log)
    by_seed = {o.seed: o for o in outcomes}
    for res in variants:
        by_seed[res.spec.seed].variants[res.spec.variant] = res
    return BenchRun(cfg, opts, out_dir, model_path, outcomes, skipped, data)
