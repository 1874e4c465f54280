"""Text sections for where the update sits: concentration over layers and size against the base."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from gradience.audit.report import AuditReport


def render_gain(report: AuditReport, con: Console) -> None:
    c = report.concentration
    if c is not None and report.layers:
        t = Table(
            title=f"Concentration: HHI {c.hhi:.3f}, effective layers {c.effective_layers:.1f} of {len(report.layers)}",
            title_justify="left",
        )
        for col in ("type", "layers", "energy share", "HHI", "effective layers"):
            t.add_column(col, justify="right")
        for kind, tc in c.by_type.items():
            t.add_row(
                kind,
                str(tc.n_layers),
                f"{tc.energy_share:.1%}",
                f"{tc.hhi:.3f}",
                f"{tc.effective_layers:.1f}",
            )
        con.print(t)
        con.print(
            "top layers by share of ‖ΔW‖²: " + ", ".join(f"{n} {s:.1%}" for n, s in c.top_layers.items())
        )
    b = report.base_model
    if b is not None:
        t = Table(title=f"Update vs base weights ({b.base_model})", title_justify="left")
        for col in ("layer", "‖ΔW‖₂/‖W‖₂", "‖ΔW‖_F/‖W‖_F", "‖W‖₂ by"):
            t.add_column(col, justify="left" if col == "layer" else "right")
        by_name = {la.name: la for la in report.layers}
        for name in b.top_layers:
            br = by_name[name].base_relative
            if br is not None:
                t.add_row(name, f"{br.spectral_ratio:.4g}", f"{br.frob_ratio:.4g}", br.method)
        con.print(t)
        con.print(
            f"median ‖ΔW‖₂/‖W‖₂ {b.spectral_ratio_median:.4g} (max {b.spectral_ratio_max:.4g}); "
            f"median ‖ΔW‖_F/‖W‖_F {b.frob_ratio_median:.4g} (max {b.frob_ratio_max:.4g})"
        )
