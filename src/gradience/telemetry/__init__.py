"""Telemetry `gradience.vnext.telemetry/v1`: schema, append-only writer, tolerant reader, summary.

Imports nothing else from `gradience` so every other package can depend on it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import TelemetryError
from .reader import TelemetryEvent, TelemetryIssue, TelemetryLog, read_telemetry
from .schema import (
    EVAL_SPLITS,
    MAX_TEXT_LEN,
    SCHEMA,
    ConfigSnapshot,
    EventType,
    LoraAuditMetrics,
    LoRASnapshot,
    OptimizerSnapshot,
    RunStatus,
    Severity,
    TrainingSnapshot,
    signal_or_none,
)
from .summary import (
    AlertRecord,
    AuditSignal,
    EvalSignal,
    GuardSummary,
    TelemetrySummary,
    eval_ppl,
    perplexity,
    summarize,
)
from .writer import TelemetryWriter, redact, to_jsonable


def append_event_to_run(path: str | os.PathLike[str], event: str, payload: Mapping[str, Any]) -> None:
    """Append one event to an existing run file, joining its run.

    The run_id and step are those of the file's last event (latest non-null step of that
    run), so e.g. `gradience audit --append run.jsonl` lands in the run it audits. A missing
    file is created with a ``run_start`` of a fresh run (as upstream's ``--append`` created it;
    a ``note:`` line says so, so a typo is visible); its folder must exist. An empty file gets
    a fresh uuid4 run_id and step None; a file that is not telemetry is refused, unchanged.
    """
    p = Path(path)
    if not p.exists():
        if not p.parent.is_dir():
            raise TelemetryError(f"cannot create {p}: folder {p.parent} does not exist")
        logging.getLogger("gradience.telemetry").info("created %s with a run_start (it did not exist)", p)
        fresh = TelemetryWriter(p)
        try:  # no run_end: the run this file records may go on
            fresh.run_start({"notes": "created by an append to a missing run file"})
            fresh.write(event, payload, step=None)
        finally:
            fresh.close()
        return
    log = read_telemetry(p)
    run_id = log.last_run_id
    step = log.latest_step(run_id) if run_id is not None else None
    writer = TelemetryWriter(p, run_id=run_id)
    try:
        writer.write(event, payload, step=step)
    finally:
        writer.close()


__all__ = [
    "EVAL_SPLITS",
    "MAX_TEXT_LEN",
    "SCHEMA",
    "AlertRecord",
    "AuditSignal",
    "ConfigSnapshot",
    "EvalSignal",
    "EventType",
    "GuardSummary",
    "LoRASnapshot",
    "LoraAuditMetrics",
    "OptimizerSnapshot",
    "RunStatus",
    "Severity",
    "TelemetryError",
    "TelemetryEvent",
    "TelemetryIssue",
    "TelemetryLog",
    "TelemetrySummary",
    "TelemetryWriter",
    "TrainingSnapshot",
    "append_event_to_run",
    "eval_ppl",
    "perplexity",
    "read_telemetry",
    "redact",
    "signal_or_none",
    "summarize",
    "to_jsonable",
]
