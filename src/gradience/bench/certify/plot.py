"""certify.png: the metric against LoRA parameters, the paired CIs, and the certified point.

Drawn into memory with matplotlib's file-only Agg backend and written by ``files.write_atomic``,
so a half-written image is never left behind.
"""

from __future__ import annotations

import io

from gradience.bench.certify.models import CertifyReport
from gradience.bench.tasks import Metric

COLOURS = {"PASS": "#2ca02c", "FAIL": "#d62728", "INCONCLUSIVE": "#ff7f0e", "STOPPED": "#d62728"}


def plot_png(report: CertifyReport, metric: Metric) -> bytes:
    """Error bars are the paired CI of Δ (candidate − original) placed around the original's value:
    the interval the verdict reasons about, not the candidate's own binomial interval."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    s = metric.scale
    orig = report.original
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.plot([orig.lora_params], [s(orig.metric_value)], "*", ms=14, color="k", label="original")
    for c in report.candidates:
        if c.metric_value is None or c.ci_low is None or c.ci_high is None:
            continue
        y = s(orig.metric_value + (c.delta or 0.0)) if c.stopped_early else s(c.metric_value)
        lo, hi = s(orig.metric_value + c.ci_low), s(orig.metric_value + c.ci_high)
        err = [[max(0.0, y - lo)], [max(0.0, hi - y)]]
        colour = COLOURS.get(c.status, "#7f7f7f")
        ax.errorbar([c.lora_params], [y], yerr=err, fmt="o", ms=7, capsize=4, color=colour)
        ax.annotate(c.name + (" (stopped)" if c.stopped_early else ""), (c.lora_params, y), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")  # fmt: skip
    cert = next((c for c in report.candidates if c.name == report.certified), None)
    if cert is not None and cert.metric_value is not None:
        ax.plot([cert.lora_params], [s(cert.metric_value)], "o", ms=16, mfc="none", mec="#2ca02c", mew=2,
                label=f"certified: {cert.name}")  # fmt: skip
    sign = -1 if metric.higher_is_better else 1
    ax.axhline(s(orig.metric_value), color="grey", lw=0.8, ls="--")
    ax.axhline(s(orig.metric_value + sign * report.margin), color="red", lw=0.8, ls=":",
               label=f"original − margin ({s(report.margin):g} {metric.unit})")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("LoRA parameters (log scale)")
    ax.set_ylabel(f"{metric.title}" + (" (%)" if metric.binary else ""))
    pct = round(100 * report.confidence)
    ax.set_title(
        f"{metric.title} vs LoRA parameters (bars: paired {pct}% CI of Δ vs the original)", fontsize=9
    )
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
