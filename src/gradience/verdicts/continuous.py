"""Verdicts on a continuous per-item metric (mean token NLL, a score): the same crossed design.

Each item's outcome is a real number. Differences are oriented so that Δ > 0 always means
the variant is better: d = variant − probe when higher is better, probe − variant when lower
is better (NLL). Non-inferiority is then Δ > −margin with the margin in the metric's own
units, which the caller must state (a policy's margin is an accuracy fraction). One seed:
the paired t interval of the mean difference (N − 1 df), widened by an external seed SD
exactly as a 0/1 metric's Newcombe interval is; several seeds: ``crossed_interval`` on real
d. Decisions (PASS/FAIL/INCONCLUSIVE, the one-sided p, one seed needing ``seed_sd``, the
point-estimate quorum) are the binary path's own functions. There is no feasible range to
clip to, and no bootstrap beside the interval (its multinomial shortcut needs d ∈ {−1, 0, 1}).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import stats

from gradience.verdicts.aggregate import (
    crossed_interval,
    decide,
    distinct_mask,
    one_seed_interval,
    policy_outcome,
    resolve_policy,
)
from gradience.verdicts.errors import PolicyError
from gradience.verdicts.explain import explain_verdict
from gradience.verdicts.models import SeedDifference, VariantVerdict
from gradience.verdicts.paired import check_confidence, noninferiority_label
from gradience.verdicts.policy import Policy

Values = Sequence[float] | np.ndarray


def as_outcomes(values: Values, what: str) -> np.ndarray:
    """A 1-D float array of finite per-item values; anything else is bad input."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise PolicyError(f"{what} must be a 1-D array of per-item numbers") from None
    if arr.ndim != 1:
        raise PolicyError(f"{what} must be a 1-D array of per-item numbers, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise PolicyError(f"{what} holds {int((~np.isfinite(arr)).sum())} non-finite value(s) (NaN or inf)")
    return arr


def check_metric_margin(margin: float | None) -> float:
    if margin is None:
        raise PolicyError(
            "a continuous metric needs margin= in its own units (a policy's margin is accuracy)"
        )
    if not (math.isfinite(margin) and margin > 0):
        raise PolicyError(f"margin must be a positive number in the metric's units, got {margin}")
    return float(margin)


def check_metric_seed_sd(seed_sd: float | None) -> float | None:
    if seed_sd is not None and not (math.isfinite(seed_sd) and seed_sd >= 0):
        raise PolicyError(f"seed_sd must be ≥ 0 (the metric's units), got {seed_sd}")
    return seed_sd


def oriented(probe: np.ndarray, variant: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Per-item differences with positive = the variant is better."""
    return variant - probe if higher_is_better else probe - variant


def paired_t_interval(d: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, low, high) of the paired t interval for ``d[..., item]``, N − 1 df."""
    n = d.shape[-1]
    mean = d.mean(axis=-1)
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * d.std(axis=-1, ddof=1) / math.sqrt(n)
    return mean, mean - half, mean + half


def continuous_intervals(
    probe: np.ndarray,
    variant: np.ndarray,
    confidence: float,
    seed_sd: float | None = None,
    *,
    higher_is_better: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(low, high, distinct seeds) of the verdict's interval for ``probe/variant[draw, item, seed]``.

    The one implementation ``judge_continuous`` and the calibration both use: identical seeds
    count once; one distinct seed gets the paired t interval (widened by ``seed_sd``), several
    the crossed interval.
    """
    p, v = np.asarray(probe, np.float64), np.asarray(variant, np.float64)
    d = oriented(p, v, higher_is_better)
    keep = distinct_mask(p, v)
    low, high = np.empty(d.shape[0]), np.empty(d.shape[0])
    patterns, which = np.unique(keep, axis=0, return_inverse=True)
    for k, pattern in enumerate(patterns):
        rows, cols = np.flatnonzero(which.ravel() == k), np.flatnonzero(pattern)
        dk = d[rows][:, :, cols]
        if cols.size > 1:
            ci = crossed_interval(dk, confidence)
            low[rows], high[rows] = ci.low, ci.high
        else:
            mean, lo, hi = paired_t_interval(dk[:, :, 0], confidence)
            low[rows], high[rows] = one_seed_interval(lo, hi, mean, confidence, seed_sd)
    return low, high, keep.sum(axis=1)


def compare_seed_continuous(
    probe: Values,
    variant: Values,
    *,
    margin: float,
    higher_is_better: bool,
    confidence: float = 0.95,
    label: str | int | None = None,
) -> SeedDifference:
    """One seed of a continuous metric: mean oriented difference and its paired t interval."""
    p, v = as_outcomes(probe, "probe"), as_outcomes(variant, "variant")
    if p.shape != v.shape:
        raise PolicyError(f"probe and variant were scored on different items: {p.size} vs {v.size}")
    if p.size < 2:
        raise PolicyError(f"need at least 2 eval items per seed, got {p.size}")
    margin, confidence = check_metric_margin(margin), check_confidence(confidence)
    d = oriented(p, v, higher_is_better)
    mean, low, high = (float(x) for x in paired_t_interval(d, confidence))
    return SeedDifference(
        label=None if label is None else str(label),
        n_items=int(p.size),
        probe_mean=float(p.mean()),
        variant_mean=float(v.mean()),
        delta=mean,
        sd=float(d.std(ddof=1)),
        ci_low=low,
        ci_high=high,
        confidence=confidence,
        margin=margin,
        passed=bool(mean >= -margin),
        noninferiority=noninferiority_label(low, high, margin),
    )


def judge_continuous(
    pairs: Sequence[tuple[Values, Values]],
    policy: Policy | str | Path = "safe_uniform",
    *,
    margin: float | None,
    higher_is_better: bool,
    metric: str | None = None,
    units: str | None = None,
    labels: Sequence[str | int] | None = None,
    seed_sd: float | None = None,
) -> VariantVerdict:
    """Verdict on one variant from per-seed (probe_values, variant_values) on shared items.

    ``margin`` (required) and ``seed_sd`` are in the metric's units; ``higher_is_better`` has
    no default, because an NLL judged as higher-is-better would turn the verdict around.
    The policy gives the confidence, quorum and whether non-inferiority is required; its
    floor is read as a multiple of its margin (``Policy.metric_floor``).
    """
    margin, seed_sd = check_metric_margin(margin), check_metric_seed_sd(seed_sd)
    pol = resolve_policy(policy, None)
    if len(pairs) == 0:
        raise PolicyError("judge_continuous needs at least one seed's (probe, variant) pair")
    if labels is not None and len(labels) != len(pairs):
        raise PolicyError(f"{len(labels)} labels for {len(pairs)} seeds")
    try:
        arrays = [(as_outcomes(p, "probe"), as_outcomes(v, "variant")) for p, v in pairs]
    except (TypeError, ValueError) as exc:
        raise PolicyError(f"pairs must be (probe, variant) per-item values per seed: {exc}") from None
    sizes = sorted({a.size for pair in arrays for a in pair})
    if len(sizes) != 1:
        raise PolicyError(
            f"seeds were scored on different numbers of items {sizes}: every seed and variant "
            "must be evaluated on the same eval items"
        )
    per_seed = [
        compare_seed_continuous(
            p, v, margin=margin, higher_is_better=higher_is_better, confidence=pol.confidence,
            label=None if labels is None else labels[i],
        )
        for i, (p, v) in enumerate(arrays)
    ]  # fmt: skip
    batch_p = np.stack([p for p, _ in arrays], axis=1)[None]
    batch_v = np.stack([v for _, v in arrays], axis=1)[None]
    d = oriented(batch_p[0], batch_v[0], higher_is_better)
    n_items, n_seeds = d.shape
    keep = np.flatnonzero(distinct_mask(batch_p, batch_v)[0]).tolist()  # identical seeds count once
    point = pol.point_verdict_values(np.array([s.delta for s in per_seed]), margin)

    def interval(confidence: float) -> tuple[float, float]:
        lo, hi, _ = continuous_intervals(
            batch_p, batch_v, confidence, seed_sd, higher_is_better=higher_is_better
        )
        return float(lo[0]), float(hi[0])

    if len(keep) == 1:
        mean = per_seed[keep[0]].delta
        item_se = per_seed[keep[0]].sd / math.sqrt(n_items)
        seed_se, df = float(seed_sd or 0.0), None
        se = float(np.hypot(item_se, seed_se))
    else:
        ci = crossed_interval(d[:, keep], pol.confidence)
        mean, se = float(ci.mean), float(ci.se)
        item_se, seed_se = float(np.sqrt(ci.item_var)), float(np.sqrt(ci.seed_var))
        df = float(ci.df) if np.isfinite(ci.df) else None
    low, high, ni, p_value = decide(interval, pol.confidence, margin, len(keep), seed_sd)
    fields = dict(
        policy=pol.name,
        outcome="continuous",
        metric=metric,
        units=units,
        higher_is_better=higher_is_better,
        margin=margin,
        confidence=pol.confidence,
        worst_seed_floor=pol.metric_floor(margin),
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
        bootstrap_ci_low=None,
        bootstrap_ci_high=None,
        worst_delta=min(s.delta for s in per_seed),
        mean_discordance=None,
        per_seed=per_seed,
    )
    return VariantVerdict(**fields, explanation=explain_verdict(fields, pol) + _skew_warning(d[:, keep]))


SKEW_ITEMS, SKEW_LIMIT = 100, -1.0


def _skew_warning(d: np.ndarray) -> str:
    """A t interval on a few strongly left-skewed item differences is optimistic: the calibration
    (``benchmarks/continuous_calibration.py``) measured up to 7% false PASS at 20 items, skewness −2."""
    n_items = d.shape[0]
    rows = d.mean(axis=1)
    if n_items >= SKEW_ITEMS or np.ptp(rows) == 0:
        return ""
    skew = float(stats.skew(rows))
    if skew >= SKEW_LIMIT:
        return ""
    return (
        f" The item differences have a long tail of losses (skewness {skew:.1f}) and there are only "
        f"{n_items} items: the interval may be optimistic here; more eval items fix it."
    )
