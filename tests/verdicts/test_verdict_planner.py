"""Planner: the item-sampling floor, the issue's figures, agreement with the engine by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from gradience.verdicts import (
    PolicyError,
    crossed_interval,
    known_variance_power,
    ni_pass_probability,
    plan,
    point_rule_pass_probability,
)
from gradience.verdicts.simulate import simulate_correctness

MODEL = dict(margin=0.025, discordance=0.10, seed_sd=0.008, confidence=0.95)


def test_500_items_power_is_capped_whatever_the_seeds() -> None:
    """SE ≈ 1.4 points from items alone; a 2.5-point margin is 1.77 SE: power stays near one half."""
    assert math.sqrt(0.10 / 500) == pytest.approx(0.0141, abs=1e-4)
    ceiling = stats.norm.cdf(0.025 / math.sqrt(0.10 / 500) - stats.t.ppf(0.975, 499))
    assert ceiling == pytest.approx(0.42, abs=0.01)
    assert ni_pass_probability(0.0, 500, None, **MODEL) == pytest.approx(ceiling, abs=1e-9)
    for seeds in (2, 3, 5, 10, 100, 1000):
        assert 0.25 < ni_pass_probability(0.0, 500, seeds, **MODEL) <= ceiling + 1e-9
        assert known_variance_power(0.0, 500, seeds, **MODEL) < 0.43
    # The "≈ 0.5" is the one-sided 5% reading of the same arithmetic (a 90% two-sided CI).
    assert ni_pass_probability(0.0, 500, None, **(MODEL | {"confidence": 0.90})) == pytest.approx(
        0.55, abs=0.01
    )
    p = plan(0.025, 0.8, 0.83, eval_items=500, item_share=1.0)
    assert p.recommended_seeds is None and not p.reachable and p.min_eval_items_any_seeds > 500
    assert p.evaluated is not None and p.evaluated.power < 0.45


def test_2000_items_3_seeds() -> None:
    closed_form = stats.norm.cdf(0.025 / math.sqrt(0.10 / 2000 + 0.008**2 / 3) - stats.norm.ppf(0.975))
    assert known_variance_power(0.0, 2000, 3, **MODEL) == pytest.approx(closed_form)
    assert closed_form == pytest.approx(0.83, abs=0.015)
    # Estimating the seed variance from 3 seeds (2 df, ν capped at (S−1)/w) costs ~12 points of it.
    assert 0.68 < ni_pass_probability(0.0, 2000, 3, **MODEL) < closed_form


@pytest.mark.parametrize("n_items, n_seeds", [(2000, 3), (872, 5)])
def test_planner_matches_the_engine_by_simulation(n_items: int, n_seeds: int) -> None:
    rng = np.random.default_rng(n_items + n_seeds)
    rates = []
    for delta in (0.0, -0.025):
        probe, variant = simulate_correctness(rng, 1500, n_items, n_seeds, delta=delta)
        ci = crossed_interval(variant.astype(np.int8) - probe.astype(np.int8), 0.95)
        rates.append(float(np.mean(ci.low > -0.025)))
    assert rates[0] == pytest.approx(ni_pass_probability(0.0, n_items, n_seeds, **MODEL), abs=0.04)
    assert rates[1] == pytest.approx(ni_pass_probability(-0.025, n_items, n_seeds, **MODEL), abs=0.015)


@pytest.mark.parametrize("k_required, floor", [(3, -0.025), (2, None), (2, -0.05)])
def test_point_rule_probability_matches_monte_carlo(k_required: int, floor: float | None) -> None:
    """Independent check of the quadrature: draw the shared item error and seed effects directly."""
    rng = np.random.default_rng(k_required)
    delta, n_items, seeds = -0.02, 500, 3
    item = rng.normal(0, math.sqrt((0.10 - delta**2) / n_items), (400_000, 1))
    per_seed = delta + item + rng.normal(0, 0.008, (400_000, seeds))
    ok = (per_seed >= -0.025).sum(axis=1) >= k_required
    if floor is not None:
        ok &= per_seed.min(axis=1) >= floor
    expected = point_rule_pass_probability(
        delta,
        n_items,
        seeds,
        margin=0.025,
        k_required=k_required,
        floor=floor,
        discordance=0.10,
        seed_sd=0.008,
    )
    assert expected == pytest.approx(ok.mean(), abs=0.004)


def test_default_recommendation_is_minimal_and_reaches_the_target() -> None:
    p = plan(0.025, 0.8, 0.83, item_share=1.0)
    assert p.recommended_seeds == 3 and p.recommended_eval_items % 100 == 0
    assert p.reachable and p.evaluated.power >= 0.8
    assert ni_pass_probability(0.0, p.recommended_eval_items - 100, 3, **MODEL) < 0.8
    needed = [row.eval_items_needed for row in p.by_seeds if row.eval_items_needed is not None]
    assert needed == sorted(needed, reverse=True) and min(needed) >= p.min_eval_items_any_seeds
    assert p.by_seeds[0].n_seeds == 2 and p.by_seeds[0].eval_items_needed is None  # 2 seeds: t with 1 df
    fp = p.evaluated.false_pass
    assert [r.delta for r in fp] == [-0.025, -0.03, -0.035]
    assert fp[0].noninferiority == pytest.approx(0.025, abs=0.005)
    assert fp[0].noninferiority > fp[1].noninferiority > fp[2].noninferiority
    assert fp[0].point_rule > 0.1  # the upstream rule passes a truly −2.5-point variant often
    assert any("1,258" in note or "however many seeds" in note for note in p.notes)


def test_fixed_seeds_or_items() -> None:
    by_items = plan(0.025, 0.8, 0.83, eval_items=3000, item_share=1.0)
    assert by_items.recommended_seeds == 4 and by_items.evaluated.eval_items == 3000
    by_seeds = plan(0.025, 0.8, 0.83, n_seeds=5, item_share=1.0)
    assert by_seeds.recommended_eval_items == 1700 and by_seeds.evaluated.n_seeds == 5
    both = plan(0.025, 0.8, 0.83, eval_items=872, n_seeds=5, item_share=1.0)
    assert not both.reachable and 0.5 < both.evaluated.power < 0.7
    one = plan(0.025, 0.8, 0.83, eval_items=2000, n_seeds=1, item_share=1.0)
    assert one.evaluated.false_pass[0].noninferiority == 0 == one.evaluated.power  # one seed never passes
    noisy = plan(0.025, 0.8, 0.83, n_seeds=3, seed_sd=0.03, item_share=1.0)
    assert noisy.recommended_eval_items is None and not noisy.reachable


def test_bad_arguments() -> None:
    with pytest.raises(PolicyError, match="discordance"):
        plan(0.025, 0.8, 0.83, discordance=0.5)
    with pytest.raises(PolicyError, match="power"):
        plan(0.025, 1.5, 0.83)
    with pytest.raises(PolicyError, match="margin"):
        plan(0.0, 0.8, 0.83)
    with pytest.raises(PolicyError, match="eval_items"):
        plan(0.025, 0.8, 0.83, eval_items=1)
    with pytest.raises(PolicyError, match="baseline"):
        plan(0.025, 0.8, 1.0)


def test_unshared_flips_are_a_t_test_with_a_variance_floor() -> None:
    """With no common item noise the verdict is a t-test on per-seed Δ (power: a noncentral t),
    except that the variance never drops below the within-cell floor, which adds a little."""
    for n_items, seeds in ((872, 3), (2000, 5)):
        own = 0.008**2 + 0.10 / n_items
        exact = stats.nct.sf(stats.t.ppf(0.975, seeds - 1), seeds - 1, 0.025 / math.sqrt(own / seeds))
        power = ni_pass_probability(0.0, n_items, seeds, item_share=0.0, **MODEL)
        assert exact <= power < exact + 0.02
    p = plan(0.025, 0.8, 0.83, item_share=0.0)
    assert p.by_seeds[1].eval_items_needed is None and p.recommended_seeds == 4  # 3 seeds: 2 df, never 0.8


def test_planner_matches_the_engine_with_unshared_flips() -> None:
    probe, variant = simulate_correctness(np.random.default_rng(21), 1500, 872, 3, delta=0.0, item_share=0.0)
    ci = crossed_interval(variant.astype(np.int8) - probe.astype(np.int8), 0.95)
    predicted = ni_pass_probability(0.0, 872, 3, item_share=0.0, **MODEL)
    assert float(np.mean(ci.low > -0.025)) == pytest.approx(predicted, abs=0.04)


def test_unknown_item_share_plans_for_the_worst_case() -> None:
    """Without --item-share the plan must hold whatever share of flips the seeds have in common."""
    from gradience.verdicts.planner import WORST_CASE_SHARES, ni_pass_probability

    worst = plan(0.025, 0.8, 0.83)
    best = plan(0.025, 0.8, 0.83, item_share=1.0)
    assert worst.item_share_worst_case and not best.item_share_worst_case
    assert (worst.recommended_seeds, worst.recommended_eval_items) != (
        best.recommended_seeds,
        best.recommended_eval_items,
    )
    seeds, items = worst.recommended_seeds, worst.recommended_eval_items
    powers = [ni_pass_probability(0.0, items, seeds, margin=0.025, discordance=0.10, seed_sd=0.008,
                                  confidence=0.95, item_share=s) for s in WORST_CASE_SHARES]  # fmt: skip
    assert min(powers) >= 0.8 and worst.evaluated.power == pytest.approx(min(powers))
    assert any("worst" in n for n in worst.notes)
