"""The verdicts package's one 'bad input' exception."""

from __future__ import annotations


class PolicyError(ValueError):
    """Bad input to the verdict engine: a missing or invalid policy file, or bad arguments.

    The CLI turns it into one line on stderr and exit 2, so messages are one line and
    name the offending key or argument.
    """
