"""Across seeds: mean Δ with an interval that counts both eval-item sampling and seed variance.

The eval items are shared by every seed (a crossed items × seeds design), so item
sampling error does not average out over seeds. Write d[i, s] = variant − probe
correctness of item i under seed s. With row (item) means r_i, column (seed) means
c_s and the two-way residual mean square MSE, the variance of the grand mean is
estimated without bias by

    Var(mean Δ) = (s²_r − MSE/S)/N      shared-item term, ~N degrees of freedom
                + s²_c/S                 seed term, S−1 degrees of freedom

and the interval is mean ± t_ν·SE with ν from Welch–Satterthwaite. This is the
studentised form of the crossed two-level bootstrap (items resampled jointly for all
seeds, together with the seeds): the plain percentile version of that bootstrap is
also computed and reported, but with 3 seeds it cannot see that the seed variance is
estimated from 3 numbers, and it undercovers when seed variance is large (see
``benchmarks/verdict_calibration.py``); the Satterthwaite t accounts for it. The cost:
when flips differ between seeds, their noise sits in the seed term and its few
degrees of freedom widen the interval (valid, but less powerful than it could be).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from gradience.verdicts.errors import PolicyError
from gradience.verdicts.explain import explain_verdict
from gradience.verdicts.models import NI, VariantVerdict
from gradience.verdicts.paired import (
    as_correctness,
    check_confidence,
    compare_seed,
    newcombe_paired_ci,
    no_discordance_halfwidth,
    noninferiority_label,
)
from gradience.verdicts.policy import Policy, load_policy

Pair = tuple[Sequence[bool] | np.ndarray, Sequence[bool] | np.ndarray]


@dataclass(frozen=True)
class CrossedInterval:
    """Arrays over the batch axes of ``crossed_interval``'s input."""

    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    se: np.ndarray
    item_var: np.ndarray
    seed_var: np.ndarray
    df: np.ndarray
    mse: np.ndarray  # the two-way residual mean square (item × seed), for variance components


def crossed_interval(diff: np.ndarray, confidence: float) -> CrossedInterval:
    """Studentised CI of mean Δ for ``diff[..., item, seed]``, vectorised over ``...``.

    Integer (or bool) input is a 0/1 metric's difference, in {−1, 0, 1}: the path the binary
    verdicts have always taken, number for number. Float input is a continuous metric's
    paired difference: it is centred on its grand mean first (the sums of squares below
    subtract large numbers, and a mean far from 0 would cost digits), and Σd² is summed
    rather than counted. Needs at least 2 items and 2 seeds. Works from row and column sums
    only, so a batch of thousands of simulated experiments costs a few passes over the data.
    Three guards, each chosen by ``benchmarks/verdict_calibration.py``: the variance never
    falls below the within-cell variance over N·S cells (a lower bound on Var(mean Δ) when
    cells sharing an item or a seed are not negatively correlated, so the interval is never
    [0, 0] when flips differ between seeds); the item term's degrees of freedom are at most
    the number of items that differ in some seed, minus 1 (a handful of discordant items is
    a handful of observations, not N); and the seed term's share w of the variance caps ν at
    (S−1)/w instead of Satterthwaite's (S−1)/w², because with 2–4 seed degrees of freedom
    Satterthwaite's ν is lenient (up to 4.3% one-sided at a nominal 2.5% with 3 seeds in the
    study, 3.1% with the cap). With no item differing at all, a 0/1 metric's interval is the
    exact bound on the unseen flip rate; a continuous metric has no such scale, and its
    interval is the point (every difference equal).
    """
    d = np.asarray(diff)
    n_items, n_seeds = d.shape[-2:]
    if n_items < 2 or n_seeds < 2:
        raise PolicyError(f"crossed_interval needs ≥ 2 items and ≥ 2 seeds, got {n_items} × {n_seeds}")
    confidence = check_confidence(confidence)
    informative = np.count_nonzero(d.any(axis=-1), axis=-1).astype(np.float64)
    binary = d.dtype.kind in "biu"
    if binary:
        row = d.sum(axis=-1, dtype=np.int64).astype(np.float64)
        col = d.sum(axis=-2, dtype=np.int64).astype(np.float64)
        sum_sq = np.count_nonzero(d, axis=(-2, -1)).astype(np.float64)  # Σ d² for d ∈ {−1, 0, 1}
    else:
        shift = d.mean(axis=(-2, -1), dtype=np.float64)
        d = d.astype(np.float64) - shift[..., None, None]
        row, col, sum_sq = d.sum(axis=-1), d.sum(axis=-2), np.square(d).sum(axis=(-2, -1))
    n_cells = n_items * n_seeds
    mean = row.sum(axis=-1) / n_cells
    row_ss = (row**2).sum(axis=-1) / n_seeds - n_cells * mean**2
    col_ss = (col**2).sum(axis=-1) / n_items - n_cells * mean**2
    resid_ss = np.maximum(sum_sq - n_cells * mean**2 - row_ss - col_ss, 0.0)
    mse = resid_ss / ((n_items - 1) * (n_seeds - 1))
    s2_rows = np.maximum(row_ss, 0.0) / n_seeds / (n_items - 1)
    s2_cols = np.maximum(col_ss, 0.0) / n_items / (n_seeds - 1)
    item_var = np.maximum(s2_rows - mse / n_seeds, 0.0) / n_items
    seed_var = s2_cols / n_seeds
    floor = np.maximum(sum_sq / n_cells - mean**2, 0.0) / n_cells
    var = np.maximum(item_var + seed_var, floor)
    item_df = np.clip(informative - 1, 1, n_items - 1)
    denom = item_var**2 / item_df + seed_var**2 / (n_seeds - 1)
    df = np.where(denom > 0, var**2 / np.where(denom > 0, denom, 1.0), np.inf)
    share = np.where(var > 0, seed_var / np.where(var > 0, var, 1.0), 0.0)
    df = np.minimum(df, np.where(share > 0, (n_seeds - 1) / np.where(share > 0, share, 1.0), np.inf))
    crit = stats.t.ppf(0.5 + confidence / 2, df)
    half = crit * np.sqrt(var)
    if binary:
        half = np.where(sum_sq == 0, no_discordance_halfwidth(n_items, confidence), half)
    else:
        mean = mean + shift
    return CrossedInterval(mean, mean - half, mean + half, np.sqrt(var), item_var, seed_var, df, mse)


def one_seed_interval(
    low: Any, high: Any, mean: Any, confidence: float, seed_sd: float | None
) -> tuple[Any, Any]:
    """One seed's item interval, widened by an external seed SD: each side grows in quadrature by
    z·seed_sd (the seed effect is independent of item sampling). Elementwise on arrays."""
    if not seed_sd:
        return low, high
    z = float(stats.norm.ppf(0.5 + confidence / 2)) * seed_sd
    return mean - np.hypot(mean - low, z), mean + np.hypot(high - mean, z)


def noninferiority_p(low_at: Callable[[float], float], margin: float) -> float:
    """One-sided p-value of H0: Δ ≤ −margin, by inverting the verdict's own interval: the α at
    which the lower bound of the two-sided (1 − 2α) interval meets −margin, so p < (1 − level)/2
    exactly when that level's verdict is PASS, whatever the interval's form. Found by bisection
    for α in (0, 0.25); p ≥ 0.25 is reported as 1 (no family-wise test at α ≤ 0.25 rejects it)."""
    a_lo, a_hi = 1e-12, 0.25 - 1e-9
    if low_at(1 - 2 * a_lo) > -margin:
        return a_lo
    if low_at(1 - 2 * a_hi) <= -margin:
        return 1.0
    for _ in range(50):
        mid = (a_lo + a_hi) / 2
        if low_at(1 - 2 * mid) > -margin:
            a_hi = mid
        else:
            a_lo = mid
    return a_hi


def decide(
    interval: Callable[[float], tuple[float, float]],
    confidence: float,
    margin: float,
    n_distinct: int,
    seed_sd: float | None,
) -> tuple[float, float, NI, float]:
    """(low, high, verdict, one-sided p) from the verdict's interval at any level: the one
    PASS/FAIL/INCONCLUSIVE rule, for 0/1 and continuous metrics alike (margin in Δ's units)."""
    low, high = interval(confidence)
    ni = noninferiority_label(low, high, margin)
    blind = not can_pass(n_distinct, seed_sd)
    if ni == "PASS" and blind:
        ni = "INCONCLUSIVE"
    p_value = 1.0 if blind else noninferiority_p(lambda conf: interval(conf)[0], margin)
    return low, high, ni, p_value


def distinct_mask(probe: np.ndarray, variant: np.ndarray) -> np.ndarray:
    """keep[d, s]: seed s is the first of its group of identical (probe, variant) columns —
    bit-identical runs are one observation of seed variance, not several."""
    n_seeds = probe.shape[-1]
    keep = np.ones((probe.shape[0], n_seeds), bool)
    for s in range(1, n_seeds):
        for t in range(s):
            same = (probe[:, :, s] == probe[:, :, t]).all(axis=1) & (
                variant[:, :, s] == variant[:, :, t]
            ).all(axis=1)
            keep[:, s] &= ~same
    return keep


def can_pass(n_distinct: np.ndarray | int, seed_sd: float | None) -> np.ndarray | bool:
    """One distinct seed cannot see seed variance: it may PASS only with an external seed SD."""
    return np.asarray(n_distinct) > 1 if not seed_sd else np.ones_like(np.asarray(n_distinct), bool)


def verdict_intervals(
    probe: np.ndarray, variant: np.ndarray, confidence: float, seed_sd: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(low, high, distinct seeds) of the verdict's interval for ``probe/variant[draw, item, seed]``.

    The one implementation ``judge_variant`` and the calibration study both use: identical
    seeds count once; one distinct seed gets Newcombe's interval (widened by ``seed_sd``),
    several the crossed interval; every interval is clipped to Δ's feasible range.
    """
    p, v = np.asarray(probe, bool), np.asarray(variant, bool)
    n_draws, n_items, _ = p.shape
    keep = distinct_mask(p, v)
    low, high = np.empty(n_draws), np.empty(n_draws)
    patterns, which = np.unique(keep, axis=0, return_inverse=True)
    for k, pattern in enumerate(patterns):
        rows, cols = np.flatnonzero(which.ravel() == k), np.flatnonzero(pattern)
        pk, vk = p[rows][:, :, cols], v[rows][:, :, cols]
        if cols.size > 1:
            ci = crossed_interval(vk.astype(np.int8) - pk.astype(np.int8), confidence)
            low[rows], high[rows] = ci.low, ci.high
            continue
        pk, vk = pk[:, :, 0], vk[:, :, 0]
        counts = np.stack([(pk & ~vk).sum(1), (vk & ~pk).sum(1), (pk & vk).sum(1)], axis=1)
        uniq, back = np.unique(counts, axis=0, return_inverse=True)
        bounds = np.array([
            one_seed_interval(*newcombe_paired_ci(b, c, n_items, a, confidence=confidence),
                              (c - b) / n_items, confidence, seed_sd)
            for b, c, a in uniq.tolist()
        ])  # fmt: skip
        low[rows], high[rows] = bounds[back.ravel(), 0], bounds[back.ravel(), 1]
    probe_acc = p.mean(axis=(1, 2))
    return np.maximum(low, -probe_acc), np.minimum(high, 1.0 - probe_acc), keep.sum(axis=1)


def _row_patterns(diff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct item rows (patterns of −1/0/1 across seeds) and how many items share each."""
    n_seeds = diff.shape[1]
    if n_seeds <= 39:  # base-3 codes fit in int64
        weights = 3 ** np.arange(n_seeds, dtype=np.int64)
        codes, counts = np.unique((diff.astype(np.int64) + 1) @ weights, return_counts=True)
        patterns = (codes[:, None] // weights[None, :]) % 3 - 1
        return patterns.astype(np.float64), counts
    patterns, counts = np.unique(diff, axis=0, return_counts=True)
    return patterns.astype(np.float64), counts


def crossed_bootstrap_ci(
    diff: np.ndarray, *, confidence: float, n_boot: int, rng: np.random.Generator
) -> tuple[float, float]:
    """Plain crossed two-level percentile bootstrap: items resampled jointly for all seeds, and seeds.

    Resampling N items with replacement is exactly a multinomial draw over the distinct
    item rows, so the cost depends on the number of distinct rows (≤ 3^S), not on N.
    """
    d = np.asarray(diff)
    n_items, n_seeds = d.shape
    if not d.any():
        half = no_discordance_halfwidth(n_items, confidence)
        return -half, half
    patterns, counts = _row_patterns(d)
    item_counts = rng.multinomial(n_items, counts / n_items, size=n_boot).astype(np.float64)
    seed_counts = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=n_boot)
    means = ((item_counts @ patterns) * seed_counts).sum(axis=1) / (n_items * n_seeds)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def resolve_policy(policy: Policy | str | Path, margin: float | None) -> Policy:
    resolved = policy if isinstance(policy, Policy) else load_policy(policy)
    return resolved if margin is None else resolved.with_margin(margin)


def policy_outcome(pol: Policy, point: dict, n_seeds: int, ni: str, p_value: float) -> dict:
    """The policy's verdict fields from its point rule and the NI verdict: one rule for every outcome
    type (PASS needs the point rule and, when the policy requires it, non-inferiority)."""
    point_passed, k_passed = bool(point["passed"]), int(point["k_passed"])
    return {
        "k_passed": k_passed,
        "k_required": pol.required_passes(n_seeds),
        "validated": f"{k_passed}/{n_seeds}",
        "quorum_met": bool(point["quorum_met"]),
        "floor_met": bool(point["floor_met"]),
        "point_estimate_passed": point_passed,
        "noninferiority": ni,
        "noninferiority_p": p_value,
        "passed": point_passed and (ni == "PASS" or not pol.require_noninferiority),
    }


def judge_variant(
    pairs: Sequence[Pair],
    policy: Policy | str | Path = "safe_uniform",
    *,
    margin: float | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    labels: Sequence[str | int] | None = None,
    seed_sd: float | None = None,
) -> VariantVerdict:
    """Verdict on one variant from per-seed (probe_correct, variant_correct) arrays on shared items.

    ``margin`` overrides the policy's (a bench config's ``acc_tolerance``). With one distinct
    seed the verdict cannot be a non-inferiority PASS unless ``seed_sd`` (seed-to-seed SD of Δ,
    e.g. from an earlier bench) is given. Results are a pure function of the inputs and ``seed``.
    """
    if seed_sd is not None and not (0 <= seed_sd < 1):
        raise PolicyError(f"seed_sd must be in [0, 1) (accuracy units), got {seed_sd}")
    pol = resolve_policy(policy, margin)
    if len(pairs) == 0:
        raise PolicyError("judge_variant needs at least one seed's (probe_correct, variant_correct) pair")
    if labels is not None and len(labels) != len(pairs):
        raise PolicyError(f"{len(labels)} labels for {len(pairs)} seeds")
    try:
        arrays = [
            (as_correctness(p, "probe_correct"), as_correctness(v, "variant_correct")) for p, v in pairs
        ]
    except (TypeError, ValueError) as exc:
        raise PolicyError(f"pairs must be (probe_correct, variant_correct) per seed: {exc}") from None
    sizes = sorted({a.size for pair in arrays for a in pair})
    if len(sizes) != 1:
        raise PolicyError(
            f"seeds were scored on different numbers of items {sizes}: every seed and variant "
            "must be evaluated on the same eval items"
        )
    children = np.random.SeedSequence(seed).spawn(len(arrays) + 1)
    per_seed = [
        compare_seed(
            p,
            v,
            margin=pol.margin,
            confidence=pol.confidence,
            n_boot=n_boot,
            seed=children[i],
            label=None if labels is None else labels[i],
        )
        for i, (p, v) in enumerate(arrays)
    ]
    diff = np.stack([v.astype(np.int8) - p.astype(np.int8) for p, v in arrays], axis=1)
    n_items, n_seeds = diff.shape
    point = pol.point_verdict(diff.sum(axis=0), n_items)  # the upstream rule counts every seed given
    batch_p = np.stack([p for p, _ in arrays], axis=1)[None]
    batch_v = np.stack([v for _, v in arrays], axis=1)[None]
    keep = np.flatnonzero(distinct_mask(batch_p, batch_v)[0]).tolist()  # identical seeds count once
    distinct = diff[:, keep]

    def interval(confidence: float) -> tuple[float, float]:
        """The verdict's interval at any level, clipped to Δ's feasible range."""
        lo, hi, _ = verdict_intervals(batch_p, batch_v, confidence, seed_sd)
        return float(lo[0]), float(hi[0])

    if len(keep) == 1:
        only = per_seed[keep[0]]
        mean = only.delta
        item_se = float(np.sqrt(diff[:, keep[0]].var(ddof=1) / n_items))
        seed_se, df = float(seed_sd or 0.0), None
        se = float(np.hypot(item_se, seed_se))
        boot_low, boot_high = only.bootstrap_ci_low, only.bootstrap_ci_high
    else:
        ci = crossed_interval(distinct, pol.confidence)
        mean = float(ci.mean)
        item_se, seed_se, df = float(np.sqrt(ci.item_var)), float(np.sqrt(ci.seed_var)), float(ci.df)
        df = None if not np.isfinite(df) else df
        se = float(ci.se)  # never below the within-cell floor
        boot_low, boot_high = crossed_bootstrap_ci(
            distinct, confidence=pol.confidence, n_boot=n_boot, rng=np.random.default_rng(children[-1])
        )
    low, high, ni, p_value = decide(interval, pol.confidence, pol.margin, len(keep), seed_sd)
    fields = dict(
        policy=pol.name,
        margin=pol.margin,
        confidence=pol.confidence,
        worst_seed_floor=pol.worst_seed_floor,
        n_seeds=n_seeds,
        n_distinct_seeds=len(keep),
        seed_sd_given=seed_sd,
        n_items=n_items,
        **policy_outcome(pol, point, n_seeds, ni, p_value),
        mean_delta=mean,
        ci_low=low,
        ci_high=high,
        se=se,
        item_se=item_se,
        seed_se=seed_se,
        df=df,
        bootstrap_ci_low=boot_low,
        bootstrap_ci_high=boot_high,
        worst_delta=min(s.delta for s in per_seed),
        mean_discordance=float(np.mean([s.discordance for s in per_seed])),
        per_seed=per_seed,
    )
    return VariantVerdict(**fields, explanation=explain_verdict(fields, pol))
