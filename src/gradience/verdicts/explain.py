"""Plain-language explanation of a variant verdict: what the data show and what they cannot."""

from __future__ import annotations

from typing import Any

from scipy import stats

from gradience.verdicts.policy import Policy, exact


def _pts(x: float) -> str:
    """Accuracy (0..1) as signed points, e.g. -0.0123 → '−1.2'."""
    return f"{100 * x:+.1f}".replace("-", "−")


def _points(x: float) -> str:
    return f"{100 * x:.1f}".rstrip("0").rstrip(".")


def _num(x: float, signed: bool = False) -> str:
    """A continuous metric's value, e.g. 0.0123 → '+0.0123'."""
    return (f"{x:+.3g}" if signed else f"{x:.3g}").replace("-", "−")


def explain_verdict(v: dict[str, Any], policy: Policy) -> str:
    """Sentences for a report: the non-inferiority reading first, then the point-estimate rule.

    A 0/1 metric is worded in accuracy points; a continuous one in its own units, saying
    which direction is better (Δ is oriented so that positive = the variant is better)."""
    margin, conf = v["margin"], v["confidence"]
    continuous = v.get("outcome") == "continuous"
    sig, val = (lambda x: _num(x, True), _num) if continuous else (_pts, _points)
    unit = (v.get("units") or "") if continuous else "points"
    u = f" {unit}" if unit else ""
    m = val(margin)
    margin_name = f"margin of {m}{u}" if continuous else f"{m}-point margin"
    ci = f"{conf:.0%} CI {sig(v['ci_low'])} to {sig(v['ci_high'])}{u}"
    head = f"Mean Δ {sig(v['mean_delta'])}{u} over {v['n_seeds']} seed(s) × {v['n_items']} shared eval items ({ci})."
    out = [head]
    if continuous:
        name = v.get("metric") or "the metric"
        better, order = (
            ("higher", "variant − probe") if v["higher_is_better"] else ("lower", "probe − variant")
        )
        out.append(f"For {name}, {better} is better: Δ = {order}, so Δ > 0 means the variant is better.")
    if v["noninferiority"] == "PASS":
        out.append(f"Non-inferior: with {conf:.0%} confidence the variant loses less than {m}{u}.")
    elif v["noninferiority"] == "FAIL":
        out.append(f"Worse than the margin: with {conf:.0%} confidence the variant loses more than {m}{u}.")
    else:
        z = stats.norm.ppf(0.5 + conf / 2)
        out.append(
            f"Inconclusive: the data cannot tell whether the variant is within the {margin_name}, "
            f"because the interval straddles −{m}. Eval-item sampling alone accounts for "
            f"±{val(z * v['item_se'])}{u} of it, which more seeds cannot shrink and more eval "
            "items can; size the next run with `gradience bench plan`."
        )
    floor = v["worst_seed_floor"]
    floor_txt = "" if floor is None else f", worst seed {sig(v['worst_delta'])} vs floor {sig(floor)}"
    rule = (
        f"Point-estimate rule ({policy.name}): {v['validated']} seeds within {m}{u}, "
        f"{v['k_required']} needed{floor_txt} → {'PASS' if v['point_estimate_passed'] else 'FAIL'}."
    )
    out.append(rule)
    if floor is not None and exact(floor) >= -exact(margin) and v["k_required"] < v["n_seeds"]:
        out.append("Its worst-seed floor is at or above −margin, so in fact every seed must pass.")
    if v["point_estimate_passed"] and v["noninferiority"] != "PASS":
        out.append("Passing on point estimates alone is not evidence of non-inferiority.")
    if not v["point_estimate_passed"] and v["noninferiority"] == "PASS":
        out.append(
            "Single-seed point estimates are noisy; the interval over all seeds and items is the better guide."
        )
    if policy.require_noninferiority:
        out.append(f"This policy requires non-inferiority: {'PASS' if v['passed'] else 'FAIL'}.")
    if v["n_distinct_seeds"] < v["n_seeds"]:
        out.append(
            f"{v['n_seeds'] - v['n_distinct_seeds']} seed(s) gave bit-identical outcomes to another and "
            f"count once: the interval uses {v['n_distinct_seeds']} distinct seed(s)."
        )
    if v["n_distinct_seeds"] == 1 and v["seed_sd_given"]:
        out.append(
            f"One distinct seed: the interval adds the given seed SD of {val(v['seed_sd_given'])}{u} "
            "to eval-item sampling."
        )
    elif v["n_distinct_seeds"] == 1:
        out.append(
            "One distinct seed: the interval covers eval-item sampling but not seed-to-seed variation, "
            "so it cannot show non-inferiority (at best INCONCLUSIVE); run more seeds, or give a "
            "seed SD from an earlier bench (compression.seed_sd)."
        )
    return " ".join(out)
