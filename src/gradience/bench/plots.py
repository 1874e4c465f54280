"""The two PNG figures of ``bench.md``, drawn with matplotlib's file-only Agg backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gradience.audit import LayerAudit

TYPE_COLOURS = {"attn": "#1f77b4", "mlp": "#ff7f0e", "other": "#7f7f7f"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display on CI machines; never open a window
    import matplotlib.pyplot as plt

    return plt


def accuracy_vs_params(
    points: list[dict[str, Any]], probe_acc: float, margin: float, path: Path, metric: Any = None
) -> None:
    """Each run's mean metric (accuracy unless ``metric`` says otherwise) against its LoRA parameters.

    Error bars are the paired 95% CI of Δ (variant − probe) placed around the probe's
    value, i.e. the range the verdict actually reasons about. (The file keeps SPEC §5's name.)
    """
    title = metric.title if metric is not None else "accuracy"
    rate = metric is None or metric.binary
    worse = -1.0 if metric is None or metric.higher_is_better else 1.0
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for p in points:
        x, y = p["params"], p["accuracy"]
        lo, hi = p.get("ci") or (None, None)
        # a rate's bars stop at [0, 1]: a wide CI of Δ would otherwise run past the possible values
        low, high = (None, None) if lo is None else (probe_acc + lo, probe_acc + hi)
        if rate and low is not None:
            low, high = max(0.0, low), min(1.0, high)
        err = None if low is None else [[max(0.0, y - low)], [max(0.0, high - y)]]
        marker = "*" if p["name"] == "probe" else "o"
        ax.errorbar([x], [y], yerr=err, fmt=marker, ms=12 if marker == "*" else 7, capsize=4, label=p["name"])
    ax.axhline(probe_acc, color="grey", lw=0.8, ls="--")
    sign = "−" if worse < 0 else "+"
    ax.axhline(
        probe_acc + worse * margin, color="red", lw=0.8, ls=":", label=f"probe {sign} margin ({margin:.3f})"
    )
    ax.set_xscale("log")
    ax.set_xlabel("LoRA parameters (log scale)")
    ax.set_ylabel(f"{title} (mean over seeds)")
    ax.set_title(f"{title[:1].upper() + title[1:]} vs LoRA parameters (bars: paired 95% CI of Δ vs probe)")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def energy_ranks(layers: list[LayerAudit], probe_r: int, pattern: dict[str, int], path: Path) -> None:
    """The probe's energy_rank_90 per layer (coloured by module type) and the per-layer suggestion."""
    plt = _pyplot()
    layers = sorted(layers, key=lambda la: _natural(la.name))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.22 * len(layers) + 2), 4.2), dpi=110)
    xs = range(len(layers))
    colours = [TYPE_COLOURS.get(la.module_type, "#7f7f7f") for la in layers]
    ax.bar(xs, [la.energy_rank_90 for la in layers], color=colours)
    ax.scatter(xs, [pattern.get(la.name, 0) for la in layers], marker="_", s=120, color="k", zorder=3,
               label="per_layer suggestion")  # fmt: skip
    ax.axhline(probe_r, color="grey", ls="--", lw=0.8, label=f"probe r = {probe_r}")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([_short(la.name) for la in layers], rotation=90, fontsize=6)
    ax.set_ylabel("energy_rank_90 (bars, by module type)")
    ax.set_title("Probe: rank holding 90% of each layer's update energy")
    for t, c in TYPE_COLOURS.items():
        if any(la.module_type == t for la in layers):
            ax.bar([0], [0], color=c, label=t)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _natural(name: str) -> list[Any]:
    """Layer 2 before layer 10."""
    return [int(p) if p.isdigit() else p for p in name.split(".")]


def _short(name: str) -> str:
    """'bert.encoder.layer.3.attention.self.query' → 'L3.query' (tick labels must stay legible)."""
    parts = name.split(".")
    layer = next(
        (parts[i + 1] for i, p in enumerate(parts[:-1]) if p in {"layer", "layers", "h", "block"}), ""
    )
    tail = ".".join(parts[-3:]) if parts[-1] == "dense" else parts[-1]
    return f"L{layer}.{tail}" if layer else tail
