"""`gradience audit` end to end through the CLI: outputs, flags, issues and bad input (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from gradience.cli import app
from tiny_models import make_adapter

runner = CliRunner()


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bert_adapter")
    make_adapter(d, arch="bert", r=8)
    return d


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def audit(*args: str):
    return runner.invoke(app, ["audit", *args])


def assert_bad_input(result, *fragments: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for frag in fragments:
        assert frag in lines[0], lines[0]


def test_json_report_with_layers(adapter_dir):
    res = audit("--peft-dir", str(adapter_dir), "--json", "--layers", "--top-singular-values", "3")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["schema"] == "gradience.audit/v1"
    assert out["summary"]["n_layers"] == len(out["layers"]) == 12
    layer = out["layers"][0]
    for key in ("name", "r", "scale", "stable_rank", "effective_rank", "utilization", "energy_rank_90",
                "energy_rank_95", "energy_rank_99", "sigma_max_scaled", "frob_norm_scaled", "params"):  # fmt: skip
        assert key in layer
    assert len(layer["top_singular_values"]) == 3
    assert set(out["summary"]["by_type"]) == {"attn", "mlp"}
    sg = out["suggestions"]
    assert set(sg["per_layer"]["rank_pattern"]) == {la["name"] for la in out["layers"]}
    for rule in ("kohya_sv_ratio", "kohya_sv_cumulative", "kohya_sv_fro", "peft_energy"):
        assert rule in sg["named_rules"]


def test_text_report_and_flags(adapter_dir):
    res = audit(
        "--peft-dir",
        str(adapter_dir),
        "--top-wasteful",
        "2",
        "--suggest-per-layer",
        "--allowed-ranks",
        "2,4,8",
    )
    assert res.exit_code == 0, res.stderr
    assert "lowest-utilisation" in res.stdout and "rank_pattern" in res.stdout
    assert "[2, 4, 8]" in res.stdout


def test_append_writes_lora_audit_event_into_the_run(adapter_dir, tmp_path):
    from gradience.telemetry import TelemetryWriter, read_telemetry

    run = tmp_path / "run.jsonl"
    with TelemetryWriter(run) as w:
        w.train_step(7, loss=0.5)
        run_id = w.run_id
    res = audit("--peft-dir", str(adapter_dir), "--append", str(run))
    assert res.exit_code == 0, res.stderr
    events = read_telemetry(run).events
    last = events[-1]
    assert last.event == "metrics" and last.payload["kind"] == "lora_audit"
    assert last.run_id == run_id and last.step == 7
    assert last.payload["metrics"]["n_layers"] == 12


def test_issues_zero_b_and_nan_are_reported_not_fatal(adapter_dir, tmp_path):
    d = _copy(adapter_dir, tmp_path / "sus")
    sd = load_file(d / "adapter_model.safetensors")
    b_keys = sorted(k for k in sd if "lora_B" in k)
    sd[b_keys[0]] = torch.zeros_like(sd[b_keys[0]])
    sd[b_keys[1]][0, 0] = float("nan")
    save_file(sd, str(d / "adapter_model.safetensors"))
    res = audit("--peft-dir", str(d), "--json")
    assert res.exit_code == 0, res.stderr
    codes = {i["code"] for i in json.loads(res.stdout)["issues"]}
    assert {"untrained_lora_B", "non_finite"} <= codes
    assert audit("--peft-dir", str(d), "--strict").exit_code == 1
    assert audit("--peft-dir", str(adapter_dir), "--strict").exit_code == 0


def test_missing_dir():
    assert_bad_input(audit("--peft-dir", "/nonexistent/adapter"), "not found")


def test_missing_and_invalid_config(adapter_dir, tmp_path):
    d = _copy(adapter_dir, tmp_path / "nocfg")
    (d / "adapter_config.json").unlink()
    assert_bad_input(audit("--peft-dir", str(d)), "adapter_config.json")
    (d / "adapter_config.json").write_text("{not json")
    assert_bad_input(audit("--peft-dir", str(d)), "invalid JSON")


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_broken_safetensors(adapter_dir, tmp_path, damage):
    d = _copy(adapter_dir, tmp_path / damage)
    f = d / "adapter_model.safetensors"
    data = f.read_bytes()
    f.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "garbage": b"\x00" * 64}[damage])
    assert_bad_input(audit("--peft-dir", str(d)), "safetensors" if damage != "empty" else "empty")


def test_mismatched_shapes(adapter_dir, tmp_path):
    d = _copy(adapter_dir, tmp_path / "shapes")
    sd = load_file(d / "adapter_model.safetensors")
    key = sorted(k for k in sd if "lora_B" in k)[0]
    sd[key] = torch.randn(sd[key].shape[0], 5)
    save_file(sd, str(d / "adapter_model.safetensors"))
    assert_bad_input(audit("--peft-dir", str(d)), "do not fit")


@pytest.mark.parametrize(
    "patch, words",
    [
        ({"peft_type": "LOHA"}, "LOHA"),
        ({"peft_type": "ADALORA"}, "AdaLoRA"),
        ({"peft_type": "VERA"}, "VeRA"),
        ({"target_parameters": ["experts.gate_up_proj"]}, "target_parameters"),
    ],
)
def test_unsupported_adapter_types(adapter_dir, tmp_path, patch, words):
    d = _copy(adapter_dir, tmp_path / "unsupported")
    cfg = json.loads((d / "adapter_config.json").read_text())
    cfg.update(patch)
    (d / "adapter_config.json").write_text(json.dumps(cfg))
    assert_bad_input(audit("--peft-dir", str(d)), words, "unsupported")


def test_kohya_file_is_named(tmp_path):
    d = tmp_path / "kohya"
    d.mkdir()
    save_file(
        {
            "lora_unet_down_blocks_0.lora_down.weight": torch.randn(4, 8),
            "lora_unet_down_blocks_0.lora_up.weight": torch.randn(8, 4),
        },
        str(d / "my_lora.safetensors"),
    )
    assert_bad_input(audit("--peft-dir", str(d)), "kohya")


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_bin_pickle_that_would_run_code_is_refused(adapter_dir, tmp_path):
    d = _copy(adapter_dir, tmp_path / "evil")
    (d / "adapter_model.safetensors").unlink()
    marker = tmp_path / "pwned"
    torch.save({"base_model.model.x.lora_A.weight": _Evil(marker)}, d / "adapter_model.bin")
    assert_bad_input(audit("--peft-dir", str(d)), "weights_only")
    assert not marker.exists()


def test_plain_bin_adapter_is_audited_like_safetensors(adapter_dir, tmp_path):
    d = _copy(adapter_dir, tmp_path / "bin")
    sd = load_file(d / "adapter_model.safetensors")
    (d / "adapter_model.safetensors").unlink()
    torch.save(sd, d / "adapter_model.bin")
    a = json.loads(audit("--peft-dir", str(adapter_dir), "--json").stdout)
    b = json.loads(audit("--peft-dir", str(d), "--json").stdout)
    assert a["summary"] == b["summary"]


def test_bad_allowed_ranks(adapter_dir):
    assert_bad_input(audit("--peft-dir", str(adapter_dir), "--allowed-ranks", "4,x"), "allowed-ranks")
