"""Upstream compatibility, one module per surface: configs, commands and JSON that upstream users
already have are read or written here, so the core never grows upstream-shaped flags."""

from gradience.compat.bench_config import UpstreamConfigError, is_upstream_config, translate_bench_config

__all__ = ["UpstreamConfigError", "is_upstream_config", "translate_bench_config"]
