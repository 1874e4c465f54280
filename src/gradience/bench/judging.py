"""Verdicts from per-example predictions: pair each variant with its seed's probe item by item.

The statistics live in ``gradience.verdicts``; this module only gathers the paired
correctness vectors from each run's ``eval.json`` (checking that probe and variant
really saw the same items) and maps the result onto the report's fields.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gradience.bench.report import CI, Verdict


@dataclass
class SeedJudgement:
    mcnemar_p: float | None  # binary metrics only
    ci: CI


@dataclass
class Judgement:
    verdict: Verdict
    ci: CI | None  # None when runs collapsed: a mean over a collapsed run is no estimate
    per_seed: dict[int, SeedJudgement] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)  # the verdicts package's full object
    noninferiority_p: float = 1.0  # for the selection across variants (Holm)
    collapsed: list[int] = field(default_factory=list)  # seeds whose run collapsed


def collapsed(res: Any, split: Any, task: Any) -> bool:
    """A run that learned nothing, by the task's own rule (classification: the majority-class rate
    or a chance-level training loss; tasks without a chance level never collapse)."""
    train_loss = res.train.mean_loss_last_10pct if res.train is not None else None
    return bool(task.collapsed(res.eval["eval"].value, train_loss, split))


def unstable_judgement(vv: Any, bad: list[int], smoke: bool = False) -> Judgement:
    """FAIL (unstable training): the collapse count with its exact interval, and the others' Δ.
    In a smoke run a variant at chance has usually just not learned yet in its few steps."""
    from scipy.stats import binomtest

    n = vv.n_seeds
    ci = binomtest(len(bad), n).proportion_ci(0.95, method="exact")
    deltas = {int(s.label): s.delta for s in vv.per_seed}
    others = ", ".join(f"{100 * d:+.1f}" for s, d in deltas.items() if s not in bad)
    worst = ", ".join(f"{100 * deltas[s]:+.1f}" for s in bad)
    advice = (
        "In a smoke run this usually means the variant had too few steps to learn; the full budget decides."
        if smoke
        else "Not certifiable as configured: lower train.lr or lengthen the warmup, then rerun."
    )
    statement = (
        f"FAIL (unstable training): {len(bad)} of {n} runs collapsed (Δ {worst} points; seeds "
        f"{', '.join(map(str, bad))}); collapse rate {len(bad)}/{n}, exact 95% CI "
        f"[{ci.low:.1%}, {ci.high:.1%}]; "
        + (f"the other seeds' Δ: {others} points. " if others else "no other seed to compare. ")
        + advice
    )
    verdict = Verdict(policy=vv.policy, margin=vv.margin, point="FAIL", non_inferiority="FAIL", passed_seeds=vv.k_passed,
                      n_seeds=n, required_seeds=vv.k_required, worst_delta=vv.worst_delta, statement=statement)  # fmt: skip
    return Judgement(verdict=verdict, ci=None, raw={**vv.to_json(), "collapsed_seeds": bad}, collapsed=bad)


def _eval_split(eval_json: Path) -> dict[str, Any]:
    return json.loads(eval_json.read_text(encoding="utf-8"))["splits"]["eval"]


def correctness(eval_json: Path, ev: dict[str, Any] | None = None) -> tuple[list[int], np.ndarray]:
    """(row ids, per-item outcome) on the verdict split of one run (``ev``: already read): 0/1 as
    booleans for rate metrics, real values otherwise. Files from before per-item outcomes were
    written (classification only) give preds == labels."""
    ev = _eval_split(eval_json) if ev is None else ev
    if "outcomes" not in ev:
        return ev["rows"], np.asarray(ev["preds"]) == np.asarray(ev["labels"])
    values = np.asarray(ev["outcomes"], dtype=np.float64)
    binary = bool(np.isin(values, (0.0, 1.0)).all()) and ev.get("metric", "accuracy") != "nll"
    return ev["rows"], values.astype(bool) if binary else values


def judge_all(run: Any) -> dict[str, Judgement]:
    """One judgement per variant that was evaluated on at least one seed."""
    from gradience.verdicts import load_policy

    cfg = run.cfg
    policy = load_policy(cfg.compression.policy)
    out: dict[str, Judgement] = {}
    for variant in cfg.compression.variants_to_test:
        pairs, labels, bad = [], [], []
        any_trained = False
        for o in run.seeds:
            res = o.variants.get(variant)
            if res is None:
                continue
            seed_dir = run.out_dir / f"seed_{o.seed}"
            rows, probe_ok = correctness(seed_dir / o.probe.spec.name / "eval.json")
            if res.status == "skipped_control":
                var_ok = probe_ok  # the control is the probe itself
            else:
                any_trained = True
                var_rows, var_ok = correctness(seed_dir / res.spec.name / "eval.json")
                if var_rows != rows:
                    raise RuntimeError(f"{variant} seed {o.seed} was evaluated on other items than its probe")
            pairs.append((probe_ok, var_ok))
            labels.append(o.seed)
            split, task = (
                run.data.eval,
                run.data.task,
            )  # a run collapsed where its probe learned: relative failure
            if (
                res.status != "skipped_control"
                and collapsed(res, split, task)
                and not collapsed(o.probe, split, task)
            ):
                bad.append(o.seed)
        if not any_trained:
            continue
        vv = _judge(pairs, policy, cfg, run.data.task.metric, labels)
        if bad:
            out[variant] = unstable_judgement(vv, bad, smoke=bool(getattr(run.opts, "smoke", False)))
            continue
        binary, hib = run.data.task.metric.binary, run.data.task.metric.higher_is_better
        out[variant] = Judgement(
            verdict=Verdict(
                policy=vv.policy, margin=vv.margin, point="PASS" if vv.passed else "FAIL",
                non_inferiority=vv.noninferiority, passed_seeds=vv.k_passed, n_seeds=vv.n_seeds,
                required_seeds=vv.k_required, worst_delta=vv.worst_delta if hib else -vv.worst_delta, statement=vv.explanation,
            ),
            ci=CI(**_raw(vv.ci_low, vv.ci_high, hib), level=vv.confidence, method="items × seeds (crossed)"),
            per_seed={
                int(s.label): SeedJudgement(getattr(s, "mcnemar_p", None),
                                            CI(**_raw(s.ci_low, s.ci_high, hib), level=s.confidence,
                                               method="Newcombe score (paired)" if binary else "paired t"))
                for s in vv.per_seed
            },
            raw=vv.to_json(),
            noninferiority_p=vv.noninferiority_p,
        )  # fmt: skip
    return out


def _judge(pairs: list[Any], policy: Any, cfg: Any, metric: Any, labels: list[int]) -> Any:
    """The verdicts package's judgement for the task's metric: rates by the binary path, real-valued
    outcomes (NLL) by the continuous one with the margin in the metric's units."""
    from gradience.verdicts import judge_continuous, judge_variant

    comp = cfg.compression
    if metric.binary:
        return judge_variant(
            pairs, policy, margin=comp.acc_tolerance, labels=labels, seed=0, seed_sd=comp.seed_sd
        )
    return judge_continuous(pairs, policy, margin=comp.acc_tolerance, higher_is_better=metric.higher_is_better,
                            metric=metric.title, units=metric.unit, labels=labels, seed_sd=comp.seed_sd)  # fmt: skip


def _raw(low: float, high: float, higher_is_better: bool) -> dict[str, float]:
    """The verdicts orient Δ so that positive is better; reports show variant − probe as measured."""
    return {"low": low, "high": high} if higher_is_better else {"low": -high, "high": -low}


def _seed_runs(seed_dir: Path, left_out: list[str]) -> dict[str, Any]:
    """A seed folder's finished runs by folder name (unfinished ones are noted, not read)."""
    from gradience.bench.runs import RunResult

    runs = {}
    for run_dir in sorted(p for p in seed_dir.iterdir() if (p / "eval.json").is_file()):
        if not (run_dir / "result.json").is_file():
            left_out.append(f"{seed_dir.name}/{run_dir.name} (unfinished)")
            continue
        runs[run_dir.name] = RunResult.model_validate_json((run_dir / "result.json").read_text("utf-8"))
    return runs


def paired_results(out_dir: Path) -> tuple[dict[str, list[tuple[np.ndarray, np.ndarray]]], list[str]]:
    """Each variant's per-seed (probe, variant) correctness in a finished bench folder, for
    `bench plan --from`; collapsed runs and untrained controls are left out (and named)."""
    from gradience.bench import BenchInputError

    seed_dirs = sorted(p for p in Path(out_dir).glob("seed_*") if p.is_dir())
    if not seed_dirs:
        raise FileNotFoundError(f"no seed_* run folders (not a finished bench output): {out_dir}")
    by_variant: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    left_out: list[str] = []
    for seed_dir in seed_dirs:
        try:
            runs = _seed_runs(seed_dir, left_out)
            probes = [name for name, r in runs.items() if r.spec.variant == "probe"]
            if len(probes) != 1:
                left_out.append(f"{seed_dir.name} (no single finished probe)")
                continue
            probe_run = seed_dir / probes[0] / "eval.json"
            probe_ev = _eval_split(probe_run)  # read once: correctness and the labels
            if probe_ev.get("metric", "accuracy") == "nll":
                raise BenchInputError(
                    f"{out_dir} judged a real-valued metric (nll): --from estimates rates only; "
                    "pass --item-sd, --seed-sd and --margin in nats instead"
                )
            rows, probe_ok = correctness(probe_run, probe_ev)
            split, task = _collapse_rule(probe_ev)
            if collapsed(runs[probes[0]], split, task):
                left_out.append(f"{seed_dir.name} (its probe collapsed)")
                continue
            for name, res in runs.items():
                if name == probes[0] or res.status != "ok":
                    continue
                var_rows, var_ok = correctness(seed_dir / name / "eval.json")
                if var_rows != rows:
                    raise BenchInputError(
                        f"{seed_dir.name}/{name} was evaluated on other items than its probe"
                    )
                if collapsed(res, split, task):
                    left_out.append(f"{seed_dir.name}/{name} (collapsed)")
                    continue
                by_variant.setdefault(res.spec.variant, []).append((probe_ok, var_ok))
        except (ValueError, KeyError, TypeError) as exc:  # pydantic and JSON errors are ValueErrors
            if isinstance(exc, BenchInputError):
                raise
            raise BenchInputError(
                f"{seed_dir}: not a bench run folder ({type(exc).__name__}: {exc})"
            ) from None
    return by_variant, left_out


def _collapse_rule(ev: dict[str, Any]) -> tuple[Any, Any]:
    """The task rule a finished run's eval.json calls for: classifiers by their labels, others none."""
    from gradience.bench.config import TaskConfig
    from gradience.bench.tasks import Split, make_task

    if ev.get("metric", "accuracy") == "accuracy":
        return Split(ev.get("split", "eval"), ev["rows"], {}, ev["labels"]), make_task(TaskConfig())
    return Split(ev.get("split", "eval"), ev["rows"], {}), make_task(
        TaskConfig(type="causal_lm", metric=ev["metric"])
    )


def estimate_from_bench(out_dir: Path) -> Any:
    """`bench plan --from`: the planner's inputs measured on a finished bench."""
    from gradience.verdicts.estimate import estimate_plan_inputs
    from gradience.verdicts.models import MeasuredPlanInputs

    by_variant, left_out = paired_results(out_dir)
    usable = {k: v for k, v in by_variant.items() if len(v) >= 2}
    left_out += [f"{k} (only {len(v)} usable seed)" for k, v in by_variant.items() if len(v) < 2]
    return MeasuredPlanInputs(source=str(out_dir), left_out=left_out, estimate=estimate_plan_inputs(usable))
