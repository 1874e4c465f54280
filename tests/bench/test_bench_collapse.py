"""A collapsed training run is named as such: FAIL (unstable training), never a wide mean interval."""

from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np

from gradience.bench.config import TaskConfig
from gradience.bench.judging import collapsed, unstable_judgement
from gradience.bench.tasks import Split, make_task
from gradience.verdicts import judge_variant

SPLIT = Split("heldout", list(range(100)), {}, [0] * 45 + [1] * 55)  # majority class: 55%
TASK = make_task(TaskConfig())


def run(acc: float, loss: float | None = None) -> NS:
    return NS(eval={"eval": NS(value=acc)}, train=None if loss is None else NS(mean_loss_last_10pct=loss))


def test_collapse_is_the_majority_rate_or_chance_loss():
    assert collapsed(run(0.55), SPLIT, TASK) and collapsed(run(0.559), SPLIT, TASK)  # answers one class
    assert collapsed(run(0.70, loss=0.69), SPLIT, TASK)  # loss at ln 2: near-uniform predictions
    assert not collapsed(run(0.80, loss=0.30), SPLIT, TASK) and not collapsed(run(0.58), SPLIT, TASK)


def test_tasks_without_a_chance_level_never_collapse():
    lm = make_task(TaskConfig(type="causal_lm", metric="nll"))
    assert not collapsed(run(9.0, loss=9.0), Split("heldout", [0], {}), lm)


def test_unstable_verdict_reports_the_collapse_rate_and_the_other_seeds():
    rng = np.random.default_rng(3)
    labels = rng.random(2000) < 0.55
    pairs = []
    for s in range(3):
        probe = rng.random(2000) < 0.86
        variant = probe.copy()
        if s == 1:  # this seed's variant answers the majority class: accuracy 55%
            variant = labels.copy()
        else:
            flip = rng.random(2000) < 0.04
            variant[flip] = ~variant[flip]
        pairs.append((probe, variant))
    vv = judge_variant(pairs, "safe_uniform", labels=[1, 2, 3], n_boot=200)
    j = unstable_judgement(vv, [2])
    assert j.ci is None and j.verdict.non_inferiority == "FAIL" and j.verdict.point == "FAIL"
    assert j.noninferiority_p == 1.0 and j.collapsed == [2]
    s = j.verdict.statement
    assert s.startswith("FAIL (unstable training): 1 of 3 runs collapsed") and "seeds 2" in s
    assert "exact 95% CI [0.8%, 90.6%]" in s  # Clopper–Pearson for 1 of 3
    for seed in (1, 3):
        d = next(x.delta for x in vv.per_seed if x.label == str(seed))
        assert f"{100 * d:+.1f}" in s.split("the other seeds' Δ:")[1]


def test_smoke_and_single_seed_wording() -> None:
    """One seed, collapsed, in a smoke run: no 'other seeds: none', and smoke advice, not lr advice."""
    rng = np.random.default_rng(4)
    labels = rng.random(300) < 0.55
    probe = rng.random(300) < 0.84
    vv = judge_variant([(probe, labels.copy())], "safe_uniform", labels=[42], n_boot=200)
    s = unstable_judgement(vv, [42], smoke=True).verdict.statement
    assert "no other seed to compare" in s and "none points" not in s
    assert "too few steps" in s and "lower train.lr" not in s
    assert "lower train.lr" in unstable_judgement(vv, [42]).verdict.statement
