"""Several variants at once: NI p-values that invert the verdict's own interval, and Holm's selection."""

from __future__ import annotations

import numpy as np

from gradience.verdicts import holm, judge_variant
from gradience.verdicts.simulate import simulate_correctness


def test_p_value_agrees_with_the_interval_verdict():
    rng = np.random.default_rng(8)
    for delta, seeds in ((0.0, 3), (-0.02, 3), (-0.03, 5), (0.0, 1), (-0.01, 2)):
        probe, variant = simulate_correctness(rng, 6, 800, seeds, delta=delta)
        for d in range(6):
            pairs = [(probe[d, :, s], variant[d, :, s]) for s in range(seeds)]
            for sd in (None, 0.005):
                v = judge_variant(pairs, "safe_uniform", n_boot=200, seed_sd=sd)
                if seeds == 1 and sd is None:
                    assert v.noninferiority_p == 1.0 and v.noninferiority != "PASS"
                    continue
                assert (v.noninferiority_p < 0.025) == (v.noninferiority == "PASS"), (delta, seeds, sd, v)


def test_holm_steps_down():
    assert holm({"a": 0.001, "b": 0.03, "c": 0.004}, 0.025) == [
        "a",
        "c",
    ]  # 0.001 ≤ α/3, 0.004 ≤ α/2, 0.03 > α
    assert holm({"a": 0.001, "b": 0.012, "c": 0.004}, 0.025) == ["a", "c", "b"]
    assert holm({"a": 0.009, "b": 0.001}, 0.025) == ["b", "a"]  # 0.009 ≤ α/1 once b is rejected
    assert holm({"a": 0.02, "b": 0.9}, 0.025) == []  # 0.02 > 0.025/2
    assert holm({}, 0.025) == []


def test_five_variants_all_at_minus_margin_are_picked_at_most_alpha_by_simulation():
    """Five variants that each truly lose the margin (3 seeds × 2,000 items, 10% flips): the chance
    that the bench names any of them stays ≤ 2.5% + Monte Carlo error, while 'any one passes' (what
    picking the best of five unadjusted does) is several times larger."""
    reps, k, margin = 400, 5, 0.025
    rng = np.random.default_rng(2026)
    draws = [simulate_correctness(rng, reps, 2000, 3, delta=-margin) for _ in range(k)]
    picked = any_pass = 0
    for r in range(reps):
        verdicts = {
            f"v{j}": judge_variant([(p[r, :, s], v[r, :, s]) for s in range(3)], "safe_uniform", n_boot=200)
            for j, (p, v) in enumerate(draws)
        }
        picked += bool(holm({n: x.noninferiority_p for n, x in verdicts.items()}, 0.025))
        any_pass += any(x.noninferiority == "PASS" for x in verdicts.values())
    assert picked / reps <= 0.05, picked / reps
    assert any_pass > 2 * max(picked, 1)
