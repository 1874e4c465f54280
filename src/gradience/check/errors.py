"""The check package's 'bad input' exception (the CLI maps it to one line and exit 2)."""

from __future__ import annotations


class CheckInputError(ValueError):
    """A config source is missing, unreadable, ambiguous, unsafe (a pickle) or inconsistent."""
