"""Rich text rendering of an AuditReport (the CLI's default output)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from gradience.audit.render_gain import render_gain
from gradience.audit.report import AuditReport, LayerAudit


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _layer_table(title: str, layers: list[LayerAudit]) -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("layer", "type", "r", "stable rank", "eff. rank", "util", "E90", "E95", "E99", "σmax·s"):
        t.add_column(col, justify="left" if col in ("layer", "type") else "right")
    for la in layers:
        t.add_row(
            la.name,
            la.module_type,
            str(la.r),
            f"{la.stable_rank:.2f}",
            f"{la.effective_rank:.2f}",
            _pct(la.utilization),
            str(la.energy_rank_90),
            str(la.energy_rank_95),
            str(la.energy_rank_99),
            f"{la.sigma_max_scaled:.4g}",
        )
    return t


def render_audit(
    report: AuditReport,
    *,
    layers: bool = False,
    top_wasteful: int = 0,
    suggest_per_layer: bool = False,
    console: Console | None = None,
) -> None:
    con = console or Console()
    s = report.summary
    con.print(f"[bold]LoRA audit[/bold] of {report.source}  ({report.adapter.get('peft_type', 'LORA')})")
    head = Table(show_header=False, box=None)
    head.add_row("layers", str(s.n_layers))
    head.add_row("ranks", ", ".join(map(str, s.ranks)))
    head.add_row("LoRA params", f"{s.total_lora_params:,}")
    head.add_row(
        "total trainable params", f"{s.total_trainable_params:,} (other: {s.other_trainable_params:,})"
    )
    head.add_row(
        "stable rank mean / median / param-weighted",
        f"{s.stable_rank_mean:.2f} / {s.stable_rank_median:.2f} / {s.stable_rank_weighted_mean:.2f}",
    )
    head.add_row("effective rank mean", f"{s.effective_rank_mean:.2f}")
    head.add_row("utilization mean", _pct(s.utilization_mean))
    head.add_row("energy rank 90 p50 / p90", f"{s.energy_rank_90_p50:g} / {s.energy_rank_90_p90:g}")
    con.print(head)

    by = Table(title="By module type", title_justify="left")
    for col in ("type", "layers", "LoRA params", "stable rank", "util", "E90 p50", "E90 p90"):
        by.add_column(col, justify="right")
    for kind, ts in s.by_type.items():
        by.add_row(
            kind,
            str(ts.n_layers),
            f"{ts.lora_params:,}",
            f"{ts.stable_rank_mean:.2f}",
            _pct(ts.utilization_mean),
            f"{ts.energy_rank_90_p50:g}",
            f"{ts.energy_rank_90_p90:g}",
        )
    con.print(by)
    render_gain(report, con)

    sg = report.suggestions
    st = Table(title=f"Rank suggestions (allowed ranks {sg.allowed_ranks})", title_justify="left")
    for col in ("rule", "rank", "LoRA params", "LoRA-only reduction", "total-trainable reduction"):
        st.add_column(col, justify="right")
    rows = [sg.uniform_median, sg.uniform_p90, sg.per_layer, sg.global_energy_90, *sg.rank_rules.values()]
    rows += list(sg.named_rules.values())
    for rs in rows:
        rank = str(rs.rank) if rs.rank is not None else "per-layer"
        name = rs.rule if rs.parameter is None else f"{rs.rule} ({rs.parameter:g})"
        if rs is sg.per_layer and sg.rank_rule != "energy@0.90":
            name += f" [{sg.rank_rule}]"
        st.add_row(name, rank, f"{rs.lora_params:,}", _pct(rs.lora_reduction), _pct(rs.total_reduction))
    con.print(st)

    if suggest_per_layer and sg.per_layer.rank_pattern:
        con.print(
            f"[bold]per_layer rank_pattern[/bold] (snap({sg.rank_rule} rank × margin), capped at each layer's r):"
        )
        con.print_json(data=sg.per_layer.rank_pattern)
    if top_wasteful:
        con.print(
            _layer_table(f"Top {top_wasteful} lowest-utilisation layers", report.wasteful(top_wasteful))
        )
    if layers:
        con.print(_layer_table("All layers", report.layers))
    if report.issues:
        it = Table(title=f"Issues ({len(report.issues)})", title_justify="left")
        for col in ("severity", "code", "layer", "message"):
            it.add_column(col)
        for issue in report.issues:
            it.add_row(issue.severity, issue.code, issue.layer or "", issue.message)
        con.print(it)
    else:
        con.print("No issues found.")
