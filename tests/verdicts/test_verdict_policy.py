"""Policies: exact quorum, the upstream 0.667 < 0.67 bug, safe_uniform's floor, bad files → PolicyError."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gradience.verdicts import Policy, PolicyError, builtin_policies, load_policy, policy_from_dict


def _policy(**over) -> Policy:
    data = {"name": "t", "scope": "test", "margin": 0.025, "min_pass_fraction": "2/3"} | over
    return policy_from_dict(data)


def _reference_quorum(fraction: Fraction, n: int) -> int:
    """Independent reference: the smallest k whose pass rate k/n reaches the fraction, by enumeration."""
    return next(k for k in range(n + 1) if Fraction(k, n) >= fraction)


def test_builtins_load_and_safe_uniform_is_upstream_equivalent() -> None:
    assert {"safe_uniform", "noninferiority"} <= set(builtin_policies())
    su = load_policy("safe_uniform")
    assert (su.margin, su.worst_seed_floor, su.confidence) == (0.025, -0.025, 0.95)
    assert su.min_pass_fraction == Fraction(2, 3)
    assert not su.require_noninferiority
    assert "every seed" in su.scope  # says plainly that the floor demands all seeds
    ni = load_policy("noninferiority")
    assert ni.require_noninferiority and ni.margin == 0.025


def test_quorum_at_three_is_two_and_the_upstream_float_bug_does_not_recur() -> None:
    pol = _policy()
    assert [pol.required_passes(n) for n in (1, 2, 3, 4, 5, 6)] == [1, 2, 2, 3, 4, 4]
    assert 2 / 3 < 0.67  # upstream compared this float pass rate with 0.67 and demanded 3 of 3
    n_items = 1000
    two_of_three = np.array([0, -5, -40])  # Δ = 0, −0.5 points, −4 points
    out = pol.point_verdict(two_of_three, n_items)
    assert int(out["k_passed"]) == 2 and bool(out["quorum_met"]) and bool(out["passed"])


def test_safe_uniform_as_published_still_needs_every_seed() -> None:
    su = load_policy("safe_uniform")
    n_items = 1000
    out = su.point_verdict(np.array([0, -5, -40]), n_items)
    assert bool(out["quorum_met"]) and not bool(out["floor_met"]) and not bool(out["passed"])
    assert bool(su.point_verdict(np.array([0, -5, -25]), n_items)["passed"])  # −2.5 exactly is ≥ floor


def test_boundaries_are_exact() -> None:
    pol = _policy(margin=0.03, worst_seed_floor=-0.03)
    # 0.1 + 0.2 style rounding must not matter: Δ = −30/1000 is exactly −0.03.
    assert bool(pol.point_verdict(np.array([-30, -30, -30]), 1000)["passed"])
    assert not bool(pol.point_verdict(np.array([-31, -30, -30]), 1000)["passed"])


def test_vectorised_over_leading_axes() -> None:
    pol = _policy()
    diffs = np.array([[[0, 0, -40]], [[-40, -40, 0]]])  # shape (2, 1, 3)
    out = pol.point_verdict(diffs, 1000)
    assert out["passed"].tolist() == [[True], [False]]


@given(st.integers(1, 60), st.integers(1, 60), st.integers(1, 200))
def test_quorum_matches_enumeration(num: int, den: int, n: int) -> None:
    if num > den:
        num, den = den, num
    frac = Fraction(num, den)
    assert _policy(min_pass_fraction=f"{num}/{den}").required_passes(n) == _reference_quorum(frac, n)


def test_quorum_forms() -> None:
    assert _policy(min_pass_fraction=1).required_passes(5) == 5
    assert _policy(min_pass_fraction="0.5").required_passes(5) == 3
    assert _policy(min_pass_fraction=0.67).required_passes(3) == 3  # what 0.67 literally means
    fixed = policy_from_dict({"name": "f", "scope": "s", "margin": 0.02, "min_pass_seeds": 4})
    assert fixed.required_passes(6) == 4 and fixed.required_passes(3) == 4  # cannot pass with 3 seeds


def test_with_margin_overrides_only_the_margin() -> None:
    su = load_policy("safe_uniform").with_margin(0.05)
    assert su.margin == 0.05 and su.worst_seed_floor == -0.025
    with pytest.raises(PolicyError, match="margin"):
        load_policy("safe_uniform").with_margin(-1)


def test_round_trip_through_json() -> None:
    su = load_policy("safe_uniform")
    data = su.model_dump(mode="json")
    assert data["min_pass_fraction"] == "2/3"
    assert policy_from_dict(data) == su


BAD = {
    "unknown key": (
        "name: x\nscope: s\nmargin: 0.025\nmin_pass_fraction: 2/3\nmargn: 0.1\n",
        "unknown key 'margn'",
    ),
    "no quorum": ("name: x\nscope: s\nmargin: 0.025\n", "exactly one of min_pass_fraction"),
    "two quorums": (
        "name: x\nscope: s\nmargin: 0.025\nmin_pass_fraction: 1/2\nmin_pass_seeds: 2\n",
        "exactly one of",
    ),
    "bad fraction": (
        "name: x\nscope: s\nmargin: 0.025\nmin_pass_fraction: two thirds\n",
        "min_pass_fraction",
    ),
    "zero denominator": ("name: x\nscope: s\nmargin: 0.025\nmin_pass_fraction: 2/0\n", "min_pass_fraction"),
    "fraction above one": ("name: x\nscope: s\nmargin: 0.025\nmin_pass_fraction: 3/2\n", "(0, 1]"),
    "negative margin": ("name: x\nscope: s\nmargin: -0.025\nmin_pass_fraction: 2/3\n", "margin"),
    "missing margin": ("name: x\nscope: s\nmin_pass_fraction: 2/3\n", "missing key 'margin'"),
    "bad confidence": ("scope: s\nmargin: 0.02\nmin_pass_fraction: 1\nconfidence: 95\n", "confidence"),
    "not a mapping": ("- margin: 0.025\n", "must be a YAML mapping"),
    "invalid yaml": ("name: x\nmargin: [0.025\n", "invalid YAML at line"),
    "empty file": ("", "must be a YAML mapping"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_policy_files_raise_one_line(tmp_path: Path, case: str) -> None:
    text, fragment = BAD[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    message = str(info.value)
    assert fragment in message and "\n" not in message and str(path) in message


def test_missing_file_and_unknown_name() -> None:
    with pytest.raises(PolicyError, match="policy file not found"):
        load_policy("/nonexistent/policy.yaml")
    with pytest.raises(PolicyError, match="built-in policies are .*safe_uniform"):
        load_policy("safe_unifrom")
    assert issubclass(PolicyError, ValueError)


def test_name_defaults_to_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "mine.yml"
    path.write_text("scope: s\nmargin: 0.01\nmin_pass_fraction: 1\n")
    assert load_policy(path).name == "mine"
