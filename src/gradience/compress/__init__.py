"""SVD truncation of a PEFT LoRA adapter into a smaller PEFT adapter, from the audit's r×r cores.

Public API:
    compress_adapter(src, dst, plan, *, overwrite=False) -> CompressionReport
    CompressionPlan(rank=… | energy=… | budget_params=… | budget_ratio=… | from_audit=True
                    | rank_pattern={…}, allowed_ranks=None, per_layer_margin=1.0)
    truncate_factors(A, B, k) -> (A', B')   (balanced rank-k factors of B·A, float64)
    render_compress(report)                 (rich text summary)
    CompressError                            (bad plan or input; CLI exit 2)

`render_compress` (rich) is imported on first use: the --json path does not need it.
"""

from typing import Any

from gradience.compress.core import compress_adapter
from gradience.compress.errors import CompressError
from gradience.compress.factors import truncate_factors
from gradience.compress.plan import ALPHA_MODES, SAVE_DTYPES, CompressionPlan, choose_ranks
from gradience.compress.report import CompressionReport, CompressionTotals, LayerCompression

__all__ = [
    "ALPHA_MODES",
    "SAVE_DTYPES",
    "CompressError",
    "CompressionPlan",
    "CompressionReport",
    "CompressionTotals",
    "LayerCompression",
    "choose_ranks",
    "compress_adapter",
    "render_compress",
    "truncate_factors",
]


def __getattr__(name: str) -> Any:
    if name != "render_compress":
        raise AttributeError(f"module 'gradience.compress' has no attribute {name!r}")
    from gradience.compress.render import render_compress

    globals()[name] = render_compress
    return render_compress
