"""Upstream compatibility, one module per surface: configs, commands and JSON that upstream users
already have are read or written here, so the core never grows upstream-shaped flags.

The bench-config names are imported on first use: every command line passes through
`compat.cli_args`, and only `bench` needs the config translator.
"""

from typing import Any

__all__ = ["UpstreamConfigError", "is_upstream_config", "translate_bench_config"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'gradience.compat' has no attribute {name!r}")
    from gradience.compat import bench_config

    value = getattr(bench_config, name)
    globals()[name] = value
    return value
