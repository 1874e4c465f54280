"""Text rendering of a plan for the terminal (the CLI's default output)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from gradience.verdicts.models import PlanResult


def render_plan(plan: PlanResult, console: Console | None = None) -> None:
    """Print the plan: assumptions, eval items needed per seed count, the budget's rates, notes."""
    out = console or Console(soft_wrap=False)
    out.print(
        f"[bold]Plan[/bold]: non-inferiority margin {100 * plan.margin:g} points, target power {plan.target_power:g} "
        f"at true Δ = 0, {plan.confidence:.0%} CI; baseline accuracy {plan.baseline_acc:g}, discordance "
        f"{plan.discordance:g} (item share {plan.item_share:g}{', worst case' if plan.item_share_worst_case else ''}), seed SD {100 * plan.seed_sd:g} points; "
        f"policy {plan.policy}."
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
            "true Δ (points)",
            "P(PASS) non-inferiority",
            f"P(PASS) {plan.policy} rule",
            title=f"Budget: {ev.n_seeds} seeds × {ev.eval_items:,} eval items",
        )
        rates.add_row("0 (power)", f"{ev.power:.3f}", f"{ev.point_rule_power:.3f}")
        for r in ev.false_pass:
            rates.add_row(
                f"{100 * r.delta:+.1f} (false PASS)", f"{r.noninferiority:.3f}", f"{r.point_rule:.3f}"
            )
        out.print(rates)
    for note in plan.notes:
        out.print(f"• {note}")
    verdict = "reaches" if plan.reachable else "does NOT reach"
    out.print(f"[bold]This budget {verdict} the target power {plan.target_power:g}.[/bold]")
