"""Rich text summary of a CompressionReport (the CLI's default output)."""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.table import Table

from gradience.compress.report import CompressionReport


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def render_compress(report: CompressionReport, *, console: Console | None = None, worst: int = 5) -> None:
    """Headline numbers, the rank changes grouped, and the layers that keep the least energy."""
    con = console or Console()
    t = report.totals
    con.print(f"[bold]LoRA compress[/bold] {report.source} → {report.destination}")
    head = Table(show_header=False, box=None)
    plan = ", ".join(f"{k}={v}" for k, v in report.plan.items()) or report.strategy
    head.add_row("strategy", plan)
    head.add_row("layers truncated", f"{t.n_truncated} of {t.n_layers}")
    head.add_row(
        "LoRA params",
        f"{t.lora_params_before:,} → {t.lora_params_after:,} ({_pct(t.lora_reduction)} LoRA-only reduction)",
    )
    head.add_row(
        "total trainable params",
        f"{t.total_trainable_before:,} → {t.total_trainable_after:,} ({_pct(t.total_reduction)} reduction; "
        f"{t.other_params:,} carried over unchanged in {len(report.carried_keys)} tensors)",
    )
    head.add_row(
        "retained energy ‖ΔW_k‖²/‖ΔW‖²",
        f"{_pct(t.retained_energy)} overall, {_pct(t.min_layer_retained_energy)} in the worst layer",
    )
    cfg = report.config
    head.add_row(
        "adapter_config",
        f"r={cfg['r']}, lora_alpha={cfg['lora_alpha']}, use_rslora={cfg.get('use_rslora', False)}, "
        f"{len(cfg.get('rank_pattern') or {})} rank_pattern / {len(cfg.get('alpha_pattern') or {})} "
        "alpha_pattern entries (every layer keeps its scale)",
    )
    head.add_row("dtype", ", ".join(report.dtypes))
    con.print(head)

    changes = Counter((la.module_type, la.old_rank, la.new_rank) for la in report.layers)
    ct = Table(title="Rank changes", title_justify="left")
    for col in ("type", "old r", "new r", "layers"):
        ct.add_column(col, justify="right")
    for (mtype, old, new), n in sorted(changes.items(), key=lambda kv: (kv[0][0], -kv[0][1], -kv[0][2])):
        ct.add_row(mtype, str(old), str(new), str(n))
    con.print(ct)

    lows = sorted((la for la in report.layers if la.truncated), key=lambda la: la.retained_energy)[:worst]
    if lows:
        wt = Table(title=f"Lowest retained energy ({len(lows)} layers)", title_justify="left")
        for col in ("layer", "r → k", "retained", "‖ΔW − ΔW_k‖_F", "params"):
            wt.add_column(col, justify="left" if col == "layer" else "right", overflow="fold")
        for la in lows:
            wt.add_row(
                la.name,
                f"{la.old_rank} → {la.new_rank}",
                _pct(la.retained_energy),
                f"{la.frob_error:.4g}",
                f"{la.old_params:,} → {la.new_params:,}",
            )
        con.print(wt)
