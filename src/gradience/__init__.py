"""Gradience: learn, with honest statistics, how small a LoRA adapter can be."""

import os
import sys
from typing import Any

__all__ = ["__version__"]


def _dist_info_version() -> str | None:
    """The Version line of the first gradience-*.dist-info on sys.path: where importlib.metadata
    would find it, read without importing it and its email parser (~35 ms of an audit command
    that takes ~1 s). None when not found that way (importlib.metadata then decides)."""
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if name.lower().startswith("gradience-") and name.endswith(".dist-info"):
                try:
                    with open(os.path.join(entry or ".", name, "METADATA"), encoding="utf-8") as fh:
                        for line in fh:
                            if line.startswith("Version:"):
                                return line.split(":", 1)[1].strip()
                            if not line.strip():  # end of the headers
                                break
                except OSError:
                    pass
                return None
    return None


def __getattr__(name: str) -> Any:
    """``__version__`` on first use: `--help` need not pay for finding it."""
    if name != "__version__":
        raise AttributeError(f"module 'gradience' has no attribute {name!r}")
    value = _dist_info_version()
    if value is None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("gradience")
        except PackageNotFoundError:  # running from a source tree that was never installed
            value = "0+unknown"
    globals()["__version__"] = value
    return value
