"""Trustworthy verdicts: policies, paired statistics, non-inferiority, and a seeds/eval-items planner.

A pure library (numpy, scipy, pydantic, pyyaml); it imports nothing else of ``gradience``.
Accuracies and margins are fractions (0.025 = 2.5 points), except for continuous metrics
(``judge_continuous``, ``plan(item_sd=...)``), whose margins are in the metric's units. Bad input raises
``PolicyError`` (a ``ValueError``); the CLI prints its one-line message and exits 2.

Public API (what the bench calls)::

    policy = load_policy("safe_uniform")          # or "noninferiority", or a YAML path
    policy = policy.with_margin(0.03)             # a config's acc_tolerance overrides the margin

    compare_seed(probe_correct, variant_correct, *, margin=0.025, confidence=0.95,
                 n_boot=2000, seed=0, label=None) -> SeedComparison
        # one seed, same eval items: Δ, Newcombe score CI (bootstrap beside), McNemar exact p,
        # point pass, NI verdict

    judge_variant(pairs, policy="safe_uniform", *, margin=None, n_boot=2000, seed=0,
                  labels=None, seed_sd=None) -> VariantVerdict
        # one distinct seed: NI at best INCONCLUSIVE unless seed_sd (from an earlier bench) is given
        # .noninferiority_p: one-sided p of Δ ≤ −margin, inverting the same interval

    judge_continuous(pairs, policy="safe_uniform", *, margin, higher_is_better, metric=None,
                     units=None, labels=None, seed_sd=None) -> VariantVerdict
        # a continuous per-item metric (mean token NLL: higher_is_better=False): pairs of per-item
        # values; Δ oriented so that positive = variant better; margin (required) and seed_sd in
        # the metric's units; one seed: paired t (N − 1 df) widened by seed_sd; several: the same
        # crossed interval on real d. Same PASS/FAIL/INCONCLUSIVE rule, p, one-seed rule, quorum
        # (the policy's floor read as a multiple of its margin); per_seed: SeedDifference;
        # .outcome = "continuous", .metric, .units, .higher_is_better; no bootstrap, no McNemar

    holm({name: noninferiority_p, ...}, alpha) -> accepted names
        # several variants at once: family-wise false PASS ≤ alpha
        # pairs = [(probe_correct, variant_correct) for each seed], all on the SAME eval items.
        # .passed (the policy's verdict) · .point_estimate_passed (upstream-compatible rule)
        # .noninferiority ("PASS" | "FAIL" | "INCONCLUSIVE") · .k_passed · .k_required · .n_seeds
        # .validated ("k/n") · .mean_delta · .ci_low · .ci_high · .worst_delta · .per_seed
        # .explanation (plain language, says when the data cannot tell the margin apart)

    plan(margin, power, baseline_acc=None, discordance=0.10, seed_sd=None, eval_items=None,
         n_seeds=None, confidence=None, *, policy=None, item_share=None, item_sd=None) -> PlanResult
        # seeds × eval items for a target power; a budget's power and false-PASS rates.
        # margin=None / confidence=None: from the policy (a bench config's numbers: the caller's).
        # 0/1 metrics: baseline_acc required, seed_sd defaults to 0.008. Continuous metrics:
        # item_sd (SD of one item's paired difference) instead of discordance/baseline_acc, with
        # margin and seed_sd required in the metric's units.

Every result is a frozen pydantic model; ``.to_json()`` (= ``model_dump(mode="json")``) is
its one serialisation. Randomness comes only from ``numpy.random.default_rng(seed)``.

Verdicts: a seed passes the point-estimate rule when Δ ≥ −margin; the policy passes
when ⌈fraction·n⌉ seeds pass (exact fraction) and the worst seed is ≥ the floor. The
non-inferiority verdict is PASS when the CI of mean Δ lies above −margin, FAIL when
it lies below, INCONCLUSIVE otherwise. Its false-PASS rate at a true loss of exactly the
margin is designed to be (1 − confidence)/2 (2.5% at 95%); over the 144 regimes of
``benchmarks/verdict_calibration.py`` (1–5 seeds, 20–2,000 items) it is at most 4.5%.
"""

from gradience.verdicts.aggregate import (
    CrossedInterval,
    crossed_bootstrap_ci,
    crossed_interval,
    judge_variant,
    verdict_intervals,
)
from gradience.verdicts.continuous import compare_seed_continuous, continuous_intervals, judge_continuous
from gradience.verdicts.errors import PolicyError
from gradience.verdicts.models import (
    BudgetRates,
    DeltaRates,
    PlanResult,
    SeedComparison,
    SeedDifference,
    SeedsRow,
    VariantVerdict,
)
from gradience.verdicts.multiplicity import SELECTION, holm
from gradience.verdicts.paired import compare_seed, mcnemar_exact, noninferiority_label, paired_bootstrap_ci
from gradience.verdicts.planner import (
    known_variance_power,
    ni_pass_probability,
    plan,
    point_rule_pass_probability,
)
from gradience.verdicts.policy import Policy, builtin_policies, load_policy, policy_from_dict
from gradience.verdicts.render import render_estimate, render_plan

__all__ = [
    "SELECTION",
    "BudgetRates",
    "CrossedInterval",
    "DeltaRates",
    "PlanResult",
    "Policy",
    "PolicyError",
    "SeedComparison",
    "SeedDifference",
    "SeedsRow",
    "VariantVerdict",
    "builtin_policies",
    "compare_seed",
    "compare_seed_continuous",
    "continuous_intervals",
    "crossed_bootstrap_ci",
    "crossed_interval",
    "verdict_intervals",
    "holm",
    "judge_continuous",
    "judge_variant",
    "known_variance_power",
    "load_policy",
    "mcnemar_exact",
    "ni_pass_probability",
    "noninferiority_label",
    "paired_bootstrap_ci",
    "plan",
    "point_rule_pass_probability",
    "policy_from_dict",
    "render_estimate",
    "render_plan",
]
