"""The telemetry package's single 'bad input' exception (the CLI maps it to exit 2)."""

from __future__ import annotations


class TelemetryError(ValueError):
    """A telemetry file or event is unusable: missing file, invalid event, strict-mode violation."""
