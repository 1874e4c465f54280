"""``bench.md`` and ``bench_aggregate.md``: the human reading of ``bench.json``.

Everything shown is read from the report model, so the markdown can never disagree
with the JSON; the recommendation is one plain-language paragraph up front.
"""

from __future__ import annotations

from typing import Any

from gradience.bench.registry import CONTROLS
from gradience.bench.report import BenchReport, VariantReport
from gradience.bench.tasks.base import Metric


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _rank(v: VariantReport) -> str:
    if v.rank is not None:
        return f"r={v.rank}"
    if v.rank_pattern:
        ks = sorted(set(v.rank_pattern.values()))
        return f"per layer {ks[0]}–{ks[-1]}" if len(ks) > 1 else f"per layer {ks[0]}"
    ranks = sorted({p.rank for p in v.per_seed if p.rank is not None})
    return "r=" + "/".join(map(str, ranks)) if ranks else "—"


def recommendation(rep: BenchReport) -> str:
    """One paragraph a reader can act on; says plainly when the evidence cannot decide."""
    s, probe = rep.summary, rep.probe
    m = Metric.from_report(rep.task)
    lead = ""
    if s.smoke:
        lead = ("Smoke run: tiny training budgets, so the numbers below only show that every step works; "
                "they are not evidence about compression. ")  # fmt: skip
    if s.undertrained_seeds and not s.smoke:
        return lead + (
            f"The probe missed the quality gate ({probe.gate['threshold']:.2f}) on seed(s) "
            f"{', '.join(map(str, s.undertrained_seeds))}, so no compression was tested there: train the probe "
            "longer (train.max_steps) or with a better learning rate before trusting any rank suggestion."
        )
    if s.undertrained_seeds:
        sign = "<" if m.higher_is_better else ">"
        lead += f"The probe is undertrained ({m.title} {m.fmt(probe.accuracy)} {sign} gate {probe.gate['threshold']:.2f}). "
    if s.best_compression is None:
        screening = ""
        if s.point_rule_best is not None:
            pb = rep.compressed[s.point_rule_best]
            screening = (
                f" On point estimates alone, {s.point_rule_best} ({_rank(pb)}, {m.fmt_delta(pb.delta_vs_probe)} {m.unit}) passed "
                f"the {rep.protocol['policy']} rule: a screening result, not evidence."
            )
        return lead + (
            f"No compressed variant was shown non-inferior ({s.validated}; {s.selection}): keep the probe's "
            f"rank {probe.rank}, or size a rerun with `gradience bench plan` (more seeds or eval items)."
            + screening
        )
    best = rep.compressed[s.best_compression]
    v = best.verdict
    red = best.param_reduction
    return lead + (
        f"Use **{s.best_compression}** ({_rank(best)}): it cuts LoRA parameters by {_pct(red.lora_only if red else None)} "
        f"({_pct(red.total_trainable if red else None)} of all trainable parameters) at a {m.title} change of "
        f"{m.fmt_delta(best.delta_vs_probe)} {m.unit} vs the probe; its confidence interval lies inside the margin "
        f"(non-inferior; {s.selection}), and the {rep.protocol['policy']} point rule passed on {v.passed_seeds}/"
        f"{v.n_seeds} seed(s) (needs {v.required_seeds}). Validation level: {s.validation_level}."
    )


def _concentration_md(by_seed: dict[str, Any]) -> list[str]:
    """Which layers did the adapting (audit.concentration), per seed: probes of different seeds
    may concentrate differently, and a compression that keeps few layers relies on it."""
    if not by_seed:
        return []
    lines = ["", "### Where the update lives", "",
             "Shares of each seed's probe update energy Σ‖ΔW‖²_F over its layers; effective layers = 1/HHI "
             "(1 when one layer holds everything, the layer count when all hold the same).", "",
             "| seed | effective layers | HHI | by module type (share, effective layers) | top layers |",
             "|---|---|---|---|---|"]  # fmt: skip
    for seed, c in by_seed.items():
        kinds = "; ".join(
            f"{k} {100 * t['energy_share']:.0f}% ({t['effective_layers']:.1f})"
            for k, t in c["by_type"].items()
        )
        top = ", ".join(f"`{n}` {100 * share:.1f}%" for n, share in list(c["top_layers"].items())[:3])
        n = sum(t["n_layers"] for t in c["by_type"].values())
        lines.append(f"| {seed} | {c['effective_layers']:.1f} of {n} | {c['hhi']:.3f} | {kinds} | {top} |")
    return lines


def bench_md(rep: BenchReport, plots: dict[str, str]) -> str:
    t, p = rep.task, rep.protocol
    m = Metric.from_report(t)
    lines = [
        f"# Gradience bench: {rep.model['name']} on {t['name']}",
        "",
        f"**Recommendation.** {rep.summary.recommendation}",
        "",
        f"- Metric: **{m.describe()}**" + (f"; class order {t['labels']}" if t.get("labels") else ""),
        f"- Verdict split: **{t['eval_split']}** ({t['eval_items']} items, the same for every seed and variant)"
        + (
            f"; official validation reported beside it ({t['beside_items']} items)"
            if t.get("beside_items")
            else ""
        ),
        f"- Seeds {p['seeds']}, {p['max_steps']} steps × batch {p['batch_size']}, {t['train_items']} training items, "
        f"probe r={rep.probe.rank} (α={rep.probe.alpha:g}), policy `{p['policy']}` (margin {p['margin']:.3f})",
        f"- Validated (non-inferior, {rep.summary.selection}): **{rep.summary.validated}**; best compression: "
        f"**{rep.summary.best_compression or 'none'}**; point rule (upstream-compatible): "
        f"{rep.summary.point_rule_validated}; level: {rep.summary.validation_level}"
        + (" — SMOKE RUN" if rep.summary.smoke else ""),
        *[f"- **FAILED** (after a retry): `{k}` — {why}" for k, why in rep.summary.failed_runs.items()],
        "",
        "## Probe",
        "",
        f"| seed | {m.title} | validation | gate | LoRA params |",
        "|---|---|---|---|---|",
    ]
    for s in rep.probe.per_seed:
        gate = rep.probe.gate["by_seed"].get(str(s.seed), "")
        lines.append(
            f"| {s.seed} | {m.fmt(s.accuracy)} | {m.fmt(s.validation_accuracy)} | {gate} | {s.params:,} |"
        )
    lines += [
        "",
        f"Utilization mean {rep.probe.utilization_mean:.3f}; energy_rank_90 p50 {rep.probe.energy_rank_90_p50:g}, "
        f"p90 {rep.probe.energy_rank_90_p90:g}.",
        *_concentration_md(rep.probe.concentration),
        "",
        "## Variants",
        "",
        f"| variant | rank | LoRA params | LoRA-only cut | total cut | {m.title} | Δ ({m.unit}) | 95% CI of Δ | policy | non-inferiority |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, v in rep.compressed.items():
        red = v.param_reduction
        ci = f"[{m.fmt_delta(v.ci.low)}, {m.fmt_delta(v.ci.high)}]" if v.ci else "—"
        tag = " (control)" if name in CONTROLS else ""
        lines.append(
            f"| {name}{tag} | {_rank(v)} | {'—' if v.params is None else f'{v.params:,.0f}'} | "
            f"{_pct(red.lora_only if red else None)} | {_pct(red.total_trainable if red else None)} | "
            f"{m.fmt(v.accuracy)} | {m.fmt_delta(v.delta_vs_probe)} | {ci} | {v.verdict.point} | {v.verdict.non_inferiority} |"
        )
    lines += [
        "",
        *(f"- **{n}**: {v.verdict.statement}" for n, v in rep.compressed.items() if v.verdict.statement),
    ]
    lines += [*(f"- **{n}**: {v.note}" for n, v in rep.compressed.items() if v.note)]
    lines += ["", "## Plots", ""] + [f"![{k}]({v})" for k, v in plots.items()]
    lines += ["", f"_bench {rep.bench_version}, {rep.timestamp}, commit {rep.git_commit or 'unknown'}, "
              f"torch {rep.env.get('torch')}, transformers {rep.env.get('transformers')}, peft {rep.env.get('peft')}_", ""]  # fmt: skip
    return "\n".join(lines)


def aggregate(rep: BenchReport) -> dict[str, Any]:
    """Seed × variant matrix of Δ and pass/fail, with the quorum the policy asked for."""
    seeds = [s.seed for s in rep.probe.per_seed]
    return {
        "schema": "gradience.bench.aggregate/v1",
        "seeds": seeds,
        "probe": {
            s.seed: {"accuracy": s.accuracy, "validation_accuracy": s.validation_accuracy}
            for s in rep.probe.per_seed
        },
        "variants": {
            name: {
                "status": v.status,
                "per_seed": {str(s.seed): s.model_dump(exclude={"rank_pattern"}) for s in v.per_seed},
                "delta_mean": v.delta_vs_probe,
                "delta_worst": v.verdict.worst_delta,
                "passed_seeds": v.verdict.passed_seeds,
                "required_seeds": v.verdict.required_seeds,
                "n_seeds": v.verdict.n_seeds,
                "verdict": v.verdict.point,
                "non_inferiority": v.verdict.non_inferiority,
                "ci": v.ci.model_dump() if v.ci else None,
            }
            for name, v in rep.compressed.items()
        },
        "summary": rep.summary.model_dump(),
    }


def aggregate_md(rep: BenchReport) -> str:
    seeds = [s.seed for s in rep.probe.per_seed]
    m = Metric.from_report(rep.task)
    head = (
        "| variant | " + " | ".join(f"Δ seed {s}" for s in seeds) + " | mean | worst | pass | policy | NI |"
    )
    lines = [f"# Gradience bench aggregate: {len(seeds)} seed(s)", "",
             f"Δ = variant − probe {m.title} on the shared verdict items, in {m.unit}"
             + ("" if m.higher_is_better else " (lower is better: a negative Δ is an improvement)") + ".", "", head,
             "|" + "---|" * (len(seeds) + 6)]  # fmt: skip
    probe_row = " | ".join(m.fmt(s.accuracy) for s in rep.probe.per_seed)
    lines.append(f"| probe ({m.title}) | {probe_row} | {m.fmt(rep.probe.accuracy)} | | | | |")
    for name, v in rep.compressed.items():
        cells = " | ".join(
            m.fmt_delta(s.delta_vs_probe) if s.status != "not_run" else "—" for s in v.per_seed
        )
        vd = v.verdict
        lines.append(
            f"| {name} | {cells} | {m.fmt_delta(v.delta_vs_probe)} | {m.fmt_delta(vd.worst_delta)} | "
            f"{vd.passed_seeds}/{vd.n_seeds} (needs {vd.required_seeds}) | {vd.point} | {vd.non_inferiority} |"
        )
    lines += ["", f"Validated {rep.summary.validated}; best compression: {rep.summary.best_compression or 'none'}; "
              f"level {rep.summary.validation_level}.", ""]  # fmt: skip
    return "\n".join(lines)
