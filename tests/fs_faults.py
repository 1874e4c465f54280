"""Filesystem answers a test cannot get for real as root (chmod does not stop root): injected."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest


def read_only_folder(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Creating anything directly inside `folder` fails as on a read-only filesystem (EROFS)."""
    real_mkdir = os.mkdir

    def mkdir(path, *a, **k):
        if Path(path).parent == folder:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
        return real_mkdir(path, *a, **k)

    monkeypatch.setattr(os, "mkdir", mkdir)
