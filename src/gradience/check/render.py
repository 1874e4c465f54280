"""Rich text rendering of check results; the recommendation table is shared with monitor."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from .core import CheckResult
from .rules import Recommendation

SEVERITY_STYLE = {"info": "cyan", "warning": "yellow", "error": "red", "critical": "bold red"}


def recommendation_table(recs: Sequence[Recommendation]) -> Table:
    t = Table(title="Recommendations", title_justify="left")
    t.add_column("severity", no_wrap=True)
    t.add_column("action", no_wrap=True)
    t.add_column("message")
    t.add_column("conf.", justify="right", no_wrap=True)
    for r in recs:
        sev = str(getattr(r.severity, "value", r.severity))
        t.add_row(f"[{SEVERITY_STYLE.get(sev, '')}]{sev}[/]", r.action, r.message, f"{r.confidence:.1f}")
    return t


def render_recommendations(recs: Sequence[Recommendation], verbose: bool, console: Console) -> None:
    """The table, and with --verbose each recommendation's reason and suggested values."""
    console.print(recommendation_table(recs))
    if verbose:
        for r in recs:
            extra = f"  [dim]suggested: {r.suggested}[/dim]" if r.suggested else ""
            console.print(f"  [bold]{r.action}[/bold]: {r.why}{extra}")


def render_check(result: CheckResult, verbose: bool = False, console: Console | None = None) -> None:
    con = console or Console()
    cfg = result.config
    con.print(f"[bold]gradience check[/bold]  profile: {result.task_profile} ({result.profile_source})")
    head = Table(show_header=False, box=None)
    shown = ("model_name", "dataset_name", "lr", "weight_decay", "r", "alpha", "target_modules")
    for key in shown:
        value = getattr(cfg, key)
        if value is not None:
            text = (
                ", ".join(value)
                if isinstance(value, list)
                else f"{value:g}"
                if isinstance(value, float)
                else str(value)
            )
            src = f"  [dim]({cfg.sources.get(key, '?')})[/dim]" if verbose else ""
            head.add_row(key, text + src)
    if cfg.update_scale is not None:
        head.add_row("alpha/sqrt(r)" if cfg.use_rslora else "alpha/r", f"{cfg.update_scale:g}")
    con.print(head)
    render_recommendations(result.recommendations, verbose, con)
