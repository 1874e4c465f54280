"""Per-seed paired statistics: probe and variant scored on the same eval items.

Pairing matters: most items are right (or wrong) for both models, so only the
discordant items carry information about Δ. The verdict's interval is Newcombe's hybrid
score interval for paired proportions, valid at small counts and when one discordant
cell is empty (where a percentile bootstrap collapses onto 0). The paired bootstrap is
reported beside it: because each item's difference is −1, 0 or +1, resampling n items
is exactly a multinomial draw of the three counts, which makes 10,000 resamples instant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import binomtest, norm

from gradience.verdicts.errors import PolicyError
from gradience.verdicts.models import NI, SeedComparison
from gradience.verdicts.policy import min_count


def as_correctness(values: Sequence[bool] | np.ndarray, what: str) -> np.ndarray:
    """A 1-D boolean array from bools or 0/1 numbers; anything else is bad input."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise PolicyError(f"{what} must be a 1-D array of per-item correctness, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if arr.size and (arr.dtype.kind not in "iuf" or not np.all((arr == 0) | (arr == 1))):
        raise PolicyError(f"{what} must hold booleans or 0/1 values")
    return arr.astype(bool)


def check_confidence(confidence: float) -> float:
    if not 0.5 < confidence < 1:
        raise PolicyError(f"confidence must be in (0.5, 1), got {confidence}")
    return float(confidence)


def check_margin(margin: float) -> float:
    if not 0 < margin < 1:
        raise PolicyError(f"margin must be in (0, 1) (accuracy units: 0.025 = 2.5 points), got {margin}")
    return float(margin)


def mcnemar_exact(n_probe_only: int, n_variant_only: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test of the discordant split against 1/2."""
    n = n_probe_only + n_variant_only
    if n == 0:
        return 1.0
    return float(binomtest(min(n_probe_only, n_variant_only), n, 0.5).pvalue)


def no_discordance_halfwidth(n_items: int, confidence: float) -> float:
    """CI half-width when no item differs: the exact (Clopper–Pearson) bound on the flip rate.

    A bootstrap of all-zero differences returns [0, 0], which on 10 items would
    "prove" non-inferiority; bounding the unseen discordance rate keeps that honest.
    """
    return float(1.0 - ((1.0 - confidence) / 2.0) ** (1.0 / n_items))


def wilson_interval(k: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson's score interval for a binomial proportion k/n."""
    z = float(norm.ppf(0.5 + confidence / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_paired_ci(
    n_probe_only: int, n_variant_only: int, n_items: int, n_both_right: int, *, confidence: float
) -> tuple[float, float]:
    """Interval for Δ = variant − probe accuracy on paired items: Newcombe's hybrid score method
    (method 10 of R. G. Newcombe, "Improved confidence intervals for the difference between
    binomial proportions based on paired data", Statistics in Medicine 17:2635–2650, 1998),
    built from both accuracies' Wilson intervals and the φ correlation of the 2×2 table.
    It stays valid when b or c is 0 and at small n; with no discordant item at all it is widened
    to the exact bound on the unseen flip rate, and it never leaves the feasible range of Δ."""
    a, b, c = n_both_right, n_probe_only, n_variant_only
    d = n_items - a - b - c
    p1, p2 = (a + b) / n_items, (a + c) / n_items
    l1, u1 = wilson_interval(a + b, n_items, confidence)
    l2, u2 = wilson_interval(a + c, n_items, confidence)
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    phi = (a * d - b * c) / math.sqrt(margins) if margins > 0 else 0.0
    delta = p2 - p1
    low = delta - math.sqrt(max((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2, 0.0))
    high = delta + math.sqrt(max((u2 - p2) ** 2 - 2 * phi * (u2 - p2) * (p1 - l1) + (p1 - l1) ** 2, 0.0))
    if b + c == 0:
        half = no_discordance_halfwidth(n_items, confidence)
        low, high = min(low, -half), max(high, half)
    return max(low, -p1), min(high, 1.0 - p1)


def paired_bootstrap_ci(
    n_probe_only: int,
    n_variant_only: int,
    n_items: int,
    *,
    confidence: float,
    n_boot: int,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """Percentile CI of Δ from resampling the n items with replacement (as multinomial counts)."""
    if n_probe_only + n_variant_only == 0:
        half = no_discordance_halfwidth(n_items, confidence)
        return -half, half
    probs = np.array([n_probe_only, n_variant_only, n_items - n_probe_only - n_variant_only], float) / n_items
    counts = rng.multinomial(n_items, probs, size=n_boot)
    deltas = (counts[:, 1] - counts[:, 0]) / n_items
    alpha = 1.0 - confidence
    low, high = np.quantile(deltas, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def noninferiority_label(ci_low: float, ci_high: float, margin: float) -> NI:
    """PASS when the whole CI is above −margin, FAIL when it is wholly below, else INCONCLUSIVE."""
    if ci_low > -margin:
        return "PASS"
    if ci_high < -margin:
        return "FAIL"
    return "INCONCLUSIVE"


def compare_seed(
    probe_correct: Sequence[bool] | np.ndarray,
    variant_correct: Sequence[bool] | np.ndarray,
    *,
    margin: float = 0.025,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int | np.random.SeedSequence = 0,
    label: str | int | None = None,
) -> SeedComparison:
    """Paired comparison of one seed's variant with its probe on the same eval items."""
    probe = as_correctness(probe_correct, "probe_correct")
    variant = as_correctness(variant_correct, "variant_correct")
    if probe.shape != variant.shape:
        raise PolicyError(f"probe and variant were scored on different items: {probe.size} vs {variant.size}")
    n_items = int(probe.size)
    if n_items < 2:
        raise PolicyError(f"need at least 2 eval items per seed, got {n_items}")
    if n_boot < 100:
        raise PolicyError(f"n_boot must be at least 100, got {n_boot}")
    margin = check_margin(margin)
    confidence = check_confidence(confidence)
    b = int(np.count_nonzero(probe & ~variant))
    c = int(np.count_nonzero(variant & ~probe))
    rng = np.random.default_rng(seed)
    both = int(np.count_nonzero(probe & variant))
    ci_low, ci_high = newcombe_paired_ci(b, c, n_items, both, confidence=confidence)
    boot_low, boot_high = paired_bootstrap_ci(b, c, n_items, confidence=confidence, n_boot=n_boot, rng=rng)
    diff = c - b
    return SeedComparison(
        label=None if label is None else str(label),
        n_items=n_items,
        probe_accuracy=int(probe.sum()) / n_items,
        variant_accuracy=int(variant.sum()) / n_items,
        delta=diff / n_items,
        ci_low=ci_low,
        ci_high=ci_high,
        bootstrap_ci_low=boot_low,
        bootstrap_ci_high=boot_high,
        confidence=confidence,
        margin=margin,
        n_probe_only=b,
        n_variant_only=c,
        discordance=(b + c) / n_items,
        mcnemar_p=mcnemar_exact(b, c),
        passed=bool(diff >= min_count(-margin, n_items)),
        noninferiority=noninferiority_label(ci_low, ci_high, margin),
    )
