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
    mcnemar_p: float
    ci: CI


@dataclass
class Judgement:
    verdict: Verdict
    ci: CI
    per_seed: dict[int, SeedJudgement] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)  # the verdicts package's full object


def correctness(eval_json: Path) -> tuple[list[int], np.ndarray]:
    """(row ids, 0/1 correct per item) on the verdict split of one run."""
    ev = json.loads(eval_json.read_text(encoding="utf-8"))["splits"]["eval"]
    return ev["rows"], np.asarray(ev["preds"]) == np.asarray(ev["labels"])


def judge_all(run: Any) -> dict[str, Judgement]:
    """One judgement per variant that was evaluated on at least one seed."""
    from gradience.verdicts import judge_variant, load_policy

    cfg = run.cfg
    policy = load_policy(cfg.compression.policy)
    out: dict[str, Judgement] = {}
    for variant in cfg.compression.variants_to_test:
        pairs, labels = [], []
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
        if not any_trained:
            continue
        vv = judge_variant(pairs, policy, margin=cfg.compression.acc_tolerance, labels=labels, seed=0,
                           seed_sd=cfg.compression.seed_sd)  # fmt: skip
        out[variant] = Judgement(
            verdict=Verdict(
                policy=vv.policy, margin=vv.margin, point="PASS" if vv.passed else "FAIL",
                non_inferiority=vv.noninferiority, passed_seeds=vv.k_passed, n_seeds=vv.n_seeds,
                required_seeds=vv.k_required, worst_delta=vv.worst_delta, statement=vv.explanation,
            ),
            ci=CI(low=vv.ci_low, high=vv.ci_high, level=vv.confidence, method="items × seeds (crossed)"),
            per_seed={
                int(s.label): SeedJudgement(s.mcnemar_p, CI(low=s.ci_low, high=s.ci_high, level=s.confidence,
                                                            method="paired bootstrap"))
                for s in vv.per_seed
            },
            raw=vv.to_json(),
        )  # fmt: skip
    return out
