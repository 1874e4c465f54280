"""`bench plan --from`: planner inputs estimated from per-item results, against the simulator's truth."""

from __future__ import annotations

import numpy as np
import pytest

from gradience.verdicts import PolicyError
from gradience.verdicts.estimate import estimate_plan_inputs
from gradience.verdicts.simulate import simulate_correctness


@pytest.mark.parametrize(("item_share", "seed_sd"), [(0.0, 0.015), (1.0, 0.0)])
def test_recovers_item_share_seed_sd_and_discordance_on_average(item_share: float, seed_sd: float) -> None:
    """Where the simulator's item_share is exactly the planner's: independent flips, or the same
    items flipping for every seed (then without seed shifts, which move items across the threshold)."""
    probe, variant = simulate_correctness(
        np.random.default_rng(3),
        60,
        2000,
        5,
        delta=-0.01,
        discordance=0.10,
        seed_sd=seed_sd,
        item_share=item_share,
    )
    est = [
        estimate_plan_inputs({"v": [(probe[r, :, s], variant[r, :, s]) for s in range(5)]}) for r in range(60)
    ]
    assert np.mean([e.item_share for e in est]) == pytest.approx(item_share, abs=0.03)
    assert np.sqrt(np.mean([e.seed_sd**2 for e in est])) == pytest.approx(seed_sd, rel=0.15, abs=1e-9)
    assert np.mean([e.discordance for e in est]) == pytest.approx(0.10, abs=0.003)
    assert np.mean([e.baseline_acc for e in est]) == pytest.approx(0.83, abs=0.003)


def test_pooling_and_per_variant_rows() -> None:
    rng = np.random.default_rng(0)
    a = simulate_correctness(rng, 1, 500, 3, delta=0.0, item_share=1.0)
    b = simulate_correctness(rng, 1, 500, 3, delta=-0.02, discordance=0.2, item_share=0.0)
    pairs = {name: [(p[0, :, s], v[0, :, s]) for s in range(3)] for name, (p, v) in {"a": a, "b": b}.items()}
    est = estimate_plan_inputs(pairs)
    assert [v.variant for v in est.variants] == ["a", "b"]
    assert est.planned_for == "b" and est.discordance == est.variants[1].discordance  # the hardest
    assert est.seed_sd == est.variants[1].seed_sd and est.item_share == est.variants[1].item_share
    assert est.baseline_acc == pytest.approx(np.mean([v.probe_accuracy for v in est.variants]))
    assert est.variants[0].item_share > est.variants[1].item_share


def test_needs_two_seeds_on_the_same_items() -> None:
    p = np.ones(10, bool)
    with pytest.raises(PolicyError, match="at least 2"):
        estimate_plan_inputs({"v": [(p, p)]})
    with pytest.raises(PolicyError, match="different or too few"):
        estimate_plan_inputs({"v": [(p, p), (p[:5], p[:5])]})
    with pytest.raises(PolicyError, match="no variant"):
        estimate_plan_inputs({})
