"""`gradience monitor`: summarise a telemetry run file into alerts and recommendations.

Public API:
    monitor_run(path, gap_threshold=1.5, strict=False) -> MonitorReport
    analyse(summary: TelemetrySummary, gap_threshold=1.5) -> MonitorReport
    render_monitor(report, verbose=False, console=None) -> None
"""

from .core import DEFAULT_GAP_THRESHOLD, MonitorAlert, MonitorReport, analyse, monitor_run
from .render import render_monitor

__all__ = [
    "DEFAULT_GAP_THRESHOLD",
    "MonitorAlert",
    "MonitorReport",
    "analyse",
    "monitor_run",
    "render_monitor",
]
