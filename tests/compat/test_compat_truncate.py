"""`gradience truncate`: upstream 0.11's flags, our exact truncation."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open
from typer.testing import CliRunner

from gradience.cli import app
from tiny_models import make_adapter


def test_truncate_writes_a_fp16_adapter_and_the_report(tmp_path: Path) -> None:
    src, dst, rep = tmp_path / "in", tmp_path / "out", tmp_path / "report.json"
    make_adapter(src, arch="llama")
    res = CliRunner().invoke(app, ["truncate", "--peft-dir", str(src), "--out-dir", str(dst), "--rank", "4",
                                   "--report", str(rep), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == json.loads(rep.read_text())
    cfg = json.loads((dst / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and cfg["lora_alpha"] == 8  # keep_ratio: α/r kept (16/8 → 8/4)
    with safe_open(str(dst / "adapter_model.safetensors"), framework="pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}  # upstream's default dtype


def test_truncate_keep_alpha_and_bad_flags(tmp_path: Path) -> None:
    src = tmp_path / "in"
    make_adapter(src, arch="llama")
    ok = CliRunner().invoke(app, ["truncate", "--peft-dir", str(src), "--out-dir", str(tmp_path / "a"), "--rank", "2",
                                  "--alpha-mode", "keep_alpha", "--dtype", "fp32"])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert json.loads((tmp_path / "a" / "adapter_config.json").read_text())["lora_alpha"] == 16
    bad = CliRunner().invoke(app, ["truncate", "--peft-dir", str(src), "--out-dir", str(tmp_path / "b"), "--rank", "2",
                                   "--alpha-mode", "sideways"])  # fmt: skip
    assert bad.exit_code == 2 and "--alpha-mode" in bad.output and len(bad.output.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()
