"""A sparse safetensors file (16 KB on disk, claiming a 1 GiB tensor) is refused before any tensor
is mapped or allocated: the process's peak memory stays that of a tiny audit (docs/compress.md)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest

from tiny_models import make_adapter

CLI = "import sys; from gradience.cli import main; sys.argv[0] = 'gradience'; main()"


def peak_rss_mb(*args: str) -> tuple[int, str, float]:
    """Run the real CLI in a child; its exit code, stderr and peak RSS (from wait4)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, *args], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    err = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, err, usage.ru_maxrss / 1024


def make_sparse(folder, claimed_bytes: int) -> None:
    """The config of a real adapter and a weights file whose one tensor is all hole."""
    cols = claimed_bytes // 4 // 8
    key = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    header = {key: {"dtype": "F32", "shape": [8, cols], "data_offsets": [0, 8 * cols * 4]}}
    blob = json.dumps(header).encode()
    blob += b" " * (-(8 + len(blob)) % 8)
    path = folder / "adapter_model.safetensors"
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(blob)) + blob)
        fh.truncate(8 + len(blob) + 8 * cols * 4)
    assert os.stat(path).st_blocks * 512 < 64 * 1024  # really sparse on this filesystem


@pytest.mark.parametrize("command", ["audit", "compress"])
def test_sparse_file_is_refused_within_the_memory_of_a_tiny_audit(tmp_path, command):
    real = tmp_path / "real"
    make_adapter(real, arch="llama")
    sparse = tmp_path / "sparse"
    sparse.mkdir()
    (sparse / "adapter_config.json").write_text((real / "adapter_config.json").read_text())
    make_sparse(sparse, 1 << 30)

    def extra(name: str) -> list[str]:
        return ["--out", str(tmp_path / name), "--rank", "2"] if command == "compress" else []

    code, _, baseline = peak_rss_mb(command, "--peft-dir", str(real), *extra("out_real"))
    assert code == 0
    code, err, peak = peak_rss_mb(command, "--peft-dir", str(sparse), *extra("out_sparse"))
    assert code == 2 and "sparse file" in err and err.count("\n") == 1, err
    assert peak < baseline + 64, (peak, baseline)  # the 1 GiB claim was never allocated
    assert not (tmp_path / "out_sparse").exists()
