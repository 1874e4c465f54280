"""Summarise a run: latest train/held-out signals, the generalisation gap, audit, guard, alerts.

The gap is `heldout.ppl / train.ppl` where held-out is split `test` when present, else
`val`; both sides come from `eval` events (a train_step's running loss is taken with
dropout on and is not comparable). An eval that logged only `loss` gets `ppl = exp(loss)`.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from pydantic import BaseModel, Field

from .reader import TelemetryEvent, TelemetryIssue, TelemetryLog
from .schema import LoraAuditMetrics


class TrainSignal(BaseModel):
    step: int | None = None
    loss: float | None = None
    lr: float | list[float] | None = None
    grad_norm: float | None = None
    epoch: float | None = None


class EvalSignal(BaseModel):
    split: str
    step: int | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)

    @property
    def ppl(self) -> float | None:
        return eval_ppl(self.metrics)


class AuditSignal(BaseModel):
    step: int | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)  # as logged

    @property
    def typed(self) -> LoraAuditMetrics:
        """The metrics as a typed model: what readers use (a hostile field is absent, not a crash)."""
        return LoraAuditMetrics.lenient(self.metrics)


class GuardSummary(BaseModel):
    """Guard activity from `metrics(kind="guard")` events (their `action` key) and guard alerts."""

    n_events: int = 0
    actions: dict[str, int] = Field(default_factory=dict)
    n_rollbacks: int = 0
    aborted: bool = False
    last: dict[str, Any] | None = None


class AlertRecord(BaseModel):
    step: int | None = None
    severity: str
    code: str
    message: str
    context: dict[str, Any] = Field(default_factory=dict)


class TelemetrySummary(BaseModel):
    path: str
    run_id: str | None = None
    run_ids: list[str] = Field(default_factory=list)
    n_events: int = 0
    status: str | None = None  # None: no run_end yet (running, or killed without a trace)
    end_reason: str | None = None
    last_step: int | None = None
    config: dict[str, Any] | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    train: TrainSignal | None = None
    evals: dict[str, EvalSignal] = Field(default_factory=dict)
    train_eval: EvalSignal | None = None
    heldout: EvalSignal | None = None
    train_ppl: float | None = None
    heldout_ppl: float | None = None
    gap: float | None = None
    gap_unavailable_reason: str | None = None
    audit: AuditSignal | None = None
    n_audits: int = 0
    guard: GuardSummary = Field(default_factory=GuardSummary)
    alerts: list[AlertRecord] = Field(default_factory=list)
    recommendations: list[dict[str, Any]] = Field(default_factory=list)
    issues: list[TelemetryIssue] = Field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def perplexity(loss: float) -> float:
    """exp(mean token loss): the one definition everywhere; a loss past exp's range is ∞, not a clamp."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


def eval_ppl(metrics: dict[str, Any]) -> float | None:
    """`ppl` if logged, else `exp(loss)`; None when neither is a usable number."""
    ppl = _num(metrics.get("ppl"))
    if ppl is not None:
        return ppl
    loss = _num(metrics.get("loss"))
    return None if loss is None else perplexity(loss)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return None if math.isnan(value) else value


def summarize(log: TelemetryLog, run_id: str | None = None) -> TelemetrySummary:
    """Summarise one run of `log` (default: the run of the file's last event)."""
    rid = run_id if run_id is not None else log.last_run_id
    events = [e for e in log.events if e.run_id == rid]
    out = TelemetrySummary(
        path=log.path, run_id=rid, run_ids=log.run_ids, n_events=len(events), issues=list(log.issues)
    )
    for e in events:
        _apply(out, e)
    out.last_step = next((e.step for e in reversed(events) if e.step is not None), None)
    out.train_eval = out.evals.get("train")
    out.heldout = out.evals.get("test") or out.evals.get("val")
    out.train_ppl = out.train_eval.ppl if out.train_eval else None
    out.heldout_ppl = out.heldout.ppl if out.heldout else None
    out.gap, out.gap_unavailable_reason = _gap(out)
    return out


def _apply(out: TelemetrySummary, e: TelemetryEvent) -> None:
    p = e.payload
    if e.event == "run_start":
        out.config = p.get("config")
        out.meta = p.get("meta") or {}
        out.status, out.end_reason = None, None
    elif e.event == "train_step":
        if p.get("loss") is not None or out.train is None or out.train.loss is None:
            out.train = TrainSignal(
                step=e.step, **{k: p.get(k) for k in ("loss", "lr", "grad_norm", "epoch")}
            )
    elif e.event == "eval":
        out.evals[p["split"]] = EvalSignal(split=p["split"], step=e.step, metrics=dict(p["metrics"]))
    elif e.event == "metrics" and p.get("kind") == "lora_audit":
        out.audit = AuditSignal(step=e.step, metrics=dict(p["metrics"]))
        out.n_audits += 1
    elif e.event == "metrics" and p.get("kind") == "guard":
        _apply_guard(out.guard, p.get("metrics") or {})
    elif e.event == "alert":
        out.alerts.append(
            AlertRecord(
                step=e.step,
                severity=p["severity"],
                code=p["code"],
                message=p["message"],
                context=p.get("context") or {},
            )
        )
    elif e.event == "recommendation":
        out.recommendations = list(p.get("recommendations") or [])
    elif e.event == "run_end":
        out.status, out.end_reason = p.get("status"), p.get("reason")


def _apply_guard(guard: GuardSummary, metrics: dict[str, Any]) -> None:
    action = str(metrics.get("action", "unknown"))
    counts = Counter(guard.actions)
    counts[action] += 1
    guard.actions = dict(counts)
    guard.n_events += 1
    guard.n_rollbacks += action == "rollback"
    guard.aborted = guard.aborted or action == "abort"
    guard.last = dict(metrics)


def _gap(out: TelemetrySummary) -> tuple[float | None, str | None]:
    if out.heldout is None:
        return None, "no held-out eval (split 'test' or 'val')"
    if out.train_eval is None:
        return None, "no train-split eval (log eval with split 'train')"
    if out.heldout_ppl is None:
        return None, f"the {out.heldout.split} eval has neither ppl nor loss"
    if out.train_ppl is None:
        return None, "the train eval has neither ppl nor loss"
    if not math.isfinite(out.train_ppl) or out.train_ppl <= 0:
        return None, f"train ppl is {out.train_ppl}"
    return out.heldout_ppl / out.train_ppl, None
