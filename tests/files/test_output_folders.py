"""Nothing the user owns is lost by an output folder: refusals, symlinks, overwrite, kills, full disks.

Every case runs the real CLI on real files and compares a hash of every input byte before and after.
Kills are real SIGKILLs (`GRADIENCE_FAULT_AT`) in a subprocess: no cleanup code runs.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fs_faults import read_only_folder
from gradience.cli import app
from gradience.files import MARKER, recover
from tiny_models import make_adapter

runner = CliRunner()


@pytest.fixture(scope="module")
def adapter_src(tmp_path_factory):
    path = tmp_path_factory.mktemp("src") / "adapter"
    make_adapter(path, arch="llama")
    return path


def tree_hash(root: Path) -> dict[str, str]:
    """Every path under root (links as their targets, files as their sha256)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


def content(folder: Path) -> dict[str, object]:
    """A published adapter's files, the marker (a timestamp) aside and the report's own path."""
    out: dict[str, object] = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != MARKER}
    report = json.loads(out.pop("compression_report.json"))
    report.pop("destination")
    out["compression_report.json"] = report
    return out


def compress(*args: str):
    return runner.invoke(app, ["compress", *args])


@pytest.fixture
def workspace(tmp_path, adapter_src):
    """parent/ holding the user's adapter and sibling files they care about."""
    import shutil

    parent = tmp_path / "parent"
    parent.mkdir()
    shutil.copytree(adapter_src, parent / "adapter")
    (parent / "notes.txt").write_text("my notes")
    (parent / "other_run").mkdir()
    (parent / "other_run" / "weights.bin").write_bytes(os.urandom(64))
    return parent


@pytest.mark.parametrize(
    "out",
    [
        "{parent}",  # the parent of the input: --overwrite used to delete it and its siblings
        "{parent}/..",  # an ancestor further up
        "{parent}/adapter",
        "{parent}/adapter/.",
        "{parent}/adapter/../adapter",
        "{parent}/adapter/sub",  # inside the input
        "{parent}/link_to_parent",
        "{parent}/link_to_adapter",
    ],
)
@pytest.mark.parametrize("overwrite", [True, False])
def test_out_that_is_holds_or_is_inside_the_input_is_refused(workspace, out, overwrite):
    (workspace / "link_to_parent").symlink_to(workspace)
    (workspace / "link_to_adapter").symlink_to(workspace / "adapter")
    top = workspace.parent
    before = tree_hash(top)
    res = compress("--peft-dir", str(workspace / "adapter"), "--out", out.format(parent=workspace),
                   "--rank", "2", *(["--overwrite"] if overwrite else []))  # fmt: skip
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("error:") and res.stderr.count("\n") == 1
    assert "input" in res.stderr or "not empty" in res.stderr
    assert tree_hash(top) == before


def test_overwrite_only_replaces_a_folder_gradience_wrote(workspace):
    user = workspace / "user_folder"
    user.mkdir()
    (user / "precious.txt").write_text("do not delete")
    before = tree_hash(workspace)
    res = compress("--peft-dir", str(workspace / "adapter"), "--out", str(user), "--rank", "2", "--overwrite")
    assert res.exit_code == 2 and "not written by Gradience" in res.stderr
    assert tree_hash(workspace) == before
    out = workspace.parent / "out"
    assert compress("--peft-dir", str(workspace / "adapter"), "--out", str(out), "--rank", "4").exit_code == 0
    assert (out / MARKER).is_file()
    res = compress("--peft-dir", str(workspace / "adapter"), "--out", str(out), "--rank", "2", "--overwrite")
    assert res.exit_code == 0, res.output
    assert '"r": 2' in (out / "adapter_config.json").read_text()
    assert sorted(p.name for p in out.parent.iterdir()) == ["out", "parent"]  # nothing hidden left


def test_symlinked_out_is_written_through_and_the_link_kept(workspace, tmp_path):
    src = str(workspace / "adapter")
    target = tmp_path / "real_out"
    target.mkdir()  # empty: fine
    link = tmp_path / "link_out"
    link.symlink_to(target)
    assert compress("--peft-dir", src, "--out", str(link), "--rank", "4").exit_code == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert '"r": 4' in (target / "adapter_config.json").read_text()
    res = compress("--peft-dir", src, "--out", str(link), "--rank", "2", "--overwrite")
    assert res.exit_code == 0, res.output
    assert link.is_symlink() and '"r": 2' in (target / "adapter_config.json").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link_out", "parent", "real_out"]  # no .X.old-*


def test_dangling_symlink_out_is_one_line_exit_2(workspace, tmp_path):
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "nowhere")
    res = compress("--peft-dir", str(workspace / "adapter"), "--out", str(link), "--rank", "2")
    assert res.exit_code == 2 and "dangling symlink" in res.stderr and res.stderr.count("\n") == 1
    assert link.is_symlink() and not (tmp_path / "nowhere").exists()


def test_out_under_a_file_is_one_line_exit_2(workspace, tmp_path):
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        res = compress("--peft-dir", str(workspace / "adapter"), "--out", str(out), "--rank", "2")
        assert res.exit_code == 2 and "not a directory" in res.stderr and res.stderr.count("\n") == 1
    assert (tmp_path / "afile").read_text() == "x"


# --- kills at every step of the replacement --------------------------------------------------

FALLBACK = "import gradience.files.outdir as o; o._exchange = lambda a, b: False; "


def run_killed(src: Path, out: Path, point: str, fallback: bool) -> subprocess.CompletedProcess:
    code = (
        FALLBACK if fallback else ""
    ) + "import sys; from gradience.cli import main; sys.argv[0] = 'gradience'; main()"
    env = {**os.environ, "GRADIENCE_FAULT_AT": point}
    args = ["compress", "--peft-dir", str(src), "--out", str(out), "--rank", "2", "--overwrite"]
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def versions(adapter_src, tmp_path_factory):
    """The old OUT (rank 4) and what the new one (rank 2) must hold."""
    root = tmp_path_factory.mktemp("versions")
    for name, rank in (("old", "4"), ("new", "2")):
        assert (
            compress("--peft-dir", str(adapter_src), "--out", str(root / name), "--rank", rank).exit_code == 0
        )
    return content(root / "old"), content(root / "new")


@pytest.mark.parametrize(
    "point, fallback, expect",
    [
        ("outdir:staged", False, "old"),
        ("compress:weights", False, "old"),  # mid-way through the new weights file
        ("outdir:written", False, "old"),
        ("outdir:exchanged", False, "new"),  # OUT is new; the old copy waits in a temp name
        ("outdir:written", True, "old"),
        ("outdir:moved_aside", True, "restored"),  # the one gap of two renames: recovered next run
        ("outdir:renamed", True, "new"),
    ],
)
def test_sigkill_at_each_step_leaves_out_complete(adapter_src, tmp_path, versions, point, fallback, expect):
    old, new = versions
    out = tmp_path / "out"
    assert compress("--peft-dir", str(adapter_src), "--out", str(out), "--rank", "4").exit_code == 0
    proc = run_killed(adapter_src, out, point, fallback)
    assert proc.returncode == -9, proc.stderr
    if expect == "restored":
        assert not out.exists() and any(p.name.startswith(".out.old-") for p in tmp_path.iterdir())
        actions = recover(out.resolve())
        assert content(out) == old and any("restored" in a for a in actions)
    else:
        assert content(out) == (old if expect == "old" else new)
    leftovers = [p for p in tmp_path.iterdir() if p.name != "out"]
    # The next run cleans up what the killed one left, says so, and publishes normally.
    res = compress("--peft-dir", str(adapter_src), "--out", str(out), "--rank", "2", "--overwrite")
    assert res.exit_code == 0, res.output
    assert content(out) == new
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert not leftovers or "interrupted run" in res.stderr


def test_killed_fresh_write_leaves_no_out_and_is_swept(adapter_src, tmp_path):
    out = tmp_path / "fresh"
    proc = run_killed(adapter_src, out, "outdir:written", fallback=False)
    assert proc.returncode == -9
    assert not out.exists() and any(p.name.startswith(".fresh.tmp-") for p in tmp_path.iterdir())
    res = compress("--peft-dir", str(adapter_src), "--out", str(out), "--rank", "2")
    assert res.exit_code == 0 and "interrupted run" in res.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["fresh"]


# --- OS errors ---------------------------------------------------------------------------------


def test_disk_full_mid_write_is_exit_2_and_keeps_the_old_out(adapter_src, tmp_path, versions, monkeypatch):
    from gradience.compress.st_writer import SafetensorsStreamWriter

    old, _ = versions
    out = tmp_path / "out"
    assert compress("--peft-dir", str(adapter_src), "--out", str(out), "--rank", "4").exit_code == 0
    real_write = SafetensorsStreamWriter.write

    def write(self, name, tensor):
        if self._next == 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        real_write(self, name, tensor)

    monkeypatch.setattr(SafetensorsStreamWriter, "write", write)
    res = compress("--peft-dir", str(adapter_src), "--out", str(out), "--rank", "2", "--overwrite")
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert "No space left on device" in res.stderr and "adapter_model.safetensors" in res.stderr
    assert content(out) == old and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_read_only_destination_is_exit_2_naming_the_path(adapter_src, tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    read_only_folder(monkeypatch, ro)
    res = compress("--peft-dir", str(adapter_src), "--out", str(ro / "out"), "--rank", "2")
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert "Read-only file system" in res.stderr and str(ro) in res.stderr
    assert list(ro.iterdir()) == []
