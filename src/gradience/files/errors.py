"""The refusal type and the one-line form of any OS error."""

from __future__ import annotations

import os


class OutputPathError(ValueError):
    """An output path Gradience refuses to write to, because doing so could lose the user's files."""


def describe_os_error(exc: OSError) -> str:
    """'cannot <do>: <cause>: <path>' in one line, whatever the OS error (read-only, no space, …)."""
    cause = exc.strerror or (os.strerror(exc.errno) if exc.errno else None) or str(exc) or type(exc).__name__
    paths = [p for p in (exc.filename, exc.filename2) if p is not None]
    where = " -> ".join(os.fsdecode(p) if isinstance(p, (bytes, str)) else str(p) for p in paths)
    return f"{cause}: {where}" if where else cause
