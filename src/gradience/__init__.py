"""Gradience: learn, with honest statistics, how small a LoRA adapter can be."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gradience")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
