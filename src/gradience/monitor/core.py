"""`gradience monitor RUN.jsonl`: a run's signals → alerts and recommendations (SPEC §4).

Works on whatever the file holds so far (a live or crashed run): the reader records bad
or torn lines as issues and the rules fire only on signals that exist. Config rules are
`check`'s, applied to the run's ConfigSnapshot; monitor adds rules on the observed gap,
audit and guard activity, then the same `finalize()` (drop config_ok if anything is
actionable, keep the most severe per action, sort).
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, Field

from gradience.check import Recommendation, config_from_snapshot, evaluate_config, finalize, rec
from gradience.telemetry import (
    SCHEMA,
    LoraAuditMetrics,
    Severity,
    TelemetryError,
    TelemetrySummary,
    read_telemetry,
    signal_or_none,
    summarize,
)

DEFAULT_GAP_THRESHOLD = 1.5


class MonitorAlert(BaseModel):
    severity: Severity
    code: str
    message: str
    context: dict[str, Any] = Field(default_factory=dict)


class MonitorReport(BaseModel):
    gap_threshold: float
    summary: TelemetrySummary
    task_profile: str | None = None
    alerts: list[MonitorAlert] = Field(default_factory=list)
    recommendations: list[Recommendation] = Field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """1 when monitor raised an error-or-worse alert (guard abort, failed run), else 0."""
        return int(any(Severity(a.severity).rank >= Severity.ERROR.rank for a in self.alerts))

    def to_json(self) -> dict[str, Any]:
        return {
            "gap_threshold": self.gap_threshold,
            "task_profile": self.task_profile,
            "summary": self.summary.to_json(),
            "alerts": [a.model_dump(mode="json") for a in self.alerts],
            "recommendations": [r.to_json() for r in self.recommendations],
            "exit_code": self.exit_code,
        }


def monitor_run(
    path: str | os.PathLike[str], gap_threshold: float = DEFAULT_GAP_THRESHOLD, strict: bool = False
) -> MonitorReport:
    """Read (tolerantly unless `strict`), summarise, and derive alerts and recommendations.

    A file with no valid event at all (empty, or not telemetry: a bench.json, a notes file) is
    bad input, not a run with many issues."""
    log = read_telemetry(path, strict=strict)
    if not log.events:
        why = f"its {len(log.issues)} line(s) are not {SCHEMA} events" if log.issues else "it is empty"
        raise TelemetryError(f"no telemetry events in {path}: {why}")
    return analyse(summarize(log), gap_threshold)


def analyse(s: TelemetrySummary, gap_threshold: float = DEFAULT_GAP_THRESHOLD) -> MonitorReport:
    report = MonitorReport(gap_threshold=gap_threshold, summary=s)
    report.alerts = derive_alerts(s, gap_threshold)
    recs: list[Recommendation] = []
    if s.config is not None:
        checked = evaluate_config(config_from_snapshot(s.config), source="config")
        report.task_profile = checked.task_profile
        recs.extend(checked.recommendations)
    recs.extend(gap_rules(s, gap_threshold))
    recs.extend(audit_rules(s))
    report.recommendations = finalize(recs)
    return report


def derive_alerts(s: TelemetrySummary, threshold: float) -> list[MonitorAlert]:
    alerts: list[MonitorAlert] = []
    if s.gap is not None and s.gap >= threshold:
        alerts.append(
            MonitorAlert(
                severity=Severity.WARNING,
                code="memorization_gap",
                message=f"held-out/train perplexity gap {s.gap:.2f} ≥ {threshold:g}: the adapter is memorising",
                context={
                    "gap": s.gap,
                    "threshold": threshold,
                    "train_ppl": s.train_ppl,
                    "heldout_ppl": s.heldout_ppl,
                    "heldout_split": s.heldout.split if s.heldout else None,
                },
            )
        )
    if s.gap is None:
        alerts.append(
            MonitorAlert(
                severity=Severity.INFO,
                code="gap_unavailable",
                message=f"generalisation gap cannot be computed: {s.gap_unavailable_reason}",
            )
        )
    if s.guard.aborted or any(a.code == "guard_abort" for a in s.alerts):
        alerts.append(
            MonitorAlert(
                severity=Severity.ERROR,
                code="guard_abort",
                message="the guard aborted training after exhausting its rollbacks",
                context={"n_rollbacks": s.guard.n_rollbacks, "last": s.guard.last},
            )
        )
    interventions = s.guard.n_rollbacks + s.guard.actions.get("skip", 0)
    if interventions:
        alerts.append(
            MonitorAlert(
                severity=Severity.WARNING,
                code="guard_intervention",
                message=f"the guard intervened {interventions} time(s) ({s.guard.n_rollbacks} rollback(s))",
                context={"actions": s.guard.actions},
            )
        )
    if s.status == "error":
        alerts.append(
            MonitorAlert(
                severity=Severity.ERROR,
                code="run_error",
                message=f"the run ended with an error: {s.end_reason}",
            )
        )
    return alerts


def gap_rules(s: TelemetrySummary, threshold: float) -> list[Recommendation]:
    out: list[Recommendation] = []
    if s.gap is None:
        out.append(
            rec(
                "info",
                "log_train_test_ppl",
                "Log eval on both a train subset and held-out data (ppl or loss) so the gap can be computed.",
                f"Memorisation shows as held-out ppl / train ppl; here: {s.gap_unavailable_reason}.",
                0.8,
                "monitor",
            )
        )
        return out
    if s.gap >= threshold:
        out.append(
            rec(
                "warning",
                "memorization_detected",
                f"Held-out ppl is {s.gap:.2f}x train ppl: the adapter memorises the training set.",
                f"A gap ≥ {threshold:g} means training loss improves without held-out loss following.",
                0.8,
                "monitor",
                gap=s.gap,
            )
        )
        out.append(
            rec(
                "warning",
                "lower_lr",
                "Lower the learning rate to about 5e-5 (and/or stop earlier).",
                "Smaller steps reduce memorisation; the gap says the current lr overshoots.",
                0.7,
                "monitor",
                lr=5e-5,
            )
        )
    acc = _num((s.heldout.metrics if s.heldout else {}).get("accuracy"))
    sr = s.audit.typed.stable_rank_mean if s.audit else None
    if s.gap < 1.2 and acc is not None and acc < 0.2 and sr is not None and sr < 2:
        out.append(
            rec(
                "warning",
                "possible_underfitting",
                f"No gap ({s.gap:.2f}), held-out accuracy {acc:.2f} and stable rank {sr:.2f}: the adapter has barely learned.",
                "Train and held-out agree but both are poor, and the update spans under two directions.",
                0.5,
                "monitor",
            )
        )
    return out


def audit_rules(s: TelemetrySummary) -> list[Recommendation]:
    from gradience.audit import default_allowed_ranks, snap_rank

    if s.audit is None:
        return []
    m = s.audit.typed
    lora = (s.config or {}).get("lora") if isinstance(s.config, dict) else None
    r = m.r or (_int(lora.get("r")) if isinstance(lora, dict) else None)
    sr, util, p90 = m.stable_rank_mean, m.utilization_mean, m.energy_rank_90_p90
    out: list[Recommendation] = []
    if r and r >= 16 and sr is not None and sr / r < 0.25:
        out.append(
            rec(
                "info",
                "low_utilization",
                f"Stable rank {sr:.2f} of r={r} ({sr / r:.0%}): most of the rank is unused.",
                "Stable rank / r below 0.25 means a few directions carry almost all of the update.",
                0.6,
                "monitor",
                utilization=sr / r,
            )
        )
    if r and r >= 16 and ((util is not None and util < 0.25) or (p90 is not None and 0 < p90 <= r / 2)):
        allowed = [k for k in m.allowed_ranks or [] if k > 0] or default_allowed_ranks(r)
        k = snap_rank(p90 if p90 else 1, allowed, r)
        if k < r:
            out.append(_compress_rank(m, r, k, p90, util))
    mlp, attn = m.by_type.get("mlp"), m.by_type.get("attn")
    mlp_u = mlp.utilization_mean if mlp else None
    attn_u = attn.utilization_mean if attn else None
    if mlp_u is not None and attn_u is not None and mlp_u < 0.10 and attn_u >= 2 * mlp_u:
        out.append(
            rec(
                "info",
                "compress_mlp_targets",
                f"MLP utilisation {mlp_u:.0%} vs attention {attn_u:.0%}: drop or shrink the MLP targets.",
                "The MLP adapters use under 10% of their rank while attention uses at least twice as much.",
                0.5,
                "monitor",
                mlp_utilization=mlp_u,
                attn_utilization=attn_u,
            )
        )
    return out


def _compress_rank(
    m: LoraAuditMetrics, r: int, k: int, p90: float | None, util: float | None
) -> Recommendation:
    total = m.total_lora_params
    ranks = m.ranks or [r]
    saving = None
    if total and len(ranks) == 1:
        saving = total - total * k // r  # every layer at rank r: params are exactly r·(in+out) per layer
    tail = f", saving {saving:,} LoRA parameters ({1 - k / r:.0%})" if saving is not None else ""
    return rec(
        "info",
        "compress_rank",
        f"Compress to r={k} (energy_rank_90 p90 {p90 if p90 is not None else 'n/a'} snapped up){tail}.",
        f"90% of the update's energy fits in ≤ {p90:g} directions in 90% of layers"
        if p90
        else f"utilisation {util:.0%} is below 25%",
        0.7,
        "monitor",
        r=k,
        current_r=r,
        lora_params_saved=saving,
    )


def _num(value: Any) -> float | None:
    return signal_or_none(value)


def _int(value: Any) -> int | None:
    num = _num(value)
    return int(num) if num is not None else None
