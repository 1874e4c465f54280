"""v0.3.x import path: `from gradience.vnext.integrations.hf import GradienceCallback`."""

from gradience.integrations.hf import GradienceCallback, train_with_telemetry

__all__ = ["GradienceCallback", "train_with_telemetry"]
