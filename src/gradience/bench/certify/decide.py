"""The decision: one paired comparison, fixed-sequence testing, early stopping, and what n items resolve.

The adapter under test is fixed (no training randomness), so the only uncertainty is which
items were drawn: the item-level paired interval of one "seed" (``verdicts.compare_seed``) is
the whole story. Fixed-sequence testing needs no split of the level: hypothesis j ("candidate j
loses at least the margin") is tested only once every earlier one was rejected, so the first
true null the sequence reaches is the only place an error can happen, and that test runs at
level α. Every rule here works on per-item outcome arrays, so the simulation test runs exactly
the code the command runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from gradience.bench import BenchInputError
from gradience.bench.tasks import Metric
from gradience.verdicts import SeedComparison, compare_seed, known_variance_power

Status = Literal["PASS", "FAIL", "INCONCLUSIVE", "STOPPED", "NOT_TESTED"]
ASSUMED_DISCORDANCE = 0.10  # the planner's default: what share of items a candidate flips
SHOWN_DISCORDANCES = (0.02, 0.05, 0.10)
TARGET_POWER = 0.8


def check_metric(metric: Metric) -> None:
    """The comparison below is for 0/1 outcomes; continuous ones (NLL) need their own interval."""
    if not metric.binary:
        raise BenchInputError(
            f"certify judges per-item 0/1 outcomes; the metric {metric.name!r} is continuous "
            "(its paired verdict lands with the continuous-outcome verdicts): choose a 0/1 metric"
        )


def _good(outcomes: Sequence[float] | np.ndarray, metric: Metric) -> np.ndarray:
    """1 where the item came out well, whichever way the metric points."""
    arr = np.asarray(outcomes, dtype=float) > 0.5
    return arr if metric.higher_is_better else ~arr


def compare(
    original: Sequence[float] | np.ndarray,
    candidate: Sequence[float] | np.ndarray,
    *,
    metric: Metric,
    margin: float,
    confidence: float,
) -> SeedComparison:
    """THE comparison of a candidate with the original on the same items (Δ = candidate − original,
    in the good direction). The one place to switch on ``metric.binary`` when continuous verdicts land."""
    check_metric(metric)
    return compare_seed(
        _good(original, metric), _good(candidate, metric), margin=margin, confidence=confidence, seed=0
    )


def status_of(cmp: SeedComparison) -> Status:
    return cmp.noninferiority


def can_still_pass(
    original: Sequence[float] | np.ndarray,
    seen: Mapping[int, float],
    *,
    metric: Metric,
    margin: float,
    confidence: float,
) -> bool:
    """Whether the candidate could still be shown non-inferior once every item is scored: the
    unseen items are filled with the best outcome they could have and judged by ``compare``.
    False means evaluating further cannot change the answer, so evaluation may stop."""
    best = 1.0 if metric.higher_is_better else 0.0
    filled = np.full(len(original), best)
    for i, value in seen.items():
        filled[i] = value
    return (
        compare(original, filled, metric=metric, margin=margin, confidence=confidence).noninferiority
        == "PASS"
    )


def fixed_sequence(n: int, test: Callable[[int], Status]) -> list[Status]:
    """Test candidates 0, 1, … in order; the first that is not PASS ends the sequence, and the
    rest are never tested (so never evaluated)."""
    statuses: list[Status] = []
    for j in range(n):
        statuses.append(test(j))
        if statuses[-1] != "PASS":
            break
    return statuses + ["NOT_TESTED"] * (n - len(statuses))


def certified_index(statuses: Sequence[Status]) -> int | None:
    """The last candidate of the unbroken run of PASSes from the start; a PASS after anything
    else was not reached by the sequence and is never certified."""
    last = None
    for j, s in enumerate(statuses):
        if s != "PASS":
            break
        last = j
    return last


class Resolution(BaseModel):
    """What n items can tell at this margin, said before any candidate is evaluated."""

    model_config = ConfigDict(frozen=True)

    n_items: int
    margin: float
    confidence: float
    floor_margin: float  # below this nothing is certified, even a candidate agreeing on every item
    power: dict[str, float]  # discordance → P(certify a candidate that truly equals the original)
    assumed_discordance: float
    smallest_margin: float  # reaching TARGET_POWER at the assumed discordance
    resolves: bool
    message: str
    warning: str | None = None


def _power(n: int, margin: float, discordance: float, confidence: float) -> float:
    """Known-variance power of the paired test for one fixed adapter: the item variance is all
    there is (seed_sd 0, one "seed"). ``verdicts.plan`` with one seed would answer 0, because it
    refuses to guess seed variance from one training run; here there is no training run to vary."""
    return known_variance_power(
        0.0, n, 1, margin=margin, discordance=discordance, seed_sd=0.0, confidence=confidence
    )


def resolution(original: Sequence[float], *, metric: Metric, margin: float, confidence: float) -> Resolution:
    from scipy.optimize import brentq

    n = len(original)
    same = compare(original, original, metric=metric, margin=0.5, confidence=confidence)
    floor = max(0.0, -same.ci_low)
    power = {f"{d:g}": _power(n, margin, d, confidence) for d in SHOWN_DISCORDANCES}
    d0 = ASSUMED_DISCORDANCE
    smallest = float(brentq(lambda m: _power(n, m, d0, confidence) - TARGET_POWER, 1e-6, 0.999))
    smallest = max(smallest, floor)
    at = power[f"{d0:g}"]
    pts = metric.scale
    others = ", ".join(f"{100 * power[f'{d:g}']:.0f}% at {100 * d:g}%" for d in SHOWN_DISCORDANCES if d != d0)
    message = (
        f"{n:,} items: a candidate that truly matches the original is certified at margin {pts(margin):g} "
        f"{metric.unit} with probability {100 * at:.0f}% if it disagrees with it on {100 * d0:g}% of the items "
        f"({others}); at {100 * TARGET_POWER:.0f}% power this set resolves margins down to {pts(smallest):.2f} "
        f"{metric.unit}; nothing can be certified within {pts(floor):.2f} {metric.unit}, even a candidate "
        "agreeing on every item"
    )
    warning = None
    if margin <= floor:
        warning = (
            f"{n:,} items cannot resolve margin {pts(margin):g} {metric.unit} at all: even a candidate agreeing "
            f"on every item is not shown within it; use more items (--eval-samples) or a wider --margin"
        )
    elif at < TARGET_POWER:
        warning = (
            f"{n:,} items may not resolve margin {pts(margin):g} {metric.unit}: a candidate as good as the original "
            f"is certified only with probability {100 * at:.0f}% at {100 * d0:g}% disagreement; use more items "
            f"or a margin of at least {pts(smallest):.2f} {metric.unit}"
        )
    return Resolution(
        n_items=n, margin=margin, confidence=confidence, floor_margin=floor, power=power, assumed_discordance=d0,
        smallest_margin=smallest, resolves=warning is None, message=message, warning=warning,
    )  # fmt: skip
