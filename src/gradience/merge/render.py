"""Text (rich) and markdown renderings of merge-audit and merge results."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from gradience.merge.report import LayerCompat, MergeAuditReport, MergeReport


def _f(x: float | None, fmt: str = ".3f") -> str:
    return "—" if x is None else format(x, fmt)


def _cos(values: list[float], n: int = 3) -> str:
    return ", ".join(f"{c:.3f}" for c in values[:n]) or "—"


def _rule(report: MergeAuditReport) -> str:
    t = report.thresholds
    return (
        f"verdicts by the Frobenius cosine c of ΔW_A and ΔW_B: aligned c ≥ {t.cosine:g}, "
        f"conflicting c ≤ −{t.cosine:g}, orthogonal otherwise; imbalance noted beyond {t.imbalance:g}×"
    )


def _headline(report: MergeAuditReport) -> list[tuple[str, str]]:
    s = report.summary
    return [
        ("A", report.adapter_a),
        ("B", report.adapter_b),
        ("base model", report.base_model or "(not recorded)"),
        ("shared modules", str(s.n_shared)),
        ("only in A / only in B", f"{len(s.only_in_a)} / {len(s.only_in_b)}"),
        ("verdicts", ", ".join(f"{k} {v}" for k, v in s.verdicts.items() if v)),
        ("global cosine", _f(s.global_cosine)),
        ("mean subspace overlap (col / row)", f"{s.col_overlap_mean:.3f} / {s.row_overlap_mean:.3f}"),
        ("energy in conflicting layers", f"{s.conflicting_energy_share:.1%}"),
    ]


def render_merge_audit(
    report: MergeAuditReport, *, layers: bool = False, console: Console | None = None
) -> None:
    con = console or Console()
    con.print("[bold]Merge audit[/bold] (exact, from the factors)")
    head = Table(show_header=False, box=None)
    for k, v in _headline(report):
        head.add_row(k, v)
    con.print(head)
    rows = report.layers if layers else _worst(report.layers, 10)
    t = Table(title="layers" if layers else "least compatible layers", title_justify="left")
    for col in ("layer", "verdict", "cosine", "‖B‖/‖A‖", "col cos (top 3)", "row cos (top 3)"):
        t.add_column(col, justify="left" if col in ("layer", "verdict") else "right")
    for la in rows:
        t.add_row(
            la.name,
            la.verdict,
            _f(la.cosine),
            _f(la.norm_ratio, ".3g"),
            _cos(la.col_cosines),
            _cos(la.row_cosines),
        )
    con.print(t)
    con.print(_rule(report))
    con.print(f"[bold]recommendation:[/bold] {report.summary.recommendation}")


def _worst(layers: list[LayerCompat], n: int) -> list[LayerCompat]:
    return sorted(layers, key=lambda la: (la.cosine if la.cosine is not None else 2.0, la.name))[:n]


def merge_audit_markdown(report: MergeAuditReport) -> str:
    out = ["# Merge audit", ""]
    out += [f"- **{k}**: {v}" for k, v in _headline(report)]
    out += ["", f"_{_rule(report)}._", "", f"**Recommendation:** {report.summary.recommendation}", ""]
    out += ["| layer | verdict | cosine | ‖B‖/‖A‖ | col cos (top 3) | row cos (top 3) | notes |"]
    out += ["|---|---|---:|---:|---|---|---|"]
    for la in report.layers:
        out.append(
            f"| `{la.name}` | {la.verdict} | {_f(la.cosine)} | {_f(la.norm_ratio, '.3g')} | "
            f"{_cos(la.col_cosines)} | {_cos(la.row_cosines)} | {'; '.join(la.notes)} |"
        )
    s = report.summary
    for title, names in (("Only in A", s.only_in_a), ("Only in B", s.only_in_b)):
        if names:
            out += ["", f"## {title}", "", *(f"- `{n}`" for n in names)]
    return "\n".join(out) + "\n"


def render_merge(report: MergeReport, *, console: Console | None = None) -> None:
    con = console or Console()
    con.print(
        f"[bold]Merged[/bold] {len(report.sources)} adapters with {report.method} → {report.destination}"
    )
    head = Table(show_header=False, box=None)
    head.add_row("weights", ", ".join(f"{w:g}" for w in report.weights))
    head.add_row("options", ", ".join(f"{k}={v}" for k, v in report.options.items()) or "—")
    head.add_row("layers", str(len(report.layers)))
    head.add_row("LoRA params", f"{report.lora_params:,}")
    head.add_row(
        "min retained energy", f"{min((la.retained_energy for la in report.layers), default=1.0):.4f}"
    )
    head.add_row(
        "carried tensors",
        f"{len(report.carried_keys)}" + (f" (from {report.head_from})" if report.head_from else ""),
    )
    con.print(head)
