"""The decision rules on constructed outcomes: fixed sequence, early stopping, resolution."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from gradience.bench import BenchInputError
from gradience.bench.certify import decide
from gradience.bench.tasks import ACCURACY, Metric

KW = {"metric": ACCURACY, "margin": 0.025, "confidence": 0.95}


def _original(n: int = 400, acc: float = 0.8, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < acc).astype(float)


def test_a_pass_after_a_failure_is_never_tested_nor_certified() -> None:
    orig = _original()
    worse = orig.copy()
    worse[np.flatnonzero(orig == 1)[:40]] = 0  # 10 points worse
    cands = [orig.copy(), worse, orig.copy()]  # the third would pass on its own
    called: list[int] = []

    def test(j: int) -> decide.Status:
        called.append(j)
        return decide.status_of(decide.compare(orig, cands[j], **KW))

    statuses = decide.fixed_sequence(len(cands), test)
    assert statuses == ["PASS", "FAIL", "NOT_TESTED"] and called == [0, 1]
    assert decide.certified_index(statuses) == 0
    assert decide.status_of(decide.compare(orig, cands[2], **KW)) == "PASS"  # and yet not certified


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["PASS", "FAIL", "PASS"], 0),
        (["FAIL", "PASS", "PASS"], None),
        (["PASS", "PASS", "INCONCLUSIVE", "PASS"], 1),
        (["PASS", "STOPPED", "PASS"], 0),
        (["PASS", "PASS"], 1),
        ([], None),
    ],
)
def test_certified_is_the_end_of_the_leading_run_of_passes(statuses: list, expected: int | None) -> None:
    assert decide.certified_index(statuses) == expected


def test_stopping_early_never_stops_a_candidate_that_could_still_pass() -> None:
    """Exhaustive over random prefixes: when the rule says stop, no completion of the unseen items
    (random ones, and the best one) makes the candidate non-inferior."""
    rng = np.random.default_rng(1)
    stops = 0
    for trial in range(300):
        n = int(rng.integers(20, 60))
        orig = _original(n, 0.75, seed=trial)
        cand = np.where(rng.random(n) < rng.uniform(0.0, 0.4), 1 - orig, orig)
        seen_n = int(rng.integers(1, n))
        seen = {i: float(cand[i]) for i in range(seen_n)}
        kw = {**KW, "margin": float(rng.uniform(0.05, 0.3))}
        if decide.can_still_pass(orig, seen, **kw):
            continue
        stops += 1
        best = np.ones(n)
        best[:seen_n] = cand[:seen_n]
        assert decide.compare(orig, best, **kw).noninferiority != "PASS"
        for _ in range(20):
            filled = cand.copy()
            filled[seen_n:] = rng.integers(0, 2, n - seen_n)
            assert decide.compare(orig, filled, **kw).noninferiority != "PASS"
    assert stops > 30  # the rule does fire


def test_a_clearly_inferior_candidate_stops_well_before_the_end() -> None:
    orig = _original(1000, 0.85)
    bad = np.where(np.random.default_rng(2).random(1000) < 0.3, 1 - orig, orig)  # ~20 points worse
    seen: dict[int, float] = {}
    for start in range(0, 1000, 50):
        seen.update({i: float(bad[i]) for i in range(start, start + 50)})
        if not decide.can_still_pass(orig, seen, **KW):
            break
    assert len(seen) <= 500  # half the items, although the unseen ones are credited every possible win


def test_resolution_against_textbook_formulas() -> None:
    n, margin, conf = 2000, 0.025, 0.95
    res = decide.resolution(_original(n), metric=ACCURACY, margin=margin, confidence=conf)
    z = norm.ppf(0.975)
    assert res.floor_margin == pytest.approx(
        1 - 0.025 ** (1 / n), rel=1e-9
    )  # exact bound, no discordant item
    for d, p in res.power.items():
        assert p == pytest.approx(norm.cdf(margin / np.sqrt(float(d) / n) - z), abs=1e-9)
    assert res.smallest_margin == pytest.approx((z + norm.ppf(0.8)) * np.sqrt(0.10 / n), rel=1e-6)
    assert res.resolves and res.warning is None


def test_resolution_warns_when_the_items_cannot_resolve_the_margin() -> None:
    few = decide.resolution(_original(300), metric=ACCURACY, margin=0.025, confidence=0.95)
    assert not few.resolves and "may not resolve" in (few.warning or "")
    hopeless = decide.resolution(_original(40), metric=ACCURACY, margin=0.025, confidence=0.95)
    assert "cannot resolve" in (hopeless.warning or "") and hopeless.floor_margin > 0.025


def test_continuous_metrics_are_refused_in_one_place() -> None:
    nll = Metric("nll", "NLL", higher_is_better=False, binary=False, unit="nats")
    with pytest.raises(BenchInputError, match="continuous"):
        decide.compare([0.1, 0.2], [0.1, 0.2], metric=nll, margin=0.1, confidence=0.95)


def test_a_lower_is_better_binary_metric_is_judged_in_its_direction() -> None:
    errors = Metric("error", "error rate", higher_is_better=False)
    orig = 1 - _original()  # 1 = a mistake
    more_mistakes = orig.copy()
    more_mistakes[np.flatnonzero(orig == 0)[:40]] = 1
    kw = {**KW, "metric": errors}
    assert decide.compare(orig, orig, **kw).noninferiority == "PASS"
    assert decide.compare(orig, more_mistakes, **kw).noninferiority == "FAIL"
