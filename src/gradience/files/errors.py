"""The refusal type and the one-line form of any OS error."""

from __future__ import annotations

import os
from typing import Any


class OutputPathError(ValueError):
    """An output path Gradience refuses to write to, because doing so could lose the user's files."""


def describe_validation_error(
    exc: Any, root: str = "value", *, limit: int | None = None, show_input: bool = False
) -> str:
    """A pydantic ValidationError as one line: each problem naming its dotted key; an unknown key
    and a missing one said as such. `limit` keeps the first few (the rest counted)."""
    errors = exc.errors()
    parts = []
    for err in errors[:limit]:
        key = ".".join(str(p) for p in err.get("loc", ())) or root
        kind = err.get("type")
        if kind == "extra_forbidden":
            parts.append(f"unknown key '{key}'")
        elif kind == "missing":
            parts.append(f"missing key '{key}'")
        else:
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            got = f" (got {err.get('input')!r:.80})" if show_input and err.get("loc") else ""
            parts.append(f"'{key}': {msg}{got}" if err.get("loc") else msg)
    more = len(errors) - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def describe_os_error(exc: OSError) -> str:
    """'cannot <do>: <cause>: <path>' in one line, whatever the OS error (read-only, no space, …)."""
    cause = exc.strerror or (os.strerror(exc.errno) if exc.errno else None) or str(exc) or type(exc).__name__
    paths = [p for p in (exc.filename, exc.filename2) if p is not None]
    where = " -> ".join(os.fsdecode(p) if isinstance(p, (bytes, str)) else str(p) for p in paths)
    return f"{cause}: {where}" if where else cause
