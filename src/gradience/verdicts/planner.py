"""Seeds / eval-items planner: power and false-PASS rates of a budget, analytically.

Model (the eval items are shared by every seed and variant), with v the variance of one item's
paired difference: discordance − Δ² for a 0/1 metric, item_sd² for a continuous one:

    Var(mean Δ) = share·v/N                  item noise common to all seeds: with the same
                                             items flipping for every seed (share = 1, the
                                             default) it does not shrink with seeds
                + (seed_sd² + (1−share)·v/N)/S   per-seed part: training noise plus flips
                                             that differ between seeds

The non-inferiority verdict passes when mean Δ − t_ν·SE > −margin, where SE and ν are
estimated from the data (the per-seed part from S values). Power integrates over the
sampling distribution of that estimate (per-seed part ~ scaled χ²_{S−1}), so it reflects
what 3 seeds really deliver, not the known-variance ideal (reported beside it). Note
that unshared flips land in the per-seed part, which 3 seeds estimate with 2 degrees
of freedom: for 3 seeds, share = 1 is not the pessimistic case. The point-estimate
rule's rates integrate over the common item error (Gauss–Hermite). A continuous metric
(``item_sd``) takes margin, seed SD and item SD in its own units; every item then differs,
so the item term has N − 1 degrees of freedom.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import stats

from gradience.verdicts.errors import PolicyError
from gradience.verdicts.models import BudgetRates, DeltaRates, PlanResult, SeedsRow
from gradience.verdicts.notes import plan_notes
from gradience.verdicts.paired import check_confidence, check_margin
from gradience.verdicts.policy import Policy, load_policy

_MAX_ITEMS = 10_000_000
_FALSE_PASS_OFFSETS = (0.0, 0.005, 0.01)  # accuracy
_FALSE_PASS_SHARES = (0.0, 0.2, 0.4)  # a continuous metric's, as fractions of its margin


@lru_cache(maxsize=256)
def _chi2_nodes(df: int, n: int = 512) -> np.ndarray:
    """Equal-probability nodes of χ²_df/df (midpoint rule on the probability scale)."""
    return stats.chi2.ppf((np.arange(n) + 0.5) / n, df) / df


@lru_cache(maxsize=4)
def _hermite(n: int = 96) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.hermite_e.hermegauss(n)
    return x, w / w.sum()


def item_variance(
    delta: float, n_items: int, discordance: float | None, item_sd: float | None = None
) -> float:
    """Variance of the paired Δ from sampling n items: a continuous metric's item_sd²/n, or a 0/1
    metric's (discordance − Δ²)/n, where a loss Δ needs at least |Δ| discordance."""
    if item_sd is not None:
        return item_sd**2 / n_items
    if discordance is None:
        raise PolicyError("give the discordance (0/1 metrics) or the per-item SD item_sd (continuous)")
    return (max(discordance, abs(delta)) - delta**2) / n_items


def variance_parts(
    delta: float,
    n_items: int,
    *,
    discordance: float | None = None,
    seed_sd: float,
    item_share: float = 1.0,
    item_sd: float | None = None,
) -> tuple[float, float]:
    """(common item variance of mean Δ, variance of one seed's own deviation)."""
    v = item_variance(delta, n_items, discordance, item_sd)
    return item_share * v, seed_sd**2 + (1.0 - item_share) * v


def ni_pass_probability(
    delta: float,
    n_items: int,
    n_seeds: int | None,
    *,
    margin: float,
    discordance: float | None = None,
    seed_sd: float,
    confidence: float,
    item_share: float = 1.0,
    item_sd: float | None = None,
) -> float:
    """P(non-inferiority PASS) at true Δ; ``n_seeds=None`` is the unlimited-seeds limit."""
    a, own = variance_parts(
        delta, n_items, discordance=discordance, seed_sd=seed_sd, item_share=item_share, item_sd=item_sd
    )
    q = 0.5 + confidence / 2
    shift = delta + margin
    if n_seeds == 1:  # one seed cannot see seed variance: the engine never says PASS on its own
        return 0.0
    c = 0.0 if n_seeds is None else own / n_seeds
    if c == 0:  # only the common item term; estimated with N−1 df
        if a == 0:
            return float(shift > 0)
        return float(stats.norm.cdf((shift - stats.t.ppf(q, n_items - 1) * math.sqrt(a)) / math.sqrt(a)))
    assert n_seeds is not None
    c_hat = c * _chi2_nodes(n_seeds - 1)
    floor = item_variance(delta, n_items, discordance, item_sd) / n_seeds  # the engine's within-cell floor
    v_hat = np.maximum(a + c_hat, floor)
    # the engine's item df: items that differ in some seed (flips shared with weight item_share)
    if item_sd is not None:
        informative = float(n_items)  # a real-valued difference is never exactly 0
    else:
        assert discordance is not None
        spread = 1 + (n_seeds - 1) * (1.0 - item_share)
        informative = n_items * (1.0 - (1.0 - max(discordance, abs(delta))) ** spread)
    item_df = min(n_items - 1, max(1.0, informative - 1))
    df = v_hat**2 / (a**2 / item_df + c_hat**2 / (n_seeds - 1))
    df = np.minimum(df, (n_seeds - 1) * v_hat / c_hat)  # the engine's cap (S−1)/w
    crit = stats.t.ppf(q, df)
    return float(stats.norm.cdf((shift - crit * np.sqrt(v_hat)) / math.sqrt(a + c)).mean())


def known_variance_power(
    delta: float,
    n_items: int,
    n_seeds: int,
    *,
    margin: float,
    discordance: float | None = None,
    seed_sd: float,
    confidence: float,
    item_share: float = 1.0,
    item_sd: float | None = None,
) -> float:
    """The textbook normal-test power, as if the variance were known."""
    a, own = variance_parts(
        delta, n_items, discordance=discordance, seed_sd=seed_sd, item_share=item_share, item_sd=item_sd
    )
    se = math.sqrt(a + own / n_seeds)
    return float(stats.norm.cdf((delta + margin) / se - stats.norm.ppf(0.5 + confidence / 2)))


def point_rule_pass_probability(
    delta: float,
    n_items: int,
    n_seeds: int,
    *,
    margin: float,
    k_required: int,
    floor: float | None,
    discordance: float | None = None,
    seed_sd: float,
    item_share: float = 1.0,
    item_sd: float | None = None,
) -> float:
    """P(k of S seeds have Δ_s ≥ −margin and the worst Δ_s ≥ floor); seeds share the common item error."""
    if k_required > n_seeds:
        return 0.0
    a, own = variance_parts(
        delta, n_items, discordance=discordance, seed_sd=seed_sd, item_share=item_share, item_sd=item_sd
    )
    top = -margin if floor is None else max(-margin, floor)
    if own == 0:  # every seed lands on the same value
        return float(stats.norm.sf((top - delta) / math.sqrt(a)))
    x, w = _hermite()
    shared = delta + math.sqrt(a) * x
    own_sd = math.sqrt(own)
    hi = stats.norm.sf((top - shared) / own_sd)
    if floor is None:
        return float(w @ stats.binom.sf(k_required - 1, n_seeds, hi))
    mid = np.maximum(stats.norm.sf((floor - shared) / own_sd) - hi, 0.0)
    total = np.zeros_like(hi)
    for j in range(k_required, n_seeds + 1):
        total += math.comb(n_seeds, j) * hi**j * mid ** (n_seeds - j)
    return float(w @ total)


def _smallest(pred: Callable[[int], bool], lo: int, hi: int) -> int | None:
    """Smallest n in [lo, hi] with pred(n), for pred monotone in n; None when pred(hi) fails."""
    if not pred(hi):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if pred(mid) else (mid + 1, hi)
    return lo


def _smallest_items(pred: Callable[[int], bool], lo: int) -> int | None:
    """Smallest eval set passing ``pred``, where power need not rise forever with items.

    With few seeds, adding items shifts the variance onto the seed term, whose S−1
    degrees of freedom widen the t quantile: power rises, peaks, then falls. A log grid
    finds the first passing size; power rises up to it, so bisection finishes the job.
    """
    grid = np.unique(np.geomspace(lo, _MAX_ITEMS, 48).astype(np.int64))
    prev = lo
    for n in grid:
        if pred(int(n)):
            return _smallest(pred, prev, int(n))
        prev = int(n)
    return None


def _validate_continuous(margin: float | None, power: float, item_sd: float, seed_sd: float | None) -> None:
    """A continuous metric's plan: margin, item SD and seed SD in its units, all stated."""
    if margin is None or not (math.isfinite(margin) and margin > 0):
        raise PolicyError(f"a continuous metric's plan needs margin > 0 in its own units, got {margin}")
    if not 0 < power < 1:
        raise PolicyError(f"power must be in (0, 1), got {power}")
    if not (math.isfinite(item_sd) and item_sd > 0):
        raise PolicyError(f"item_sd must be > 0 (SD of one item's paired difference), got {item_sd}")
    if seed_sd is None or not (math.isfinite(seed_sd) and seed_sd >= 0):
        raise PolicyError(f"a continuous metric's plan needs seed_sd ≥ 0 in its units, got {seed_sd}")


def _validate(
    margin: float, power: float, baseline_acc: float | None, discordance: float, seed_sd: float
) -> None:
    check_margin(margin)
    if not 0 < power < 1:
        raise PolicyError(f"power must be in (0, 1), got {power}")
    if baseline_acc is None:
        raise PolicyError("a 0/1 metric's plan needs baseline_acc (or give item_sd for a continuous metric)")
    if not 0 < baseline_acc < 1:
        raise PolicyError(f"baseline accuracy must be in (0, 1), got {baseline_acc}")
    most = 2 * min(baseline_acc, 1 - baseline_acc)
    if not 0 < discordance <= most:
        raise PolicyError(
            f"discordance must be in (0, {most:.3g}]: at baseline accuracy {baseline_acc} at most that "
            f"fraction of items can flip evenly between probe and variant, got {discordance}"
        )
    if not 0 <= seed_sd < 1:
        raise PolicyError(f"seed_sd must be in [0, 1) (accuracy units), got {seed_sd}")


WORST_CASE_SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)


def plan(
    margin: float | None,
    power: float,
    baseline_acc: float | None = None,
    discordance: float = 0.10,
    seed_sd: float | None = None,
    eval_items: int | None = None,
    n_seeds: int | None = None,
    confidence: float | None = None,
    *,
    policy: Policy | str | Path | None = None,
    min_seeds: int = 3,
    max_seeds: int = 20,
    max_eval_items: int = 20_000,
    round_items_to: int = 100,
    item_share: float | None = None,
    item_sd: float | None = None,
) -> PlanResult:
    """Seeds and eval items that reach ``power`` at true Δ = 0, and a budget's power and false-PASS rates.

    The margin defaults to the policy's (default ``safe_uniform``, whose point-estimate rule
    is evaluated beside the non-inferiority verdict). A bench config's numbers are the
    caller's to pass: this package never parses bench configs. With neither
    seeds nor items fixed, it recommends the fewest seeds ≥ ``min_seeds`` (training runs
    are the expensive part) whose eval set is ≤ ``max_eval_items``, rounded up.
    ``item_share`` is the fraction of item noise common to all seeds (1: the same items
    flip for every seed; 0: each seed flips its own). Unknown (None, the default), the plan
    must hold whatever it is: a budget counts as reaching the power only if it does at every
    share in WORST_CASE_SHARES, and the budget's rates are reported at the share where its
    power is lowest.

    A continuous metric: give ``item_sd`` (SD of one item's paired difference, as a pilot's
    per-item differences show it) instead of ``discordance`` and ``baseline_acc``; then
    ``margin`` and ``seed_sd`` are required, in the metric's units (defaults are accuracy).
    """
    pol = policy if isinstance(policy, Policy) else load_policy(policy or "safe_uniform")
    confidence = check_confidence(pol.confidence if confidence is None else confidence)
    continuous = item_sd is not None
    if continuous:
        _validate_continuous(margin, power, item_sd, seed_sd)
        baseline_acc, disc = None, None
        offsets = tuple(f * margin for f in _FALSE_PASS_SHARES)
    else:
        margin = pol.margin if margin is None else float(margin)
        seed_sd = 0.008 if seed_sd is None else seed_sd
        _validate(margin, power, baseline_acc, discordance, seed_sd)
        disc, offsets = discordance, _FALSE_PASS_OFFSETS
    assert margin is not None and seed_sd is not None
    if eval_items is not None and eval_items < 2:
        raise PolicyError(f"eval_items must be at least 2, got {eval_items}")
    if n_seeds is not None and n_seeds < 1:
        raise PolicyError(f"n_seeds must be at least 1, got {n_seeds}")
    if item_share is not None and not 0 <= item_share <= 1:
        raise PolicyError(f"item_share must be in [0, 1], got {item_share}")
    shares = WORST_CASE_SHARES if item_share is None else (item_share,)
    base = dict(margin=margin, discordance=disc, seed_sd=seed_sd, confidence=confidence, item_sd=item_sd)

    def reaches(n_items: int, seeds: int | None) -> bool:
        return all(ni_pass_probability(0.0, n_items, seeds, **base, item_share=s) >= power for s in shares)

    floor_items = _smallest(lambda n: reaches(n, None), 2, _MAX_ITEMS)
    if floor_items is None:
        raise PolicyError(f"power {power} is out of reach even with {_MAX_ITEMS:,} eval items")

    def items_for(seeds: int) -> int | None:
        return _smallest_items(lambda n: reaches(n, seeds), floor_items)

    by_seeds = [SeedsRow(n_seeds=s, eval_items_needed=items_for(s)) for s in range(2, 11)]
    rounded = lambda n: int(math.ceil(n / round_items_to) * round_items_to)  # noqa: E731
    rec_seeds, rec_items = n_seeds, eval_items
    if n_seeds is None and eval_items is None:
        rec_seeds = rec_items = None
        for s in range(max(min_seeds, 2), max_seeds + 1):
            need = items_for(s)
            if need is not None and rounded(need) <= max_eval_items:
                rec_seeds, rec_items = s, rounded(need)
                break
    elif n_seeds is None:
        assert eval_items is not None
        rec_seeds = _smallest(lambda s: reaches(eval_items, s), max(min_seeds, 2), 10_000)
    elif eval_items is None:
        need = items_for(n_seeds) if n_seeds >= 2 else None
        rec_items = None if need is None else rounded(need)

    eval_seeds = rec_seeds if rec_seeds is not None else (n_seeds or max(min_seeds, 2))
    eval_n = rec_items
    worst = shares[0]
    if eval_n is not None and len(shares) > 1:  # report the budget where it is weakest
        worst = min(shares, key=lambda s: ni_pass_probability(0.0, eval_n, eval_seeds, **base, item_share=s))
    evaluated = None if eval_n is None else _rates(eval_seeds, eval_n, pol, offsets, **base, item_share=worst)
    result = dict(
        margin=margin,
        target_power=power,
        baseline_acc=baseline_acc,
        discordance=disc,
        item_sd=item_sd,
        seed_sd=seed_sd,
        item_share=worst,
        item_share_worst_case=item_share is None,
        confidence=confidence,
        policy=pol.name,
        given_seeds=n_seeds,
        given_eval_items=eval_items,
        min_eval_items_any_seeds=floor_items,
        by_seeds=by_seeds,
        recommended_seeds=rec_seeds,
        recommended_eval_items=rec_items,
        reachable=evaluated is not None and evaluated.power >= power,
        evaluated=evaluated,
    )
    return PlanResult(**result, notes=plan_notes(result, pol, min_seeds, max_eval_items))


def _rates(
    n_seeds: int,
    n_items: int,
    pol: Policy,
    offsets: tuple[float, ...],
    *,
    margin: float,
    discordance: float | None,
    seed_sd: float,
    confidence: float,
    item_share: float,
    item_sd: float | None,
) -> BudgetRates:
    model = dict(
        margin=margin, discordance=discordance, seed_sd=seed_sd, item_share=item_share, item_sd=item_sd
    )
    floor = pol.worst_seed_floor if item_sd is None else pol.metric_floor(margin)
    rule = dict(model, k_required=pol.required_passes(n_seeds), floor=floor)
    a, own = variance_parts(0.0, n_items, **{k: v for k, v in model.items() if k != "margin"})
    c = own / n_seeds
    df = None if n_seeds == 1 else (a + c) ** 2 / (a**2 / (n_items - 1) + c**2 / (n_seeds - 1))
    false_pass = [
        DeltaRates(
            delta=round(-margin - off, 12 if item_sd is not None else 6),
            noninferiority=ni_pass_probability(
                -margin - off, n_items, n_seeds, confidence=confidence, **model
            ),
            point_rule=point_rule_pass_probability(-margin - off, n_items, n_seeds, **rule),
        )
        for off in offsets
    ]
    return BudgetRates(
        n_seeds=n_seeds,
        eval_items=n_items,
        item_se=math.sqrt(a),
        seed_se=math.sqrt(c),
        se=math.sqrt(a + c),
        df=df,
        power=ni_pass_probability(0.0, n_items, n_seeds, confidence=confidence, **model),
        power_known_variance=known_variance_power(0.0, n_items, n_seeds, confidence=confidence, **model),
        point_rule_power=point_rule_pass_probability(0.0, n_items, n_seeds, **rule),
        false_pass=false_pass,
    )
