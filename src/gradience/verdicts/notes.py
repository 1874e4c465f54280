"""Plain-language notes for a plan: what the budget can show and why."""

from __future__ import annotations

import math
from typing import Any

from gradience.verdicts.models import BudgetRates
from gradience.verdicts.policy import Policy


def _p(x: float) -> str:
    return f"{100 * x:.1f}".rstrip("0").rstrip(".")


def plan_notes(r: dict[str, Any], pol: Policy, min_seeds: int, max_eval_items: int) -> list[str]:
    """Sentences for the plan: the item-sampling floor, the recommendation, and the budget's rates."""
    m, target, disc, item_sd = r["margin"], r["target_power"], r["discordance"], r.get("item_sd")
    share = r["item_share"]
    ref_items = r["given_eval_items"] or r["recommended_eval_items"] or r["min_eval_items_any_seeds"]
    common = "all of it" if share == 1 else f"{share:.0%} of its variance"
    if item_sd is None:  # a 0/1 metric: accuracy points
        loss, margin_name = f"{_p(m)} points", f"{_p(m)}-point margin"
        noise = f"With {_p(disc)}% of eval items flipping between probe and variant"
        se = f"{_p(math.sqrt(disc / ref_items))} points"
        own = f"With {_p(disc)}% of eval items flipping, each seed flipping its own items"
    else:  # a continuous metric: its own units
        loss, margin_name = f"{m:.3g} (metric units)", f"margin of {m:.3g}"
        noise = f"With a per-item SD of {item_sd:.3g} for the paired difference"
        se = f"{item_sd / math.sqrt(ref_items):.3g}"
        own = f"With a per-item SD of {item_sd:.3g}, none of it shared by the seeds"
    notes = [
        f"{noise}, Δ measured on {ref_items:,} items has a standard error of {se} from item sampling, "
        f"{common} common to every seed: more seeds cannot lower that part; only more eval items can."
        if share > 0
        else f"{own}, enough seeds can make up for a small eval set.",
    ]
    if share > 0:
        notes.append(
            f"Power {target:g} at a {margin_name} needs at least {r['min_eval_items_any_seeds']:,} eval "
            "items however many seeds run."
        )
    seeds, items = r["recommended_seeds"], r["recommended_eval_items"]
    if r["given_seeds"] is None and r["given_eval_items"] is None:
        if seeds is None:
            notes.append(f"No budget with ≤ {max_eval_items:,} eval items reaches power {target:g}.")
        else:
            notes.append(
                f"Recommended: {seeds} seeds × {items:,} eval items (the fewest seeds ≥ {min_seeds}, eval items "
                "rounded up), with the same eval items for every seed and variant."
            )
    elif r["given_seeds"] is None:
        notes.append(
            f"With {r['given_eval_items']:,} eval items no number of seeds reaches power {target:g}."
            if seeds is None
            else f"With {r['given_eval_items']:,} eval items, {seeds} seeds reach power {target:g}."
        )
    elif r["given_eval_items"] is None:
        if r["given_seeds"] == 1:
            notes.append(
                "One seed cannot measure seed-to-seed variation; plan with at least 2 (3 to certify)."
            )
        elif items is None:
            notes.append(
                f"With {r['given_seeds']} seeds the seed-to-seed noise alone keeps power below {target:g}."
            )
        else:
            notes.append(f"With {r['given_seeds']} seeds, {items:,} eval items reach power {target:g}.")
    ev: BudgetRates | None = r["evaluated"]
    if ev is not None:
        fp = ev.false_pass[0]
        nominal = (1 - r["confidence"]) / 2
        notes.append(
            f"This budget ({ev.n_seeds} seeds × {ev.eval_items:,} items): non-inferiority power {ev.power:.2f} at "
            f"true Δ = 0 ({ev.power_known_variance:.2f} if the seed variance were known), false-PASS "
            f"{100 * fp.noninferiority:.1f}% at a true loss of {loss} (design: {100 * nominal:.1f}%)."
        )
        notes.append(
            f"The {pol.name} point-estimate rule on the same budget: power {ev.point_rule_power:.2f}, false-PASS "
            f"{100 * fp.point_rule:.1f}% at a true loss of {loss}."
        )
        if ev.n_seeds == 1:
            notes.append(
                "With one seed the verdict cannot reach a non-inferiority PASS (it cannot see seed-to-seed "
                "variation) unless a seed SD from an earlier bench is given (compression.seed_sd)."
            )
    if r.get("item_share_worst_case"):
        notes.append(
            "The share of item noise common to all seeds (item_share) was not given, so the plan holds at "
            f"every share from 0 to 1; the rates shown are at the worst one ({share:g}). Measure it on a "
            "pilot bench with --from DIR, or give --item-share."
        )
    else:
        notes.append(
            f"Assumes item_share = {share:g} of the item noise is common to all seeds (1: the same items flip for "
            "every seed). Flips that differ between seeds average out over seeds but add to the between-seed "
            "variance, which 3 seeds estimate poorly: compare with --item-share 0. `bench plan --from DIR` "
            "measures discordance, seed SD and item_share on a finished pilot bench."
        )
    return notes
