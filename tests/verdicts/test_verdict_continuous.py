"""Continuous per-item outcomes: the crossed interval on real d, one seed's paired t, orientation, bad input.

The binary path is checked against a frozen copy of ``crossed_interval`` as it was before real
differences were allowed: every number must stay bit-identical.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from gradience.verdicts import (
    PolicyError,
    VariantVerdict,
    crossed_interval,
    judge_continuous,
    ni_pass_probability,
    plan,
)
from gradience.verdicts.aggregate import can_pass
from gradience.verdicts.continuous import compare_seed_continuous, continuous_intervals
from gradience.verdicts.paired import no_discordance_halfwidth
from gradience.verdicts.simulate import simulate_continuous, simulate_correctness


def _crossed_before(d: np.ndarray, confidence: float) -> tuple[np.ndarray, ...]:
    """``crossed_interval`` for d ∈ {−1, 0, 1} as it stood before continuous outcomes (frozen copy)."""
    n_items, n_seeds = d.shape[-2:]
    row = d.sum(axis=-1, dtype=np.int64).astype(np.float64)
    col = d.sum(axis=-2, dtype=np.int64).astype(np.float64)
    sum_sq = np.count_nonzero(d, axis=(-2, -1)).astype(np.float64)
    informative = np.count_nonzero(d.any(axis=-1), axis=-1).astype(np.float64)
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
    half = np.where(sum_sq == 0, no_discordance_halfwidth(n_items, confidence), crit * np.sqrt(var))
    return mean, mean - half, mean + half, np.sqrt(var), item_var, seed_var, df, mse


@pytest.mark.parametrize("share, items, seeds", [(1.0, 300, 3), (0.3, 50, 5), (0.0, 20, 2)])
def test_binary_crossed_interval_is_bit_identical_to_before(share: float, items: int, seeds: int) -> None:
    probe, variant = simulate_correctness(
        np.random.default_rng(items), 400, items, seeds, delta=-0.01, discordance=0.2, item_share=share
    )
    d = variant.astype(np.int8) - probe.astype(np.int8)
    d[:5] = 0  # no item differs: the exact flip-rate bound
    for conf in (0.95, 0.9):
        ci = crossed_interval(d, conf)
        new = (ci.mean, ci.low, ci.high, ci.se, ci.item_var, ci.seed_var, ci.df, ci.mse)
        for got, want in zip(new, _crossed_before(d, conf), strict=True):
            assert np.array_equal(got, want)


def test_real_path_agrees_with_the_binary_path_on_binary_values() -> None:
    probe, variant = simulate_correctness(np.random.default_rng(3), 50, 200, 3, delta=0.0, item_share=0.5)
    d = variant.astype(np.int8) - probe.astype(np.int8)
    exact, real = crossed_interval(d, 0.95), crossed_interval(d.astype(np.float64), 0.95)
    for name in ("mean", "low", "high", "se", "item_var", "seed_var", "mse"):
        assert getattr(real, name) == pytest.approx(getattr(exact, name), rel=1e-9, abs=1e-15)


def _anova_reference(d: np.ndarray, confidence: float) -> dict[str, float]:
    """Two-way ANOVA without replication, written out cell by cell, and the interval built from it."""
    n, s = d.shape
    grand = d.mean()
    rows, cols = d.mean(axis=1), d.mean(axis=0)
    resid = d - rows[:, None] - cols[None, :] + grand
    mse = (resid**2).sum() / ((n - 1) * (s - 1))
    item = max(0.0, (rows.var(ddof=1) - mse / s) / n)
    seed = cols.var(ddof=1) / s
    var = max(item + seed, ((d - grand) ** 2).mean() / d.size)
    df = var**2 / (item**2 / (n - 1) + seed**2 / (s - 1))
    df = min(df, (s - 1) * var / seed)
    half = stats.t.ppf(0.5 + confidence / 2, df) * np.sqrt(var)
    return dict(mean=grand, item_var=item, seed_var=seed, mse=mse, df=df, low=grand - half, high=grand + half)


def test_real_crossed_interval_matches_a_written_out_anova() -> None:
    """Far-from-zero mean (centring must not lose digits) and a strong seed term."""
    rng = np.random.default_rng(8)
    n, s = 60, 4
    d = 5.0 + rng.normal(0, 0.3, (n, 1)) + rng.normal(0, 0.1, (1, s)) + rng.normal(0, 0.2, (n, s))
    ci = crossed_interval(d, 0.95)
    ref = _anova_reference(d, 0.95)
    for name, want in ref.items():
        assert float(getattr(ci, name)) == pytest.approx(want, rel=1e-9), name


def test_one_seed_is_scipys_paired_t() -> None:
    rng = np.random.default_rng(1)
    probe = rng.lognormal(0, 0.5, 80)
    variant = probe + rng.normal(0.02, 0.1, 80)  # NLL up by 0.02: worse
    s = compare_seed_continuous(probe, variant, margin=0.05, higher_is_better=False)
    ref = stats.ttest_rel(probe, variant).confidence_interval(0.95)  # probe − variant: positive = better
    assert (s.ci_low, s.ci_high) == pytest.approx((ref.low, ref.high), rel=1e-12)
    assert s.delta == pytest.approx(np.mean(probe - variant)) and s.delta < 0
    up = compare_seed_continuous(probe, variant, margin=0.05, higher_is_better=True)
    assert (up.delta, up.ci_low, up.ci_high) == pytest.approx((-s.delta, -s.ci_high, -s.ci_low))


def _nll_pairs(rng: np.random.Generator, n: int, seeds: int, worse_by: float) -> list:
    probe = rng.lognormal(0, 0.5, (n, 1)) + rng.normal(0, 0.02, (n, seeds))
    variant = probe + worse_by + rng.normal(0, 0.05, (n, 1)) + rng.normal(0, 0.05, (n, seeds))
    return [(probe[:, k], variant[:, k]) for k in range(seeds)]


def test_direction_units_and_json() -> None:
    pairs = _nll_pairs(np.random.default_rng(2), 400, 3, worse_by=0.01)
    v = judge_continuous(
        pairs,
        "noninferiority",
        margin=0.05,
        higher_is_better=False,
        metric="NLL",
        units="nats",
        labels=[1, 2, 3],
    )
    assert v.outcome == "continuous" and not v.higher_is_better and v.units == "nats"
    assert v.mean_delta == pytest.approx(np.mean([p - q for p, q in pairs]))
    assert v.mean_delta < 0 and v.noninferiority == "PASS" and v.passed
    assert v.bootstrap_ci_low is None and v.mean_discordance is None and v.df is not None
    assert "For NLL, lower is better" in v.explanation and "nats" in v.explanation
    assert "loses less than 0.05 nats" in v.explanation
    assert VariantVerdict.model_validate(v.to_json()) == v
    assert (v.noninferiority_p < 0.025) == (v.noninferiority == "PASS")
    flipped = judge_continuous(pairs, margin=0.05, higher_is_better=True)
    assert flipped.mean_delta == pytest.approx(-v.mean_delta)
    bad = judge_continuous(
        _nll_pairs(np.random.default_rng(3), 400, 3, 0.2), margin=0.05, higher_is_better=False
    )
    assert bad.noninferiority == "FAIL" and bad.k_passed == 0 and not bad.passed


def test_policy_floor_is_read_in_margins() -> None:
    """safe_uniform's floor is −1 × margin: one seed at −1.5 margins fails it though 2/3 pass."""
    rng = np.random.default_rng(4)
    pairs = [(p, p + shift) for p, shift in zip(rng.normal(0, 1, (3, 500)), (0.0, 0.01, -0.075), strict=True)]
    v = judge_continuous(pairs, "safe_uniform", margin=0.05, higher_is_better=True)
    assert v.worst_seed_floor == pytest.approx(-0.05) and v.k_passed == 2 and v.quorum_met
    assert not v.floor_met and not v.point_estimate_passed
    strict = judge_continuous(pairs, "noninferiority", margin=0.05, higher_is_better=True)
    assert strict.worst_seed_floor == pytest.approx(-0.1) and strict.floor_met


def test_one_seed_needs_an_external_seed_sd() -> None:
    pair = _nll_pairs(np.random.default_rng(5), 2000, 1, 0.0)
    v = judge_continuous(pair, margin=0.05, higher_is_better=False)
    s = v.per_seed[0]
    assert (v.ci_low, v.ci_high) == pytest.approx((s.ci_low, s.ci_high))
    assert v.ci_low > -0.05 and v.noninferiority == "INCONCLUSIVE" and v.noninferiority_p == 1.0
    sd = judge_continuous(pair, margin=0.05, higher_is_better=False, seed_sd=0.01)
    z = stats.norm.ppf(0.975)
    assert sd.ci_low == pytest.approx(s.delta - np.hypot(s.delta - s.ci_low, z * 0.01))
    assert sd.noninferiority == "PASS" and sd.seed_se == 0.01
    twice = judge_continuous([pair[0], pair[0]], margin=0.05, higher_is_better=False)
    assert twice.n_distinct_seeds == 1 and twice.noninferiority == "INCONCLUSIVE"


def test_batch_path_equals_judge_continuous() -> None:
    rng = np.random.default_rng(6)
    for seeds, seed_sd in ((3, None), (1, 0.02)):
        probe, variant = simulate_continuous(
            rng, 4, 150, seeds, delta=-0.03, item_sd=0.3, seed_sd=0.02, skew=-1.0, higher_is_better=False
        )
        low, high, _ = continuous_intervals(probe, variant, 0.95, seed_sd, higher_is_better=False)
        for r in range(4):
            pairs = [(probe[r, :, k], variant[r, :, k]) for k in range(seeds)]
            v = judge_continuous(pairs, margin=0.05, higher_is_better=False, seed_sd=seed_sd)
            assert (v.ci_low, v.ci_high) == pytest.approx((low[r], high[r]), rel=1e-12)


def test_bad_inputs() -> None:
    ok = (np.zeros(10), np.ones(10))
    with pytest.raises(PolicyError, match="margin= in its own units"):
        judge_continuous([ok], margin=None, higher_is_better=True)
    with pytest.raises(PolicyError, match="positive"):
        judge_continuous([ok], margin=-1.0, higher_is_better=True)
    with pytest.raises(PolicyError, match="non-finite"):
        judge_continuous([(np.array([0.0, np.nan, 1.0]), np.zeros(3))], margin=0.1, higher_is_better=True)
    with pytest.raises(PolicyError, match="same eval items"):
        judge_continuous([ok, (np.zeros(9), np.zeros(9))], margin=0.1, higher_is_better=True)
    with pytest.raises(PolicyError, match="at least 2 eval items"):
        judge_continuous([(np.zeros(1), np.zeros(1))], margin=0.1, higher_is_better=True)
    with pytest.raises(PolicyError, match="1-D"):
        judge_continuous([(np.zeros((2, 2)), np.zeros((2, 2)))], margin=0.1, higher_is_better=True)
    with pytest.raises(PolicyError, match="numbers"):
        judge_continuous([(["a", "b"], [1.0, 2.0])], margin=0.1, higher_is_better=True)
    with pytest.raises(PolicyError, match="seed_sd"):
        judge_continuous([ok], margin=0.1, higher_is_better=True, seed_sd=-0.1)
    with pytest.raises(PolicyError, match="at least one seed"):
        judge_continuous([], margin=0.1, higher_is_better=True)


CALIBRATION_DRAWS = 2000  # per cell: Monte Carlo s.e. ≈ 0.35 points at 2.5%, ≈ 0.5 points at 95%


@pytest.mark.parametrize("seeds", [1, 3, 5])
def test_false_pass_and_coverage_by_simulation(seeds: int) -> None:
    """Known true Δ = −margin, NLL-like data (lower is better; item differences with a long left tail,
    skewness −1: a variant that now and then does much worse on an item), 70% of the item noise shared
    by the seeds, seed SD equal to one seed's item SE; one seed is judged with that seed SD given.
    2,000 draws per cell at 20, 100 and 1,000 items: false PASS ≤ 5% (design 2.5%) and two-sided
    coverage within 92–97.5%."""
    margin, item_sd = 0.05, 0.4
    for items in (20, 100, 1000):
        seed_sd = item_sd / np.sqrt(items)
        probe, variant = simulate_continuous(
            np.random.default_rng([seeds, items]), CALIBRATION_DRAWS, items, seeds, delta=-margin,
            item_sd=item_sd, seed_sd=seed_sd, item_share=0.7, skew=-1.0, higher_is_better=False,
        )  # fmt: skip
        given = seed_sd if seeds == 1 else None
        low, high, distinct = continuous_intervals(probe, variant, 0.95, given, higher_is_better=False)
        false_pass = np.mean((low > -margin) & can_pass(distinct, given))
        coverage = np.mean((low <= -margin) & (-margin <= high))
        assert false_pass <= 0.05, (items, false_pass)
        assert 0.92 <= coverage <= 0.975, (items, coverage)


@pytest.mark.parametrize("n_items, n_seeds, share", [(400, 3, 1.0), (200, 5, 0.5)])
def test_planner_with_item_sd_matches_the_engine_by_simulation(
    n_items: int, n_seeds: int, share: float
) -> None:
    model = dict(margin=0.05, item_sd=0.3, seed_sd=0.01, confidence=0.95, item_share=share)
    rng = np.random.default_rng(n_items)
    for delta, tol in ((0.0, 0.04), (-0.05, 0.015)):
        probe, variant = simulate_continuous(
            rng, 1500, n_items, n_seeds, delta=delta, item_sd=0.3, seed_sd=0.01, item_share=share
        )
        low, _, _ = continuous_intervals(probe, variant, 0.95, higher_is_better=True)
        predicted = ni_pass_probability(delta, n_items, n_seeds, **model)
        assert float(np.mean(low > -0.05)) == pytest.approx(predicted, abs=tol), delta


def test_plan_with_item_sd() -> None:
    p = plan(0.05, 0.8, item_sd=0.3, seed_sd=0.01, item_share=1.0)
    assert p.baseline_acc is None and p.discordance is None and p.item_sd == 0.3
    assert p.recommended_seeds == 3 and p.reachable and p.evaluated.power >= 0.8
    model = dict(margin=0.05, item_sd=0.3, seed_sd=0.01, confidence=0.95)
    assert ni_pass_probability(0.0, p.recommended_eval_items - 100, 3, **model) < 0.8
    assert [r.delta for r in p.evaluated.false_pass] == [-0.05, -0.06, -0.07]
    assert p.evaluated.false_pass[0].noninferiority == pytest.approx(0.025, abs=0.006)
    assert any("per-item SD of 0.3" in n for n in p.notes)
    assert (
        plan(0.05, 0.8, item_sd=0.6, seed_sd=0.01, item_share=1.0).recommended_eval_items
        > p.recommended_eval_items
    )
    with pytest.raises(PolicyError, match="margin"):
        plan(None, 0.8, item_sd=0.3, seed_sd=0.01)
    with pytest.raises(PolicyError, match="seed_sd"):
        plan(0.05, 0.8, item_sd=0.3)
    with pytest.raises(PolicyError, match="item_sd"):
        plan(0.05, 0.8, item_sd=0.0, seed_sd=0.01)
    with pytest.raises(PolicyError, match="baseline_acc"):
        plan(0.025, 0.8)


def test_few_skewed_items_are_flagged() -> None:
    rng = np.random.default_rng(9)
    probe = rng.normal(0, 1, (30, 3))
    loss = np.zeros((30, 1))
    loss[:3] = 2.0  # three items much worse, for every seed
    pairs = [(probe[:, s], probe[:, s] - loss[:, 0] + rng.normal(0, 0.01, 30)) for s in range(3)]
    v = judge_continuous(pairs, margin=0.5, higher_is_better=True)
    assert "long tail of losses" in v.explanation
    calm = judge_continuous(
        [(p, p + rng.normal(0, 0.1, 30)) for p, _ in pairs], margin=0.5, higher_is_better=True
    )
    assert "long tail" not in calm.explanation
