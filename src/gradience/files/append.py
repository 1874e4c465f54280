"""Appends that lose nothing: a torn last line is closed before the new one, a failed write is undone.

A crashed writer or a full disk can leave a file ending mid-line; appending straight after it
would glue the new event onto the fragment and lose both. And a write that fails part-way
(ENOSPC) must not leave a new fragment behind: the file is cut back to its previous length.
Each append holds an exclusive `flock` over check-and-write, so concurrent writers of ours never
mistake each other's line in flight for a torn one, and a cut-back never removes theirs.
"""

from __future__ import annotations

import fcntl
import os


def open_append(path: str | os.PathLike[str]) -> int:
    """An O_APPEND descriptor that can also read the file's tail (created if missing)."""
    return os.open(os.fspath(path), os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)


def ends_torn(fd: int) -> bool:
    """True when the file is non-empty and its last byte is not a newline."""
    size = os.fstat(fd).st_size
    return size > 0 and os.pread(fd, 1, size - 1) != b"\n"


def append_bytes(fd: int, data: bytes, *, close_torn: bool = True, fsync: bool = False) -> None:
    """Append `data` whole (after a newline if the file ends torn), or leave the file exactly as
    it was and raise the OSError."""
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        before = os.fstat(fd).st_size
        if close_torn and ends_torn(fd):
            data = b"\n" + data
        try:
            view = memoryview(data)
            while view:  # regular files do not short-write in practice; be correct anyway
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
        except OSError:
            try:
                if os.fstat(fd).st_size > before:
                    os.ftruncate(fd, before)
            except OSError:
                pass
            raise
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
