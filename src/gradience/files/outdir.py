"""Output folders that never cost the user a file.

Every command that writes a folder (compress, bench, and those to come) goes through here:
- the output may not be the input, contain it, or lie inside it, symlinks resolved;
- `overwrite` only ever replaces a folder Gradience wrote, recognised by its marker file;
- the new folder is built beside OUT under a hidden name and swapped in with one atomic
  `renameat2(RENAME_EXCHANGE)`, so a kill at any instant leaves OUT complete, old or new.
  Where the filesystem cannot exchange, OUT is moved aside and the new folder renamed in; a
  kill between those two renames leaves the old folder under `.OUT.old-<pid>-*`, and the next
  run that targets OUT puts it back;
- leftovers of interrupted runs (`.OUT.tmp-<pid>-*`, `.OUT.old-<pid>-*` of dead pids) are
  recovered or removed, and each action is logged.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputPathError
from .faults import checkpoint
from .scratch import pid_alive

MARKER = ".gradience-output.json"
log = logging.getLogger("gradience.files")


def mark_folder(folder: Path, kind: str) -> None:
    """Write the marker that lets a later `--overwrite` recognise this folder as ours."""
    from gradience import __version__

    body = {"tool": "gradience", "kind": kind, "version": __version__, "created": time.time()}
    (Path(folder) / MARKER).write_text(json.dumps(body) + "\n", encoding="utf-8")


def is_ours(folder: Path) -> bool:
    try:
        body = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(body, dict) and body.get("tool") == "gradience"


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and next(path.iterdir(), None) is None


def check_output_dir(
    dst: Path,
    inputs: Iterable[Path] = (),
    *,
    overwrite: bool = False,
    overwrite_hint: str = "pass --overwrite to replace it",
    accept_existing: bool = False,
) -> Path:
    """Validate an output folder and return the real path to write (symlinks resolved).

    A non-empty folder is refused unless `overwrite` (and it is ours) or `accept_existing`
    (the caller writes into it in place, e.g. a bench resuming; it must still be ours)."""
    dst = Path(dst)
    if dst.is_symlink() and not dst.exists():
        raise OutputPathError(f"output path is a dangling symlink: {dst} -> {os.readlink(dst)}")
    real = dst.resolve()
    if real.exists() and not real.is_dir():
        raise OutputPathError(f"output path exists and is not a directory: {dst}")
    for parent in real.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputPathError(f"output path {dst} lies under {parent}, which is not a directory")
            break
    for src in inputs:
        s = Path(src).resolve()
        if real == s:
            raise OutputPathError(f"output folder is the input folder: {dst}")
        if real in s.parents:
            raise OutputPathError(
                f"output folder {dst} contains the input {src}: writing it could delete the input"
            )
        if s in real.parents:
            raise OutputPathError(
                f"output folder {dst} is inside the input {src}; choose a folder outside it"
            )
    if real.is_dir() and not _is_empty_dir(real):
        if not (overwrite or accept_existing):
            raise OutputPathError(f"output folder is not empty: {dst} ({overwrite_hint})")
        if not is_ours(real):
            raise OutputPathError(
                f"output folder {dst} is not empty and was not written by Gradience (no {MARKER}); "
                "refusing to replace it — choose a new folder or empty it yourself"
            )
    return real


def _side_name(real: Path, tag: str) -> Path:
    return real.parent / f".{real.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _leftovers(real: Path) -> tuple[list[Path], list[Path]]:
    """This OUT's temp (`.N.tmp-<pid>-<hex>`) and moved-aside (`.N.old-…`) folders of dead runs.

    The name alone identifies them (a half-removed one may have lost its marker already)."""
    pattern = re.compile(rf"\.{re.escape(real.name)}\.(tmp|old)-(\d+)-[0-9a-f]{{8}}")
    tmps, olds = [], []
    try:
        siblings = list(real.parent.iterdir())
    except OSError:
        return tmps, olds
    for p in siblings:
        m = pattern.fullmatch(p.name)
        if m and int(m[2]) != os.getpid() and not pid_alive(int(m[2])) and p.is_dir() and not p.is_symlink():
            (tmps if m[1] == "tmp" else olds).append(p)
    return tmps, olds


def recover(real: Path) -> list[str]:
    """Undo what an interrupted run left at `real`: restore a moved-aside OUT, remove stale temps."""
    tmps, olds = _leftovers(real)
    actions = []
    complete = [p for p in olds if is_ours(p)]  # moved aside whole, so whole while marked
    if complete and not real.exists() and not real.is_symlink():
        newest = max(complete, key=lambda p: p.stat().st_mtime)
        os.rename(newest, real)
        olds.remove(newest)
        actions.append(f"restored {real} from {newest.name}, left by an interrupted run")
    for p in [*tmps, *olds]:
        shutil.rmtree(p, ignore_errors=True)
        actions.append(f"removed {p}, left by an interrupted run")
    for a in actions:
        log.warning(a)
    return actions


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where the OS or filesystem cannot."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: no exchange here, use the fallback
        return False
    raise OSError(err, os.strerror(err), os.fspath(b))


def _publish(tmp: Path, real: Path, overwrite: bool) -> None:
    if not real.exists() or _is_empty_dir(real):
        os.replace(tmp, real)  # rename over a missing or empty folder is atomic
        checkpoint("outdir:published")
        return
    if not overwrite or not is_ours(real):  # re-checked: it may have changed since the first check
        raise OutputPathError(
            f"output folder {real} is no longer one Gradience wrote; refusing to replace it"
        )
    if _exchange(tmp, real):
        checkpoint("outdir:exchanged")
        shutil.rmtree(tmp)  # tmp now holds the old folder
        return
    old = _side_name(real, "old")
    os.rename(real, old)
    checkpoint("outdir:moved_aside")
    try:
        os.rename(tmp, real)
    except BaseException:
        os.rename(old, real)
        raise
    checkpoint("outdir:renamed")
    shutil.rmtree(old)


@contextmanager
def staged_output(
    dst: Path, *, kind: str, inputs: Iterable[Path] = (), overwrite: bool = False
) -> Iterator[Path]:
    """Yield an empty staging folder; on a clean exit it becomes `dst` (atomically), else vanishes."""
    if Path(dst).resolve().parent.is_dir():
        recover(Path(dst).resolve())  # first: a restored OUT is then checked like any other
    real = check_output_dir(dst, inputs, overwrite=overwrite)
    real.parent.mkdir(parents=True, exist_ok=True)
    tmp = _side_name(real, "tmp")
    tmp.mkdir()
    try:
        mark_folder(tmp, kind)
        checkpoint("outdir:staged")
        yield tmp
        checkpoint("outdir:written")
        _publish(tmp, real, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
