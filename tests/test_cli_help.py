"""`gradience --help` lists every command with a whole one-line summary in an 80-column terminal."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("argv", [["--help"], ["bench", "--help"]])
def test_command_summaries_are_not_cut_at_80_columns(argv: list[str]) -> None:
    env = {**os.environ, "COLUMNS": "80"}
    out = subprocess.run(
        [sys.executable, "-m", "gradience", *argv], capture_output=True, text=True, env=env, check=True
    ).stdout
    listed = out.split("Commands:", 1)[1].strip().splitlines()
    assert listed, out
    for line in listed:
        assert len(line) <= 80 and not line.rstrip().endswith("..."), line
        name, summary = line.split(None, 1)
        assert summary.endswith("."), line  # a whole sentence, not click's truncation
