"""certify.md and the terminal summary: the plain-language answer first, then the evidence."""

from __future__ import annotations

from gradience.bench.certify.models import CandidateResult, CertifyReport
from gradience.bench.tasks import Metric

PLOT_NAME = "certify.png"
STATUS_WORDS = {
    "PASS": "non-inferior",
    "FAIL": "inferior",
    "INCONCLUSIVE": "not shown non-inferior",
    "STOPPED": "stopped early: cannot be shown non-inferior",
    "NOT_TESTED": "not tested (the sequence had stopped)",
}


def _rank_words(c: CandidateResult) -> str:
    eq = c.rank_equivalent
    size = f"rank-{eq:.0f}" if abs(eq - round(eq)) < 0.05 else f"rank-{eq:.1f}"
    spread = (
        f"rank {c.rank_min}" if c.rank_min == c.rank_max else f"ranks {c.rank_min}–{c.rank_max} per layer"
    )
    return f"{size} equivalent ({spread})"


def _points(value: float, metric: Metric) -> str:
    return f"{metric.scale(value):.1f}" if metric.binary else f"{value:.4f}"


def answer(report: CertifyReport, metric: Metric) -> str:
    """The sentence a user reads first."""
    pct = f"{100 * report.confidence:g}%"
    n = f"{report.data.n_items:,} items"
    cert = next((c for c in report.candidates if c.name == report.certified), None)
    if cert is None:
        first = report.candidates[0]
        return (
            f"Nothing smaller than the adapter was certified: the largest candidate ({first.name}, "
            f"{100 * first.lora_reduction:.1f}% fewer LoRA parameters) was {STATUS_WORDS[first.status]} at margin "
            f"{_points(report.margin, metric)} {metric.unit} on {n}. Keep the original."
        )
    worst = -(cert.ci_low or 0.0)
    bound = (
        f"at most {_points(worst, metric)} {metric.unit} worse"
        if worst > 0
        else f"no worse (the CI's low end is {_points(-worst, metric)} {metric.unit} better)"
    )
    return (
        f"{_rank_words(cert)}, −{100 * cert.lora_reduction:.1f}% LoRA parameters, {bound} with {pct} confidence "
        f"on {n} ({metric.title})."
    )


def guarantee(n_items: int, source: str, margin: float, confidence: float, metric: Metric) -> str:
    one_sided = (1 - confidence) / 2
    measured = (  # tests/certify/test_simulation.py, 4,000 replications per regime
        "simulated at 500–2,000 items it was 2.6–3.5%, always under 5%"
        if abs(confidence - 0.95) < 1e-12
        else "the realised rate can be somewhat above the design level"
    )
    return (
        f"Candidates were tested in a fixed sequence, largest first; each was tested only if every larger one "
        f"had been shown non-inferior, and the first one not shown non-inferior ended the sequence. Each test is "
        f"the paired non-inferiority test of gradience.verdicts: the low end of the two-sided {100 * confidence:g}% "
        f"Newcombe interval of Δ (candidate − original, same items) must lie above −{_points(margin, metric)} "
        f"{metric.unit}, a one-sided test at level {100 * one_sided:g}%. Because a hypothesis is tested only when "
        f"all earlier ones were rejected, the first truly inferior candidate the sequence reaches is the only "
        f"chance of an error, so the family-wise probability of certifying a candidate that is in truth worse "
        f"than the original by the margin or more is that one test's level, {100 * one_sided:g}% by design, with "
        f"no split of the level across candidates (the interval is approximate: {measured}). The guarantee covers the population the "
        f"{n_items:,} evaluation items were drawn from ({source}): it says nothing about other tasks, other data "
        f"distributions or other settings."
    )


def _row(c: CandidateResult, metric: Metric) -> str:
    if c.status == "NOT_TESTED":
        cells = ["—"] * 4
    else:
        ci = "—" if c.ci_low is None else f"[{metric.fmt_delta(c.ci_low)}, {metric.fmt_delta(c.ci_high)}]"
        items = f"{c.n_evaluated:,}" + (" (stopped)" if c.stopped_early else "")
        cells = [metric.fmt(c.metric_value), metric.fmt_delta(c.delta), ci, items]
    ranks = f"{c.rank_min}" if c.rank_min == c.rank_max else f"{c.rank_min}–{c.rank_max}"
    return (
        f"| {c.name} | {c.lora_params:,} | {100 * c.lora_reduction:.1f}% | {ranks} | {c.rank_equivalent:.1f} | "
        f"{100 * c.retained_energy:.1f}% | " + " | ".join(cells) + f" | {STATUS_WORDS[c.status]} |"
    )


def render_markdown(report: CertifyReport, metric: Metric) -> str:
    o = report.original
    lines = [
        f"# gradience certify: {report.adapter}",
        "",
        f"**{report.answer}**",
        "",
        f"- Certified adapter: `{report.certified_dir}` ({report.certified})" if report.certified else
        "- No certified adapter was written (nothing smaller passed).",
        f"- Adapter `{report.adapter}` on base model `{report.base_model}`; task {report.task_type}, "
        f"metric {metric.describe()}",
        f"- Data: {report.data.source} ({report.data.split} split, {report.data.n_items:,} of "
        f"{report.data.rows_in_split:,} rows; fingerprint `{report.data.fingerprint}`)",
        f"- Margin {_points(report.margin, metric)} {metric.unit}, confidence {100 * report.confidence:g}%, "
        f"ladder `{report.ladder}` (steps {', '.join(s if isinstance(s, str) else f'{s:g}' for s in report.steps)})",
        f"- What the item count resolves: {report.resolution.message}.",
    ]  # fmt: skip
    if report.resolution.warning:
        lines.append(f"- **Warning:** {report.resolution.warning}.")
    lines += [f"- Ladder note: {n}" for n in report.ladder_notes]
    lines += [
        "",
        "## Ladder",
        "",
        f"| step | LoRA params | cut | ranks | rank equiv. | energy kept | {metric.title} | Δ ({metric.unit}) | "
        f"{100 * report.confidence:g}% CI of Δ | items | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| original | {o.lora_params:,} | — | {o.rank_max} | — | 100% | {metric.fmt(o.metric_value)} | — | — | "
        f"{o.n_items:,} | reference |",
        *[_row(c, metric) for c in report.candidates],
        "",
        "A stopped candidate's values are over the items scored before it stopped (the shortest ones first): "
        "at that point even the best possible outcomes on the rest could not have made it non-inferior.",
        "",
        f"![{metric.title} vs LoRA parameters]({PLOT_NAME})",
        "",
        "## What the guarantee covers",
        "",
        report.guarantee,
        "",
        "## Timings",
        "",
        ", ".join(f"{k} {v:.1f} s" for k, v in report.timings.items()),
        "",
        f"_certify {report.certify_version}, gradience {report.gradience_version}, {report.created}, "
        + ", ".join(f"{k} {v}" for k, v in report.versions.items())
        + f", device {report.device}_",
    ]
    return "\n".join(lines) + "\n"


def render_text(report: CertifyReport, metric: Metric) -> str:
    """What the terminal shows: the answer, then one line per candidate."""
    lines = [report.answer, ""]
    for c in report.candidates:
        if c.status == "NOT_TESTED":
            lines.append(f"  {c.name:<14} {c.lora_params:>10,} params  not tested")
            continue
        ci = "" if c.ci_low is None else f" CI [{metric.fmt_delta(c.ci_low)}, {metric.fmt_delta(c.ci_high)}]"
        lines.append(
            f"  {c.name:<14} {c.lora_params:>10,} params  {metric.fmt(c.metric_value)}  Δ {metric.fmt_delta(c.delta)}"
            f"{ci}  {STATUS_WORDS[c.status]}"
        )
    where = f"; certified adapter in {report.certified_dir}" if report.certified_dir else ""
    lines += ["", f"report: {report.data.n_items:,} items{where}"]
    return "\n".join(lines)
