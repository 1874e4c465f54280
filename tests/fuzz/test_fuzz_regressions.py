"""Each crash, hang or false exit 0 the fuzz suite or the review found, as a named test."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from gradience.cli import app
from tiny_models import make_adapter

runner = CliRunner()
BILLION_LAUGHS = "a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefg", "bcdefgh", strict=True)
)


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    path = tmp_path_factory.mktemp("reg") / "adapter"
    make_adapter(path, arch="bert", r=4, lora_alpha=8, modules_to_save=["classifier"])
    return path


def variant(adapter: Path, tmp_path: Path, config: dict | None = None, weights: dict | None = None) -> Path:
    out = tmp_path / "variant"
    shutil.copytree(adapter, out)
    if config is not None:
        cfg = json.loads((out / "adapter_config.json").read_text())
        (out / "adapter_config.json").write_text(json.dumps({**cfg, **config}))
    if weights is not None:
        save_file(weights, str(out / "adapter_model.safetensors"))
    return out


def exit2(args: list[str], needle: str) -> None:
    res = runner.invoke(app, args)
    assert res.exit_code == 2, (res.exit_code, res.output)
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1 and needle in res.stderr, (
        res.stderr
    )


def test_huge_lora_alpha_is_out_of_range_not_an_overflow(adapter, tmp_path):
    exit2(["audit", "--peft-dir", str(variant(adapter, tmp_path, {"lora_alpha": 1e308}))], "lora_alpha")


def test_denormal_alpha_is_audited_as_a_tiny_scale(adapter, tmp_path):
    res = runner.invoke(
        app, ["audit", "--peft-dir", str(variant(adapter, tmp_path, {"lora_alpha": 1e-320})), "--json"]
    )
    assert res.exit_code == 0 and json.loads(res.stdout)["summary"]["n_layers"] > 0


def test_rank_beyond_any_layer_is_out_of_range(adapter, tmp_path):
    exit2(["audit", "--peft-dir", str(variant(adapter, tmp_path, {"r": 10**30}))], "'r'")


def test_deeply_nested_adapter_config_is_refused(adapter, tmp_path):
    out = variant(adapter, tmp_path)
    (out / "adapter_config.json").write_text('{"r": ' + "[" * 5000 + "]" * 5000 + "}")
    exit2(["audit", "--peft-dir", str(out)], "nested")


def test_lora_factor_with_an_empty_dimension_is_refused(adapter, tmp_path):
    sd = load_file(str(adapter / "adapter_model.safetensors"))
    key = next(k for k in sd if "lora_B" in k)
    sd[key] = sd[key][:, :0].contiguous()
    exit2(["audit", "--peft-dir", str(variant(adapter, tmp_path, weights=sd))], "empty dimension")


def _bin(adapter: Path, tmp_path: Path, obj: object) -> Path:
    out = variant(adapter, tmp_path)
    (out / "adapter_model.safetensors").unlink()
    torch.save(obj, out / "adapter_model.bin")
    return out


def test_bin_with_non_string_keys_or_odd_dtypes_is_refused(adapter, tmp_path):
    sd = load_file(str(adapter / "adapter_model.safetensors"))
    exit2(["audit", "--peft-dir", str(_bin(adapter, tmp_path, {**sd, 3: torch.zeros(1)}))], "named tensors")
    shutil.rmtree(tmp_path / "variant")
    odd = {k: v.to(torch.complex64) for k, v in sd.items()}
    exit2(["audit", "--peft-dir", str(_bin(adapter, tmp_path, odd))], "unsupported dtype")


def test_bin_with_a_corrupt_record_the_audit_never_reads_is_refused(adapter, tmp_path):
    sd = load_file(str(adapter / "adapter_model.safetensors"))
    out = _bin(adapter, tmp_path, sd)
    path = out / "adapter_model.bin"
    with zipfile.ZipFile(path) as zf:  # the last record: the classifier head, never audited
        info = [i for i in zf.infolist() if "/data/" in i.filename][-1]
    data = bytearray(path.read_bytes())
    assert data[info.header_offset : info.header_offset + 4] == b"PK\x03\x04"
    data[info.header_offset + 2] ^= 0xFF  # its local header no longer parses
    path.write_bytes(bytes(data))
    exit2(["audit", "--peft-dir", str(out)], "refused to load")


def test_hostile_numbers_in_a_lora_audit_event_are_ignored(tmp_path):
    env = {"schema": "gradience.vnext.telemetry/v1", "ts": 1.0, "run_id": "r"}
    lines = [
        {**env, "event": "train_step", "step": 1, "loss": 1e308},
        {**env, "event": "metrics", "step": 1, "kind": "lora_audit",
         "metrics": {"r": 10**400, "energy_rank_90_p90": float("inf"), "allowed_ranks": ["x", 1e308],
                     "by_type": [1], "utilization_mean": "0.1"}},
    ]  # fmt: skip
    run = tmp_path / "run.jsonl"
    run.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    res = runner.invoke(app, ["monitor", str(run), "--json"])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize(
    "text, needle",
    [
        (BILLION_LAUGHS, "expands to more than"),
        ("[" * 5000 + "]" * 5000, "nested"),
        ("{a: " * 3000 + "1" + "}" * 3000, "nested"),
    ],
)
def test_yaml_bombs_are_refused_by_every_yaml_reader(tmp_path, text, needle):
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    exit2(["bench", "plan", "--baseline-acc", "0.83", "--config", str(path)], needle)
    exit2(["bench", "plan", "--baseline-acc", "0.83", "--policy", str(path)], needle)
    exit2(["check", str(path)], needle)
    exit2(["bench", "--config", str(path), "--output", str(tmp_path / "o")], needle)


def test_non_utf8_bench_yaml_is_refused(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("model: {name: modèle}\n".encode("latin-1"))
    exit2(["bench", "--config", str(path), "--output", str(tmp_path / "o")], "not UTF-8")


def test_deeply_nested_json_check_config_is_refused(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"lr": ' + "[" * 5000 + "]" * 5000 + "}")
    exit2(["check", str(path)], "nested")


def test_a_typo_flag_is_one_line(tmp_path):
    exit2(["compress", "--rnak", "2"], "No such option: --rnak")
    exit2(["bench", "--bogus"], "No such option: --bogus")


def test_module_entry_point_usage_line_works_when_typed():
    proc = subprocess.run(
        [sys.executable, "-m", "gradience.bench.run_bench", "--help"], capture_output=True, text=True
    )
    usage = next(line for line in proc.stdout.splitlines() if "Usage:" in line)
    assert "python -m gradience.bench.run_bench [OPTIONS]" in usage and " bench " not in usage
    again = subprocess.run(
        [sys.executable, "-m", "gradience.bench.run_bench", "plan", "--help"], capture_output=True
    )
    assert again.returncode == 0
