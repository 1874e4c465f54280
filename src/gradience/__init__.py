"""Gradience: learn, with honest statistics, how small a LoRA adapter can be."""

from typing import Any

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    """``__version__`` on first use: importlib.metadata costs ~50 ms that `--help` need not pay."""
    if name != "__version__":
        raise AttributeError(f"module 'gradience' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        value = version("gradience")
    except PackageNotFoundError:  # running from a source tree that was never installed
        value = "0+unknown"
    globals()["__version__"] = value
    return value
