"""`explain`: one layer of a saved audit — spectrum, every rule's rank, and why the suggestion is what it is."""

from __future__ import annotations

from pathlib import Path

import typer

from gradience.cli.shell import _guarded, _show, app


def _render(ex) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.table import Table

    con = Console()
    la = ex.layer
    con.print(
        f"[bold]{la.name}[/bold]  ({la.module_type}, {la.out_features}×{la.in_features}, r={la.r}, scale {la.scale:g})"
    )
    con.print(
        f"stable rank {la.stable_rank:.2f}, effective rank {la.effective_rank:.2f}, "
        f"‖ΔW‖₂ {la.sigma_max_scaled:.4g}, ‖ΔW‖_F {la.frob_norm_scaled:.4g}"
        + (f", {la.energy_share:.1%} of the adapter's update energy" if la.energy_share is not None else "")
    )
    if la.base_relative is not None:
        br = la.base_relative
        con.print(f"against the base: ‖ΔW‖₂/‖W‖₂ {br.spectral_ratio:.4g}, ‖ΔW‖_F/‖W‖_F {br.frob_ratio:.4g}")
    if ex.spectrum is not None:
        t = Table(title="spectrum of s·B·A", title_justify="left")
        for col in ("i", "σ_i", "σ_i/σ_1", "cum. energy"):
            t.add_column(col, justify="right")
        for i, (s, e) in enumerate(zip(ex.spectrum, ex.energy_cumulative, strict=True), start=1):
            t.add_row(str(i), f"{s:.4g}", f"{s / ex.spectrum[0]:.3f}", f"{e:.2%}")
        con.print(t)
    r = Table(title="rank rules", title_justify="left")
    for col in ("rule", "rank", "why"):
        r.add_column(col)
    for rule in ex.rules:
        r.add_row(rule.rule, str(rule.rank), rule.why)
    con.print(r)
    con.print(f"[bold]suggested rank {ex.suggested_rank}[/bold]: {ex.suggestion_why}")


@app.command(short_help="One layer of a saved audit: spectrum, rules, suggestion.")
def explain(
    audit_json: Path = typer.Option(..., "--audit-json", help="Output of `gradience audit --json --layers`."),
    layer: str = typer.Option(..., "--layer", help="Layer name, as in the audit."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on stdout."),
    verbose: bool = typer.Option(False, "--verbose"),
) -> None:
    """Explain one layer of a saved audit: spectrum, each rank rule's rank and reason, the suggestion."""

    def body() -> int:
        from gradience.audit import AdapterError
        from gradience.audit.explain import explain_layer
        from gradience.files import MalformedInput, loads_json, read_text

        try:
            data = loads_json(read_text(audit_json, "audit JSON"), str(audit_json))
        except MalformedInput as exc:
            raise AdapterError(str(exc)) from None
        _show(explain_layer(data, layer), as_json, _render)
        return 0

    _guarded(body, verbose)
