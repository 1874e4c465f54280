"""Shared benchmark plumbing: machine description, timing, and writing results/ files."""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"


def timed(fn: Callable[[], object], repeats: int = 3) -> float:
    """Median wall time of `repeats` calls."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def write_result(name: str, body: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    today = dt.date.today().isoformat()
    path = RESULTS / f"{name}_{today}.md"
    path.write_text(f"# {name} — {today}\n\nMachine: {machine()}\n\n{body}\n")
    return path
