"""``bench.json``: the canonical, versioned result of a bench, as pydantic models.

Every optional field has a default (upstream crashed with ``KeyError`` on missing
ones), and nothing here recomputes a statistic: accuracies come from the runs,
verdicts from ``gradience.verdicts`` via ``bench.judging``.
"""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from gradience.audit import AuditReport
from gradience.bench.registry import CONTROLS

REPORT_SCHEMA = "gradience.bench/v1"


class ParamReduction(BaseModel):
    lora_only: float  # 1 − variant LoRA params / probe LoRA params
    total_trainable: float  # the same with modules_to_save (the classifier head) counted


class Verdict(BaseModel):
    """The policy's point-estimate verdict and the CI-based non-inferiority verdict, side by side."""

    policy: str
    margin: float
    point: str  # PASS | FAIL | UNDERTRAINED | NOT_RUN
    non_inferiority: str  # PASS | FAIL | INCONCLUSIVE | NOT_RUN
    passed_seeds: int = 0
    n_seeds: int = 0
    required_seeds: int = 0
    worst_delta: float | None = None
    statement: str = ""


class CI(BaseModel):
    low: float
    high: float
    level: float = 0.95
    method: str = ""


class SeedRun(BaseModel):
    seed: int
    run: str  # folder under seed_<s>/
    status: str  # ok | collapsed | skipped_control | not_run | failed
    rank: int | None = None
    rank_pattern: dict[str, int] | None = None
    error: str | None = None  # why, when failed (after its retry)
    params: int | None = None
    trainable_params: int | None = None
    accuracy: float | None = None
    validation_accuracy: float | None = None
    delta_vs_probe: float | None = None
    mcnemar_p: float | None = None
    ci: CI | None = None


class VariantReport(BaseModel):
    method: str  # train | truncate
    status: str  # ok | skipped_control | not_run | failed (every seed's run failed)
    rank: int | None = None  # when uniform and equal across seeds
    rank_pattern: dict[str, int] | None = None  # when per-layer (first seed's; per seed below)
    params: float | None = None  # LoRA-only, mean over seeds
    trainable_params: float | None = None
    accuracy: float | None = None
    validation_accuracy: float | None = None
    delta_vs_probe: float | None = None  # mean over seeds
    ci: CI | None = None  # crossed items×seeds CI of the mean Δ
    param_reduction: ParamReduction | None = None
    verdict: Verdict
    per_seed: list[SeedRun] = Field(default_factory=list)
    note: str = ""


class ProbeReport(BaseModel):
    rank: int
    alpha: float
    params: int
    trainable_params: int
    accuracy: float  # mean over seeds, on the verdict split
    validation_accuracy: float | None = None
    utilization_mean: float
    energy_rank_90_p50: float
    energy_rank_90_p90: float
    suggestions: dict[str, Any]
    gate: dict[str, Any]
    per_seed: list[SeedRun] = Field(default_factory=list)
    concentration: dict[str, Any] = Field(default_factory=dict)  # seed → the probe audit's Concentration


class Summary(BaseModel):
    validated: str  # "k/n": variants shown non-inferior (Holm across variants) / variants evaluated
    best_compression: str | None = None  # the most compressed of those
    point_rule_validated: str = ""  # upstream-compatible: variants passing the policy's point rule
    point_rule_best: str | None = None
    selection: str = ""
    validation_level: str
    undertrained_seeds: list[int] = Field(default_factory=list)
    failed_runs: dict[str, str] = Field(default_factory=dict)  # "seed_<s>/<run>" → why, after a retry
    smoke: bool = False
    recommendation: str = ""


class BenchReport(BaseModel):
    schema_: str = Field(REPORT_SCHEMA, alias="schema")
    bench_version: str
    timestamp: str
    git_commit: str | None = None
    env: dict[str, str]
    model: dict[str, Any]
    task: dict[str, Any]
    protocol: dict[str, Any]
    probe: ProbeReport
    compressed: dict[str, VariantReport]
    summary: Summary

    model_config = {"populate_by_name": True}

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_commit() -> str | None:
    """The source tree's commit, if the package runs from a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def env_versions(device: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    env = {"python": platform.python_version(), "platform": platform.platform(), "device": device}
    for pkg in ("gradience", "torch", "transformers", "peft", "datasets", "numpy"):
        try:
            env[pkg] = version(pkg)
        except PackageNotFoundError:
            env[pkg] = "not installed"
    import torch

    env["torch_threads"] = str(torch.get_num_threads())
    return env


def validation_level(n_seeds: int, steps: int) -> str:
    """SPEC §5: certifiable needs ≥ 3 seeds and ≥ 500 steps."""
    if n_seeds == 1:
        return "screening"
    return "certifiable" if n_seeds >= 3 and steps >= 500 else "screening_plus"


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _probe_report(run: Any) -> ProbeReport:
    cfg = run.cfg
    first = run.seeds[0]
    summaries = [o.audit.summary for o in run.seeds if o.audit is not None]

    def audit_mean(key: str) -> float:  # over seeds: each seed's probe has its own spectrum
        return _mean([float(getattr(x, key)) for x in summaries]) or 0.0

    per_seed = [
        SeedRun(
            seed=o.seed, run=o.probe.spec.name, status="ok", rank=cfg.lora.probe_r, params=o.probe.lora_params,
            trainable_params=o.probe.trainable_params, accuracy=o.probe.eval["eval"].value,
            validation_accuracy=o.probe.eval["beside"].value if "beside" in o.probe.eval else None,
        )
        for o in run.seeds
    ]  # fmt: skip
    vals = [p.validation_accuracy for p in per_seed if p.validation_accuracy is not None]
    return ProbeReport(
        rank=cfg.lora.probe_r, alpha=cfg.lora.alpha, params=first.probe.lora_params or 0,
        trainable_params=first.probe.trainable_params or 0,
        accuracy=_mean([p.accuracy for p in per_seed if p.accuracy is not None]) or 0.0,
        validation_accuracy=_mean(vals), utilization_mean=audit_mean("utilization_mean"),
        energy_rank_90_p50=audit_mean("energy_rank_90_p50"), energy_rank_90_p90=audit_mean("energy_rank_90_p90"),
        suggestions={str(o.seed): _suggestions(o.audit) for o in run.seeds if o.audit is not None},
        gate={"threshold": cfg.compression.probe_gate, "by_seed": {str(o.seed): o.gate for o in run.seeds}},
        per_seed=per_seed,
        concentration={str(o.seed): o.audit.concentration.model_dump(mode="json")
                       for o in run.seeds if o.audit is not None and o.audit.concentration is not None},
    )  # fmt: skip


def _suggestions(audit: AuditReport) -> dict[str, Any]:
    sugg = audit.suggestions
    return {
        "uniform_median": sugg.uniform_median.rank,
        "uniform_p90": sugg.uniform_p90.rank,
        "per_layer": sugg.per_layer.rank_pattern,
    }


def _variant_report(run: Any, name: str, judged: Any) -> VariantReport:
    probe_params = run.seeds[0].probe.lora_params or 0
    probe_total = run.seeds[0].probe.trainable_params or 0
    per_seed: list[SeedRun] = []
    method = "truncate" if name.startswith("truncate") else "train"
    note = ""
    for o in run.seeds:
        res = o.variants.get(name)
        if res is None:
            failed = _failure(run, o.seed, name)
            per_seed.append(SeedRun(seed=o.seed, run=failed[0] if failed else "", status="failed" if failed else
                                    "not_run", error=failed[1] if failed else None))  # fmt: skip
            continue
        spec = res.spec
        note = note or spec.note
        same = res.status == "skipped_control"
        src = o.probe if same else res
        sj = judged.per_seed.get(o.seed) if judged else None
        per_seed.append(SeedRun(
            seed=o.seed, run=spec.name, status="collapsed" if judged and o.seed in judged.collapsed else res.status,
            rank=None if spec.rank_pattern else spec.r, rank_pattern=spec.rank_pattern or None,
            params=src.lora_params, trainable_params=src.trainable_params, accuracy=src.eval["eval"].value,
            validation_accuracy=src.eval["beside"].value if "beside" in src.eval else None,
            delta_vs_probe=src.eval["eval"].value - o.probe.eval["eval"].value,
            mcnemar_p=sj.mcnemar_p if sj else None, ci=sj.ci if sj else None,
        ))  # fmt: skip
    done = [p for p in per_seed if p.status not in ("not_run", "failed")]
    statuses = {p.status for p in done} - {"collapsed"} or {"ok"}
    status = "not_run" if not done else ("skipped_control" if statuses == {"skipped_control"} else "ok")
    if not done and any(p.status == "failed" for p in per_seed):
        status = "failed"
    ranks = {p.rank for p in done}
    params = _mean([float(p.params) for p in done if p.params is not None])
    total = _mean([float(p.trainable_params) for p in done if p.trainable_params is not None])
    reduction = None
    if params is not None and total is not None and probe_params and probe_total:
        reduction = ParamReduction(
            lora_only=1 - params / probe_params, total_trainable=1 - total / probe_total
        )
    vals = [p.validation_accuracy for p in done if p.validation_accuracy is not None]
    return VariantReport(
        method=method, status=status, rank=ranks.pop() if len(ranks) == 1 else None,
        rank_pattern=next((p.rank_pattern for p in done if p.rank_pattern), None), params=params,
        trainable_params=total, accuracy=_mean([p.accuracy for p in done if p.accuracy is not None]),
        validation_accuracy=_mean(vals),
        delta_vs_probe=_mean([p.delta_vs_probe for p in done if p.delta_vs_probe is not None]),
        ci=judged.ci if judged else None, param_reduction=reduction,
        verdict=judged.verdict if judged else _not_judged(run, status), per_seed=per_seed, note=note,
    )  # fmt: skip


def _failure(run: Any, seed: int, variant: str) -> tuple[str, str] | None:
    """(run folder, why) if this seed's run of the variant failed after its retry."""
    prefix = f"seed_{seed}/"
    for key, why in run.failed.items():
        folder = key.removeprefix(prefix)
        if key.startswith(prefix) and (folder == variant or folder.startswith(f"{variant}_r")):
            return folder, why
    return None


def _not_judged(run: Any, status: str) -> Verdict:
    label = {"skipped_control": "SKIPPED", "not_run": "NOT_RUN", "failed": "FAILED_TO_RUN"}.get(
        status, "NOT_RUN"
    )
    return Verdict(policy=run.cfg.compression.policy, margin=0.0, point=label, non_inferiority=label)


def build_report(run: Any, judged: dict[str, Any], data: Any) -> BenchReport:
    """Assemble bench.json from the runs and the verdicts; the recommendation is added by the caller."""
    from gradience.bench.tasks import SPLIT_SEED, task_metric

    cfg = run.cfg
    compressed = {v: _variant_report(run, v, judged.get(v)) for v in cfg.compression.variants_to_test}
    candidates = {n: v for n, v in compressed.items() if n not in CONTROLS and v.status == "ok"}
    passing = {n: v for n, v in candidates.items() if v.verdict.point == "PASS" and v.param_reduction}
    better = 1.0 if task_metric(cfg.task).higher_is_better else -1.0  # ties: the better metric value

    def most_compressed(names: Any) -> str | None:
        return max(names, key=lambda n: (compressed[n].param_reduction.lora_only, better * (compressed[n].accuracy or 0)),
                   default=None)  # type: ignore[union-attr]  # fmt: skip

    from gradience.verdicts import SELECTION, holm, load_policy

    policy = load_policy(cfg.compression.policy)
    alpha = (1 - policy.confidence) / 2  # the one-sided level of each non-inferiority test
    accepted = holm({n: judged[n].noninferiority_p for n in candidates if n in judged
                     and compressed[n].param_reduction}, alpha)  # fmt: skip
    margin = cfg.compression.acc_tolerance if cfg.compression.acc_tolerance is not None else policy.margin
    t = cfg.task
    return BenchReport(
        bench_version=cfg.bench_version, timestamp=now_iso(), git_commit=git_commit(),
        env=env_versions(cfg.runtime.device), model={"name": cfg.model.name, "path": run.model_path},
        task={
            "name": t.source_name, "source": data.source, "type": t.type,
            "text_fields": t.text_fields, "label_field": t.label_field, **task_metric(t).to_json(),
            "labels": data.label_names or None, "data_fingerprint": data.fingerprint,
            "eval_split": data.eval.name, "eval_items": len(data.eval),
            "beside_items": len(data.beside) if data.beside else 0, "train_items": len(data.train),
            "heldout_split_seed": SPLIT_SEED,
        },
        protocol={
            "seeds": cfg.seeds, "max_steps": cfg.train.max_steps, "lr": cfg.train.lr,
            "batch_size": cfg.train.per_device_train_batch_size, "policy": cfg.compression.policy,
            "margin": margin, "probe_gate": cfg.compression.probe_gate, "smoke": run.opts.smoke,
            "variants_to_test": list(cfg.compression.variants_to_test), "device": cfg.runtime.device,
            "use_rslora": cfg.lora.use_rslora, "target_modules": cfg.lora.target_modules,
        },
        probe=_probe_report(run), compressed=compressed,
        summary=Summary(
            validated=f"{len(accepted)}/{len(candidates)}", best_compression=most_compressed(accepted),
            point_rule_validated=f"{len(passing)}/{len(candidates)}", point_rule_best=most_compressed(passing),
            selection=SELECTION,
            validation_level=validation_level(len(cfg.seeds), cfg.train.max_steps),
            undertrained_seeds=[o.seed for o in run.seeds if o.gate != "PASSED"], smoke=run.opts.smoke,
            failed_runs=dict(run.failed),
        ),
    )  # fmt: skip
