"""Text rendering of a plan for the terminal (the CLI's default output)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from gradience.verdicts.models import MeasuredPlanInputs, PlanResult


def render_plan(plan: PlanResult, console: Console | None = None) -> None:
    """Print the plan: assumptions, eval items needed per seed count, the budget's rates, notes."""
    out = console or Console(soft_wrap=False)
    worst = ", worst case" if plan.item_share_worst_case else ""
    if plan.item_sd is None:
        scale, unit = 100.0, "points"
        noise = (
            f"baseline accuracy {plan.baseline_acc:g}, discordance {plan.discordance:g} (item share "
            f"{plan.item_share:g}{worst}), seed SD {100 * plan.seed_sd:g} points"
        )
    else:
        scale, unit = 1.0, "metric units"
        noise = (
            f"per-item SD {plan.item_sd:g} (item share {plan.item_share:g}{worst}), seed SD {plan.seed_sd:g}"
        )
    out.print(
        f"[bold]Plan[/bold]: non-inferiority margin {scale * plan.margin:g} {unit}, target power "
        f"{plan.target_power:g} at true Δ = 0, {plan.confidence:.0%} CI; {noise}; policy {plan.policy}."
    )
    table = Table("seeds", "eval items needed", title="Eval items for the target power (shared by all seeds)")
    for row in plan.by_seeds:
        table.add_row(
            str(row.n_seeds), "never" if row.eval_items_needed is None else f"{row.eval_items_needed:,}"
        )
    if plan.item_share > 0:
        table.add_row("∞", f"{plan.min_eval_items_any_seeds:,}")
    out.print(table)
    ev = plan.evaluated
    if ev is not None:
        rates = Table(
            f"true Δ ({unit})",
            "P(PASS) non-inferiority",
            f"P(PASS) {plan.policy} rule",
            title=f"Budget: {ev.n_seeds} seeds × {ev.eval_items:,} eval items",
        )
        rates.add_row("0 (power)", f"{ev.power:.3f}", f"{ev.point_rule_power:.3f}")
        for r in ev.false_pass:
            rates.add_row(
                f"{scale * r.delta:+.3g} (false PASS)"
                if plan.item_sd is not None
                else f"{100 * r.delta:+.1f} (false PASS)",
                f"{r.noninferiority:.3f}",
                f"{r.point_rule:.3f}",
            )
        out.print(rates)
    for note in plan.notes:
        out.print(f"• {note}")
    verdict = "reaches" if plan.reachable else "does NOT reach"
    out.print(f"[bold]This budget {verdict} the target power {plan.target_power:g}.[/bold]")


def render_estimate(measured: MeasuredPlanInputs, console: Console | None = None) -> None:
    """The inputs `bench plan --from` measured, per variant, before the plan they feed."""
    out = console or Console(soft_wrap=False)
    est = measured.estimate
    table = Table("variant", "seeds", "items", "acc", "Δ pts", "disc", "seed SD", "share",
                  title=f"Measured on {measured.source} (seed SD in points; share: item noise common to all seeds)")  # fmt: skip
    for v in est.variants:
        table.add_row(v.variant, str(v.n_seeds), f"{v.n_items:,}", f"{v.probe_accuracy:.3f}", f"{100 * v.delta:+.2f}",
                      f"{v.discordance:.3f}", f"{100 * v.seed_sd:.2f}", f"{v.item_share:.2f}")  # fmt: skip
    table.add_row(f"plan ({est.planned_for})", "", "", f"{est.baseline_acc:.3f}", "", f"{est.discordance:.3f}",
                  f"{100 * est.seed_sd:.2f}", f"{est.item_share:.2f}")  # fmt: skip
    out.print(table)
    if measured.left_out:
        out.print("Left out: " + "; ".join(measured.left_out) + ".")
    fewest = min(v.n_seeds for v in est.variants)
    if fewest < 5:
        out.print(
            f"Seed SD and item share come from as few as {fewest} seeds: rough; the plan treats them as known."
        )
