"""Rich text rendering of a MonitorReport (the CLI's default output)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from gradience.check import render_recommendations
from gradience.check.render import SEVERITY_STYLE

from .core import MonitorReport


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def render_monitor(report: MonitorReport, verbose: bool = False, console: Console | None = None) -> None:
    con = console or Console()
    s = report.summary
    status = s.status or "no run_end (running, or stopped without a trace)"
    con.print(f"[bold]gradience monitor[/bold] {s.path}")
    head = Table(show_header=False, box=None)
    head.add_row("run", f"{s.run_id}  ({len(s.run_ids)} run(s) in file, {s.n_events} events)")
    head.add_row("status", status + (f" — {s.end_reason}" if s.end_reason else ""))
    head.add_row("last step", _fmt(s.last_step))
    if report.task_profile:
        head.add_row("task profile", report.task_profile)
    if s.train:
        t = s.train
        head.add_row(
            f"train (step {_fmt(t.step)})",
            f"loss {_fmt(t.loss)}  lr {_fmt(t.lr)}  grad_norm {_fmt(t.grad_norm)}",
        )
    for split, ev in sorted(s.evals.items()):
        metrics = "  ".join(f"{k} {_fmt(v)}" for k, v in ev.metrics.items() if v is not None)
        head.add_row(f"eval {split} (step {_fmt(ev.step)})", metrics)
    gap = (
        f"{s.gap:.3f} (threshold {report.gap_threshold:g})"
        if s.gap is not None
        else f"n/a: {s.gap_unavailable_reason}"
    )
    head.add_row("gap held-out/train ppl", gap)
    if s.audit:
        m = s.audit.typed
        head.add_row(
            f"LoRA audit (step {_fmt(s.audit.step)}, {s.n_audits} total)",
            f"r {_fmt(m.r)}  stable rank {_fmt(m.stable_rank_mean)}  "
            f"utilization {_fmt(m.utilization_mean)}  E90 p50/p90 "
            f"{_fmt(m.energy_rank_90_p50)}/{_fmt(m.energy_rank_90_p90)}",
        )
    if s.guard.n_events:
        head.add_row("guard", ", ".join(f"{k}: {v}" for k, v in sorted(s.guard.actions.items())))
    head.add_row("telemetry issues", str(len(s.issues)))
    con.print(head)
    if s.issues:
        shown = s.issues if verbose else s.issues[:5]
        for issue in shown:
            con.print(f"  [yellow]line {issue.line}[/yellow] {issue.kind}: {issue.message}")
        if len(s.issues) > len(shown):
            con.print(f"  … {len(s.issues) - len(shown)} more (--verbose)")
    if report.alerts:
        t = Table(title="Alerts", title_justify="left")
        for col in ("severity", "code", "message"):
            t.add_column(col, no_wrap=col != "message")
        for a in report.alerts:
            sev = str(getattr(a.severity, "value", a.severity))
            t.add_row(f"[{SEVERITY_STYLE.get(sev, '')}]{sev}[/]", a.code, a.message)
        con.print(t)
    if verbose and s.alerts:
        con.print("[bold]Alerts recorded during the run[/bold]")
        for a in s.alerts:
            con.print(f"  step {_fmt(a.step)} {a.severity} {a.code}: {a.message}")
    render_recommendations(report.recommendations, verbose, con)
