"""``gradience report RUN.jsonl``: upstream v0.3.1's readable summary of a telemetry file —
events by type, evaluation accuracy (final and best per split), training loss, alerts —
read with our tolerant reader, so bad lines are counted rather than fatal."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table

from gradience.telemetry import read_telemetry


class SplitAccuracy(BaseModel):
    split: str
    n_evals: int
    final_accuracy: float | None = None
    best_accuracy: float | None = None
    final_loss: float | None = None


class TelemetryReport(BaseModel):
    path: str
    n_events: int
    n_bad_lines: int
    run_ids: list[str]
    events: dict[str, int] = Field(description="events by type")
    evals: list[SplitAccuracy] = Field(default_factory=list)
    train_steps: int = 0
    final_train_loss: float | None = None
    alerts: list[dict[str, Any]] = Field(default_factory=list)  # step, severity, code, message

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _number(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def telemetry_report(path: str | Path) -> TelemetryReport:
    log = read_telemetry(path)
    by_split: dict[str, list[dict[str, Any]]] = {}
    losses = [e.payload.get("loss") for e in log.events if e.event == "train_step"]
    for e in log.events:
        if e.event == "eval":
            by_split.setdefault(str(e.payload.get("split")), []).append(e.payload.get("metrics") or {})
    evals = []
    for split, rows in by_split.items():
        accs = [a for a in (_number(r.get("accuracy")) for r in rows) if a is not None]
        loss = [x for x in (_number(r.get("loss")) for r in rows) if x is not None]
        evals.append(SplitAccuracy(split=split, n_evals=len(rows), final_accuracy=accs[-1] if accs else None,
                                   best_accuracy=max(accs) if accs else None, final_loss=loss[-1] if loss else None))  # fmt: skip
    alerts = [
        {"step": e.step, "severity": e.payload.get("severity"), "code": e.payload.get("code"),
         "message": e.payload.get("message")}
        for e in log.events if e.event == "alert"
    ]  # fmt: skip
    return TelemetryReport(
        path=str(path), n_events=len(log.events), n_bad_lines=len(log.issues), run_ids=log.run_ids,
        events=dict(sorted(Counter(e.event for e in log.events).items())), evals=evals,
        train_steps=len(losses), final_train_loss=next((_number(x) for x in reversed(losses) if _number(x) is not None), None),
        alerts=alerts,
    )  # fmt: skip


def render_report(rep: TelemetryReport, console: Console | None = None) -> None:
    out = console or Console(soft_wrap=False)
    out.print(f"[bold]Gradience telemetry report[/bold]: {rep.path}")
    out.print(
        f"{rep.n_events} events in {len(rep.run_ids)} run(s)"
        + (f"; {rep.n_bad_lines} bad line(s) skipped" if rep.n_bad_lines else "")
    )
    table = Table("event", "count", title="Events")
    for name, n in rep.events.items():
        table.add_row(name, str(n))
    out.print(table)
    if rep.train_steps:
        loss = "—" if rep.final_train_loss is None else f"{rep.final_train_loss:.4f}"
        out.print(f"Training: {rep.train_steps} logged steps, final loss {loss}")
    if rep.evals:
        ev = Table("split", "evals", "final accuracy", "best accuracy", "final loss", title="Evaluation")
        for s in rep.evals:
            fmt = lambda x, f: "—" if x is None else format(x, f)  # noqa: E731
            ev.add_row(
                s.split,
                str(s.n_evals),
                fmt(s.final_accuracy, ".1%"),
                fmt(s.best_accuracy, ".1%"),
                fmt(s.final_loss, ".4f"),
            )
        out.print(ev)
    for a in rep.alerts:
        out.print(
            f"Alert at step {a['step'] if a['step'] is not None else '?'}: {a['severity']} {a['code']} — {a['message']}"
        )
