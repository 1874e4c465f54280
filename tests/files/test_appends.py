"""Appends lose nothing: torn last lines, non-telemetry files, full disks, concurrent writers."""

from __future__ import annotations

import errno
import os

import pytest
from typer.testing import CliRunner

from gradience.cli import app
from gradience.telemetry import SCHEMA, TelemetryError, TelemetryWriter, read_telemetry
from tiny_models import make_adapter

runner = CliRunner()
TORN = b'{"schema":"' + SCHEMA.encode() + b'","ts":17000'  # a writer killed mid-line


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    path = tmp_path_factory.mktemp("adapter")
    make_adapter(path, arch="bert")
    return path


def make_run(path, torn: bool = True) -> bytes:
    with TelemetryWriter(path, run_id="run-1") as w:
        w.run_start({"model_name": "tiny"})
        w.train_step(5, loss=0.5)
    with open(path, "ab") as fh:
        fh.write(TORN if torn else b"")
    return path.read_bytes()


def test_audit_append_after_a_torn_line_keeps_the_event_and_the_numbering(adapter, tmp_path):
    run = tmp_path / "run.jsonl"
    before = make_run(run)
    res = runner.invoke(app, ["audit", "--peft-dir", str(adapter), "--append", str(run)])
    assert res.exit_code == 0, res.output
    data = run.read_bytes()
    assert data.startswith(before + b"\n")  # the fragment is kept, closed by a newline
    log = read_telemetry(run)
    assert [e.event for e in log.events] == ["run_start", "train_step", "run_end", "metrics"]
    audit = log.events[-1]
    assert (
        audit.line == 5 and audit.get("kind") == "lora_audit" and audit.run_id == "run-1" and audit.step == 5
    )
    assert [(i.line, i.kind) for i in log.issues] == [(4, "invalid_json")]


def test_writer_after_a_torn_line_starts_a_fresh_line(tmp_path):
    run = tmp_path / "run.jsonl"
    make_run(run)
    with TelemetryWriter(run, run_id="run-2") as w:
        w.run_start({"model_name": "tiny"})
    log = read_telemetry(run)
    assert [(e.line, e.run_id, e.event) for e in log.events][-2:] == [
        (5, "run-2", "run_start"),
        (6, "run-2", "run_end"),
    ]
    assert [i.line for i in log.issues] == [4]


@pytest.mark.parametrize(
    "text",
    [
        b"my notes about the run\nsecond line\n",
        b'{"loss": 0.3}\n{"loss": 0.2}\n',
        b"\x00\xff\xfe binary",
        b"notes, no newline",
    ],
)
def test_append_into_a_file_that_is_not_telemetry_is_refused_unchanged(adapter, tmp_path, text):
    notes = tmp_path / "notes.txt"
    notes.write_bytes(text)
    res = runner.invoke(app, ["audit", "--peft-dir", str(adapter), "--append", str(notes)])
    assert res.exit_code == 2 and "not a telemetry file" in res.stderr and res.stderr.count("\n") == 1
    assert notes.read_bytes() == text
    with pytest.raises(TelemetryError, match="not a telemetry file"):
        TelemetryWriter(notes).train_step(1, loss=1.0)
    assert notes.read_bytes() == text


@pytest.mark.parametrize("text", [b"", b"\n\n", TORN])
def test_empty_blank_or_torn_first_line_files_take_appends(tmp_path, text):
    run = tmp_path / "run.jsonl"
    run.write_bytes(text)
    TelemetryWriter(run).train_step(1, loss=1.0)
    assert [e.event for e in read_telemetry(run).events] == ["train_step"]


def test_disk_full_part_way_leaves_the_file_as_it_was(adapter, tmp_path, monkeypatch):
    run = tmp_path / "run.jsonl"
    before = make_run(run)
    real_write, inode = os.write, run.stat().st_ino

    def half_then_enospc(fd, data):  # the disk fills after part of the line went out
        if os.fstat(fd).st_ino != inode:
            return real_write(fd, data)
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", half_then_enospc)
    res = runner.invoke(app, ["audit", "--peft-dir", str(adapter), "--append", str(run)])
    monkeypatch.undo()
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert "No space left on device" in res.stderr and str(run) in res.stderr
    assert run.read_bytes() == before


def test_real_enospc_from_dev_full_names_the_file(adapter):
    with pytest.raises(OSError) as info:  # the kernel's own ENOSPC
        TelemetryWriter("/dev/full").train_step(1, loss=1.0)
    assert info.value.errno == errno.ENOSPC and info.value.filename == "/dev/full"
    for dev in ("/dev/full", "/dev/zero"):  # reading a device would never end: refused as input
        res = runner.invoke(app, ["audit", "--peft-dir", str(adapter), "--append", dev])
        assert res.exit_code == 2 and res.stderr == f"error: telemetry path is not a regular file: {dev}\n"
        res = runner.invoke(app, ["monitor", dev])
        assert res.exit_code == 2 and "not a regular file" in res.stderr


def test_read_only_run_file_is_exit_2(adapter, tmp_path, monkeypatch):
    run = tmp_path / "run.jsonl"
    before = make_run(run, torn=False)
    real_open = os.open

    def ro_open(path, flags, *a, **k):  # root ignores chmod: the filesystem's answer is injected
        if os.fspath(path) == str(run) and flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", ro_open)
    res = runner.invoke(app, ["audit", "--peft-dir", str(adapter), "--append", str(run)])
    monkeypatch.undo()
    assert res.exit_code == 2 and res.stderr == f"error: Read-only file system: {run}\n"
    assert run.read_bytes() == before
