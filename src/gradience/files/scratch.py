"""Scratch folders in the temp dir, named by their owner's pid so a later run can sweep the dead ones."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def _owner(name: str, prefix: str) -> int | None:
    head = name[len(prefix) :].split("-", 1)[0]
    return int(head) if name.startswith(prefix) and head.isdigit() else None


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A fresh folder `<tmp>/<prefix><pid>-…`, removed on every exit path a process survives."""
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def sweep_scratch(prefix: str, root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove scratch folders whose owning process is gone (killed runs); returns what was removed."""
    base = Path(root or tempfile.gettempdir())
    removed = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return removed
    for entry in entries:
        pid = _owner(entry.name, prefix)
        if pid is None or pid == os.getpid() or pid_alive(pid) or not entry.is_dir() or entry.is_symlink():
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed
