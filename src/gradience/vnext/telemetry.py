"""v0.3.x import path for the telemetry API; see `gradience.telemetry`."""

from gradience.telemetry import *  # noqa: F403
from gradience.telemetry import __all__  # noqa: F401
