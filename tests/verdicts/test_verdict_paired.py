"""Per-seed paired statistics: McNemar by hand, bootstrap CI coverage by simulation, edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from gradience.verdicts import PolicyError, compare_seed, mcnemar_exact, paired_bootstrap_ci


def _pairs(b: int, c: int, both_right: int, both_wrong: int) -> tuple[np.ndarray, np.ndarray]:
    """Arrays with b probe-only, c variant-only, and concordant items, in a shuffled order."""
    probe = np.array([1] * b + [0] * c + [1] * both_right + [0] * both_wrong, bool)
    variant = np.array([0] * b + [1] * c + [1] * both_right + [0] * both_wrong, bool)
    order = np.random.default_rng(0).permutation(probe.size)
    return probe[order], variant[order]


def test_mcnemar_matches_hand_computation() -> None:
    # b = 1, c = 9: two-sided exact p = 2·P(X ≤ 1), X ~ Bin(10, 1/2) = 2·(1 + 10)/1024.
    assert mcnemar_exact(1, 9) == pytest.approx(22 / 1024, rel=1e-12)
    # b = 8, c = 2: 2·(1 + 10 + 45)/1024, symmetric in b and c.
    assert mcnemar_exact(8, 2) == pytest.approx(112 / 1024, rel=1e-12)
    assert mcnemar_exact(5, 5) == pytest.approx(1.0)
    assert mcnemar_exact(0, 0) == 1.0


def test_compare_seed_counts_and_delta() -> None:
    probe, variant = _pairs(b=30, c=10, both_right=400, both_wrong=60)
    s = compare_seed(probe, variant, margin=0.025, seed=1, label=7)
    assert (s.n_items, s.n_probe_only, s.n_variant_only) == (500, 30, 10)
    assert s.probe_accuracy == 430 / 500 and s.variant_accuracy == 410 / 500
    assert s.delta == pytest.approx(-0.04) and s.discordance == pytest.approx(0.08)
    assert s.mcnemar_p == pytest.approx(mcnemar_exact(30, 10))
    assert s.ci_low < s.delta < s.ci_high
    assert s.passed is False and s.label == "7"
    assert s == compare_seed(probe, variant, margin=0.025, seed=1, label=7)  # reproducible
    assert compare_seed(probe.astype(int), variant.astype(float), seed=1) == compare_seed(
        probe, variant, seed=1
    )


def test_bootstrap_agrees_with_naive_index_resampling() -> None:
    """The multinomial shortcut must give the same distribution as resampling item indices."""
    probe, variant = _pairs(b=25, c=12, both_right=380, both_wrong=83)
    d = variant.astype(int) - probe.astype(int)
    rng = np.random.default_rng(3)
    idx = rng.integers(0, d.size, size=(20_000, d.size))
    naive = np.quantile(d[idx].mean(axis=1), [0.025, 0.975])
    fast = paired_bootstrap_ci(25, 12, 500, confidence=0.95, n_boot=20_000, rng=np.random.default_rng(4))
    assert fast == pytest.approx(tuple(naive), abs=0.002)


def test_bootstrap_ci_coverage_by_simulation() -> None:
    """Nominal 95% → 93–97% over 2,000 seeded draws (500 items, 10% discordance, true Δ = −1 point)."""
    rng = np.random.default_rng(2024)
    n_items, lose, win = 500, 0.055, 0.045
    true_delta = win - lose
    covered = 0
    draws = 2000
    for i in range(draws):
        u = rng.random(n_items)
        easy = rng.random(n_items) < 0.83 / 0.9
        probe = (u < lose) | ((u >= lose + win) & easy)
        variant = ((u >= lose) & (u < lose + win)) | ((u >= lose + win) & easy)
        s = compare_seed(probe, variant, n_boot=2000, seed=i)
        covered += s.ci_low <= true_delta <= s.ci_high
    assert 0.93 <= covered / draws <= 0.97, covered / draws


def test_identical_predictions() -> None:
    probe = np.random.default_rng(5).random(2000) < 0.83
    s = compare_seed(probe, probe.copy())
    assert s.delta == 0 and s.mcnemar_p == 1.0 and s.passed and s.discordance == 0
    # No discordant item: the interval is the exact bound on an unseen flip rate, not [0, 0].
    half = 1 - 0.025 ** (1 / 2000)
    assert (s.ci_low, s.ci_high) == pytest.approx((-half, half))
    assert s.noninferiority == "PASS"
    tiny = compare_seed([True] * 10, [True] * 10)
    assert tiny.noninferiority == "INCONCLUSIVE"  # ten agreeing items prove nothing


def test_all_wrong() -> None:
    s = compare_seed(np.zeros(300, bool), np.zeros(300, bool))
    assert s.probe_accuracy == 0 and s.delta == 0 and s.mcnemar_p == 1.0
    lost = compare_seed(np.ones(300, bool), np.zeros(300, bool))
    assert lost.delta == -1 and lost.noninferiority == "FAIL" and not lost.passed
    assert lost.mcnemar_p == pytest.approx(2 * 0.5**300)


@pytest.mark.parametrize(
    "probe, variant, fragment",
    [
        ([True, False], [True], "different items"),
        ([[True, False]], [[True, False]], "1-D"),
        ([0, 2, 1], [0, 1, 1], "0/1"),
        (["a", "b"], ["a", "b"], "0/1"),
        ([True], [True], "at least 2"),
    ],
)
def test_bad_arrays(probe, variant, fragment) -> None:
    with pytest.raises(PolicyError, match=fragment):
        compare_seed(probe, variant)


def test_bad_arguments() -> None:
    p = [True, False, True]
    with pytest.raises(PolicyError, match="margin"):
        compare_seed(p, p, margin=2.5)
    with pytest.raises(PolicyError, match="confidence"):
        compare_seed(p, p, confidence=95)
    with pytest.raises(PolicyError, match="n_boot"):
        compare_seed(p, p, n_boot=5)
