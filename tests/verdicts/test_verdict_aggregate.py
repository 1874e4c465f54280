"""Across seeds: the crossed-design interval, the verdicts side by side, edge cases, n = 1."""

from __future__ import annotations

import numpy as np
import pytest

from gradience.verdicts import (
    PolicyError,
    VariantVerdict,
    crossed_bootstrap_ci,
    crossed_interval,
    judge_variant,
    load_policy,
    policy_from_dict,
)
from gradience.verdicts.paired import compare_seed, newcombe_paired_ci
from gradience.verdicts.simulate import simulate_correctness

QUORUM_ONLY = policy_from_dict(
    {"name": "two_thirds", "scope": "s", "margin": 0.025, "min_pass_fraction": "2/3"}
)


def _seed_pair(rng: np.random.Generator, n_items: int, lose: int, win: int) -> tuple[np.ndarray, np.ndarray]:
    """One seed's arrays with exactly `lose` probe-only and `win` variant-only items."""
    probe = rng.random(n_items) < 0.83
    variant = probe.copy()
    right, wrong = np.flatnonzero(probe), np.flatnonzero(~probe)
    variant[rng.choice(right, lose, replace=False)] = False
    variant[rng.choice(wrong, win, replace=False)] = True
    return probe, variant


def _reference_variance(d: np.ndarray) -> tuple[float, float]:
    """Two-way ANOVA without replication, written out cell by cell (independent of the library)."""
    n, s = d.shape
    grand = d.mean()
    rows, cols = d.mean(axis=1), d.mean(axis=0)
    resid = d - rows[:, None] - cols[None, :] + grand
    mse = (resid**2).sum() / ((n - 1) * (s - 1))
    item = max(0.0, (np.var(rows, ddof=1) - mse / s) / n)
    return item, np.var(cols, ddof=1) / s


def test_crossed_variance_matches_written_out_anova() -> None:
    probe, variant = simulate_correctness(np.random.default_rng(1), 4, 300, 4, delta=-0.01, item_share=0.6)
    d = variant.astype(np.int8) - probe.astype(np.int8)
    ci = crossed_interval(np.moveaxis(d, 0, 0), 0.95)
    for r in range(4):
        item, seed = _reference_variance(d[r].astype(float))
        assert ci.item_var[r] == pytest.approx(item, rel=1e-9, abs=1e-15)
        assert ci.seed_var[r] == pytest.approx(seed, rel=1e-9)
        assert ci.mean[r] == pytest.approx(d[r].mean())


@pytest.mark.parametrize("item_share", [1.0, 0.3])
def test_crossed_variance_is_unbiased_for_the_spread_of_mean_delta(item_share: float) -> None:
    """Across 3,000 simulated experiments, mean(SE²) ≈ the empirical variance of mean Δ."""
    probe, variant = simulate_correctness(
        np.random.default_rng(7), 3000, 400, 3, delta=-0.01, seed_sd=0.01, item_share=item_share
    )
    ci = crossed_interval(variant.astype(np.int8) - probe.astype(np.int8), 0.95)
    assert np.mean(ci.se**2) == pytest.approx(np.var(ci.mean), rel=0.1)


def test_noninferiority_false_pass_is_controlled_at_the_margin() -> None:
    """True Δ = −margin with strong seed variance and 3 seeds: P(PASS) ≤ 5% (design 2.5%)."""
    probe, variant = simulate_correctness(
        np.random.default_rng(11), 3000, 1000, 3, delta=-0.025, seed_sd=0.015
    )
    ci = crossed_interval(variant.astype(np.int8) - probe.astype(np.int8), 0.95)
    assert np.mean(ci.low > -0.025) <= 0.05


def test_batch_path_equals_judge_variant() -> None:
    probe, variant = simulate_correctness(np.random.default_rng(3), 5, 500, 3, delta=-0.005)
    d = variant.astype(np.int8) - probe.astype(np.int8)
    ci = crossed_interval(d, 0.95)
    pol = load_policy("safe_uniform")
    point = pol.point_verdict(d.sum(axis=1), 500)
    for r in range(5):
        v = judge_variant([(probe[r, :, s], variant[r, :, s]) for s in range(3)], pol)
        assert (v.ci_low, v.ci_high) == pytest.approx((ci.low[r], ci.high[r]), rel=1e-12)
        assert v.point_estimate_passed == bool(point["passed"][r])


def test_crossed_bootstrap_matches_naive_resampling_of_items_and_seeds() -> None:
    probe, variant = simulate_correctness(np.random.default_rng(5), 1, 400, 3, delta=-0.01, item_share=0.5)
    d = (variant[0].astype(int) - probe[0].astype(int)).astype(float)
    rng = np.random.default_rng(9)
    b = 20_000
    items = rng.integers(0, 400, size=(b, 400))
    seeds = rng.integers(0, 3, size=(b, 3))
    col_means = np.stack([d[items[i]].mean(axis=0) for i in range(b)])  # (b, 3) per-seed means
    naive = np.quantile(np.take_along_axis(col_means, seeds, axis=1).mean(axis=1), [0.025, 0.975])
    fast = crossed_bootstrap_ci(d.astype(np.int8), confidence=0.95, n_boot=b, rng=np.random.default_rng(2))
    assert fast == pytest.approx(tuple(naive), abs=0.0015)


def test_quorum_two_of_three_with_and_without_the_floor() -> None:
    rng = np.random.default_rng(0)
    pairs = [_seed_pair(rng, 1000, 40, 40), _seed_pair(rng, 1000, 45, 40), _seed_pair(rng, 1000, 70, 40)]
    quorum = judge_variant(pairs, QUORUM_ONLY)
    assert (quorum.k_passed, quorum.k_required, quorum.validated) == (2, 2, "2/3")
    assert quorum.passed and quorum.point_estimate_passed and quorum.floor_met
    safe = judge_variant(pairs, "safe_uniform")
    assert safe.quorum_met and not safe.floor_met and not safe.passed
    assert safe.worst_delta == pytest.approx(-0.03)
    assert "every seed must pass" in safe.explanation


def test_identical_predictions_across_seeds() -> None:
    rng = np.random.default_rng(1)
    pairs = [(p, p.copy()) for p in (rng.random(2000) < 0.83 for _ in range(3))]
    v = judge_variant(pairs, "safe_uniform")
    assert v.mean_delta == 0 and v.worst_delta == 0 and v.passed and v.noninferiority == "PASS"
    assert v.ci_low < 0 < v.ci_high and all(s.mcnemar_p == 1.0 for s in v.per_seed)


def test_all_wrong() -> None:
    zeros = np.zeros(500, bool)
    v = judge_variant([(zeros, zeros)] * 3, "safe_uniform")
    assert v.mean_delta == 0 and v.passed
    collapse = judge_variant([(np.ones(500, bool), zeros)] * 3, "safe_uniform")
    assert collapse.mean_delta == -1 and collapse.noninferiority == "FAIL" and not collapse.passed
    assert collapse.validated == "0/3"


def test_single_seed_cannot_pass_without_an_external_seed_sd() -> None:
    rng = np.random.default_rng(2)
    pair = _seed_pair(rng, 2000, 60, 50)
    v = judge_variant([pair], "safe_uniform")
    assert v.n_seeds == 1 and v.k_required == 1 and v.validated == "1/1" and v.passed  # upstream's rule
    assert (v.ci_low, v.ci_high) == (v.per_seed[0].ci_low, v.per_seed[0].ci_high)
    assert v.ci_low > -v.margin and v.noninferiority == "INCONCLUSIVE"  # items alone would say PASS
    assert v.df is None and v.seed_se == 0 and "One distinct seed" in v.explanation
    sd = judge_variant([pair], "safe_uniform", seed_sd=0.004)
    z = 1.959963984540054
    assert sd.ci_low == pytest.approx(sd.mean_delta - np.hypot(sd.mean_delta - v.ci_low, z * 0.004))
    assert sd.noninferiority == "PASS" and sd.seed_se == 0.004 and "given seed SD" in sd.explanation
    with pytest.raises(PolicyError, match="seed_sd"):
        judge_variant([pair], "safe_uniform", seed_sd=-0.1)


def test_duplicated_seeds_count_once() -> None:
    """The same run listed three times is one seed: no PASS, and the interval is that seed's."""
    rng = np.random.default_rng(5)
    pair = _seed_pair(rng, 2000, 60, 50)
    v = judge_variant([pair, pair, pair], "safe_uniform")
    one = judge_variant([pair], "safe_uniform")
    assert v.n_seeds == 3 and v.n_distinct_seeds == 1 and v.validated == "3/3"
    assert (v.ci_low, v.ci_high, v.noninferiority) == (one.ci_low, one.ci_high, "INCONCLUSIVE")
    assert "bit-identical" in v.explanation
    other = _seed_pair(np.random.default_rng(6), 2000, 60, 50)
    two = judge_variant([pair, other, pair], "safe_uniform")
    assert two.n_distinct_seeds == 2 and two.df is not None


def test_one_empty_discordant_cell_at_tiny_n_is_not_a_pass() -> None:
    """b = 0, c = 1 on 20 items: a percentile bootstrap gives [0, +10] points (a PASS); the
    Newcombe interval reaches far below the margin."""
    probe = np.array([True] * 16 + [False] * 4)
    variant = probe.copy()
    variant[16] = True
    s = compare_seed(probe, variant)
    assert (s.n_probe_only, s.n_variant_only) == (0, 1) and s.bootstrap_ci_low == 0.0
    assert s.ci_low < -0.05 and s.noninferiority == "INCONCLUSIVE"
    v = judge_variant([(probe, variant), (probe, variant[::-1].copy())], "safe_uniform")
    assert v.noninferiority != "PASS"


def test_intervals_never_leave_the_feasible_range() -> None:
    """Δ = variant − probe accuracy lies in [−probe, 1 − probe]: no bound beyond it."""
    probe = np.ones(30, dtype=bool)
    probe[:2] = False  # probe 28/30
    variant = np.zeros(30, dtype=bool)  # a collapsed variant
    s = compare_seed(probe, variant)
    assert s.ci_low >= -28 / 30 - 1e-12 and s.ci_high <= 2 / 30 + 1e-12
    good = compare_seed(probe, probe.copy())
    assert good.ci_high <= 2 / 30 + 1e-12
    v = judge_variant([(probe, probe.copy()), (probe, probe.copy())], "safe_uniform")
    assert v.ci_high <= 2 / 30 + 1e-12


def test_newcombe_interval_covers_at_small_counts() -> None:
    """Coverage by simulation where the bootstrap fails: 20-60 items, 2-10% flips."""
    rng = np.random.default_rng(11)
    for n, p_b, p_c in ((20, 0.02, 0.05), (40, 0.05, 0.05), (60, 0.10, 0.02)):
        hits = 0
        reps = 2000
        for _ in range(reps):
            counts = rng.multinomial(n, [p_b, p_c, 0.8 - p_b, 0.2 - p_c])
            b, c, a = int(counts[0]), int(counts[1]), int(counts[2])
            low, high = newcombe_paired_ci(b, c, n, a, confidence=0.95)
            hits += low <= p_c - p_b <= high
        assert hits / reps >= 0.93, (n, p_b, p_c, hits / reps)


def test_inconclusive_says_the_data_cannot_tell() -> None:
    probe, variant = simulate_correctness(np.random.default_rng(4), 6, 500, 3, delta=-0.01)
    pairs = [(probe[5, :, s], variant[5, :, s]) for s in range(3)]  # one draw: true Δ = −1 point, 500 items
    v = judge_variant(pairs, "safe_uniform")
    assert v.ci_low < -0.025 < v.ci_high
    assert v.point_estimate_passed and v.passed and v.noninferiority == "INCONCLUSIVE"
    assert "cannot tell" in v.explanation and "not evidence of non-inferiority" in v.explanation
    strict = judge_variant(pairs, "noninferiority")
    assert strict.point_estimate_passed and not strict.passed


def test_noninferiority_pass_and_fail() -> None:
    rng = np.random.default_rng(6)
    good = judge_variant([_seed_pair(rng, 3000, 150, 150) for _ in range(4)], "noninferiority")
    assert good.noninferiority == "PASS" and good.passed
    bad = judge_variant([_seed_pair(rng, 3000, 300, 100) for _ in range(4)], "noninferiority")
    assert bad.noninferiority == "FAIL" and not bad.passed and bad.ci_high < -0.025


def test_margin_override_reproducibility_and_json() -> None:
    rng = np.random.default_rng(8)
    pairs = [_seed_pair(rng, 800, 50, 20) for _ in range(3)]  # Δ = −3.75 points
    assert not judge_variant(pairs, "safe_uniform").passed
    wide = judge_variant(pairs, "safe_uniform", margin=0.05, labels=[11, 22, 33], seed=3)
    assert wide.margin == 0.05 and wide.k_passed == 3
    assert [s.label for s in wide.per_seed] == ["11", "22", "33"]
    again = judge_variant(pairs, "safe_uniform", margin=0.05, labels=[11, 22, 33], seed=3)
    assert again == wide
    assert VariantVerdict.model_validate(wide.to_json()) == wide


def test_bad_inputs() -> None:
    rng = np.random.default_rng(9)
    with pytest.raises(PolicyError, match="at least one seed"):
        judge_variant([], "safe_uniform")
    with pytest.raises(PolicyError, match="same eval items"):
        judge_variant([_seed_pair(rng, 500, 5, 5), _seed_pair(rng, 400, 5, 5)], "safe_uniform")
    with pytest.raises(PolicyError, match="labels"):
        judge_variant([_seed_pair(rng, 500, 5, 5)], "safe_uniform", labels=[1, 2])
    with pytest.raises(PolicyError, match="unknown policy"):
        judge_variant([_seed_pair(rng, 500, 5, 5)], "nope")
    with pytest.raises(PolicyError, match="≥ 2 seeds"):
        crossed_interval(np.zeros((10, 1), np.int8), 0.95)


def test_disjoint_flips_are_never_a_zero_width_interval() -> None:
    """25 losses and 25 wins per seed on different items, 500 items, 3 seeds: every seed's Δ is 0
    and the ANOVA item term is negative, so the old estimate was [0, 0] → PASS."""
    n, seeds = 500, 3
    probe = np.zeros(n, bool)
    probe[:250] = True
    pairs = []
    for s in range(seeds):
        variant = probe.copy()
        lose = np.arange(25) + 25 * s  # right for the probe, lost by this seed's variant
        win = 250 + np.arange(25) + 25 * s  # wrong for the probe, won by this seed's variant
        variant[lose], variant[win] = False, True
        pairs.append((probe, variant))
    d = np.stack([v.astype(np.int8) - p.astype(np.int8) for p, v in pairs], axis=1)
    ci = crossed_interval(d, 0.95)
    cell_var = (d != 0).mean() - d.mean() ** 2  # within-cell binomial variance, written out
    assert ci.item_var == 0 and ci.seed_var == 0
    assert float(ci.se) == pytest.approx(np.sqrt(cell_var / d.size))
    assert float(ci.high - ci.low) > 0.02
    v = judge_variant(pairs, "noninferiority", margin=0.01)
    assert v.ci_low < -0.01 and v.noninferiority != "PASS"


def test_item_degrees_of_freedom_count_only_items_that_differ() -> None:
    """A handful of discordant items is a handful of observations: ν ≤ informative items − 1."""
    rng = np.random.default_rng(8)
    probe = rng.random(100) < 0.85
    variant = probe.copy()
    variant[np.flatnonzero(probe)[:4]] = False
    variant[np.flatnonzero(~probe)[:1]] = True
    pairs = []
    for s in range(5):  # a seed-specific extra loss so the seeds are not identical
        v = variant.copy()
        v[np.flatnonzero(probe & variant)[s]] = False
        pairs.append((probe, v))
    d = np.stack([v.astype(np.int8) - p.astype(np.int8) for p, v in pairs], axis=1)
    ci = crossed_interval(d, 0.95)
    assert np.count_nonzero(d.any(axis=1)) == 10 and float(ci.df) <= 9


def test_seed_term_df_is_capped_at_s_minus_1_over_its_share() -> None:
    probe, variant = simulate_correctness(np.random.default_rng(11), 50, 800, 3, delta=0.0, seed_sd=0.02)
    ci = crossed_interval(variant.astype(np.int8) - probe.astype(np.int8), 0.95)
    w = ci.seed_var / ci.se**2
    assert np.all(np.where(w > 0, ci.df * w, 0.0) <= 2 + 1e-9)
    assert np.all(ci.df >= 2 - 1e-9)
