"""Bench: turn suggested rank reductions into tested claims (SPEC §5).

Per seed: train a probe adapter, gate its quality, audit the final adapter, build
compressed variants (retrained or SVD-truncated), evaluate every run on the same
items, judge each variant against a policy, and write the reports.
"""

from __future__ import annotations


class BenchInputError(ValueError):
    """Bad bench input (config, data, model): the CLI prints one line and exits 2."""


__all__ = ["BenchInputError"]
