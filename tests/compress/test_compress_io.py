"""Output integrity: the streaming safetensors writer, atomic publication, refusals, and the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from compress_helpers import load_peft, lora_modules
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from gradience.cli import app
from gradience.compress import CompressError, CompressionPlan, compress_adapter
from gradience.compress.st_writer import SafetensorsStreamWriter
from gradience.files import OutputPathError
from tiny_models import make_adapter, peft_delta_weights


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    path = tmp_path_factory.mktemp("llama")
    make_adapter(path, arch="llama")
    return path


def _snapshot(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_stream_writer_is_read_back_by_safetensors(tmp_path):
    tensors = {
        "z.f32": torch.randn(3, 5),
        "a.f16": torch.randn(7).half(),
        "m.bf16": torch.randn(2, 3, 4).bfloat16(),
        "i64": torch.arange(6).reshape(2, 3),
        "flag": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.5, dtype=torch.float64),
        "empty": torch.zeros(0, 4),
    }
    entries = [
        (
            k,
            {
                torch.float32: "F32",
                torch.float16: "F16",
                torch.bfloat16: "BF16",
                torch.int64: "I64",
                torch.bool: "BOOL",
                torch.float64: "F64",
            }[v.dtype],
            tuple(v.shape),
        )
        for k, v in tensors.items()
    ]
    with SafetensorsStreamWriter(tmp_path / "x.safetensors", entries, {"format": "pt"}) as w:
        for k, v in tensors.items():
            w.write(k, v)
    back = load_file(str(tmp_path / "x.safetensors"))
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v), k
    with safe_open(str(tmp_path / "x.safetensors"), "pt") as fh:
        assert fh.metadata() == {"format": "pt"}
    with pytest.raises(ValueError, match="never written"):
        with SafetensorsStreamWriter(tmp_path / "y.safetensors", entries, {}) as w:
            w.write("z.f32", tensors["z.f32"])
    with pytest.raises(ValueError, match="declared"):
        with SafetensorsStreamWriter(tmp_path / "y.safetensors", entries, {}) as w:
            w.write("z.f32", tensors["z.f32"].double())


def _fail_on_second_write(monkeypatch):
    calls = {"n": 0}
    real = SafetensorsStreamWriter.write

    def write(self, name, tensor):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full (simulated)")
        real(self, name, tensor)

    monkeypatch.setattr(SafetensorsStreamWriter, "write", write)


def test_failure_mid_write_leaves_no_output(adapter, tmp_path, monkeypatch):
    _fail_on_second_write(monkeypatch)
    with pytest.raises(OSError, match="simulated"):
        compress_adapter(adapter, tmp_path / "out", CompressionPlan(rank=2))
    assert list(tmp_path.iterdir()) == []  # neither OUT nor a temp folder


def test_failure_mid_write_leaves_existing_output_unchanged(adapter, tmp_path, monkeypatch):
    dst = tmp_path / "out"
    compress_adapter(adapter, dst, CompressionPlan(rank=3))
    before = _snapshot(dst)
    _fail_on_second_write(monkeypatch)
    with pytest.raises(OSError, match="simulated"):
        compress_adapter(adapter, dst, CompressionPlan(rank=2), overwrite=True)
    assert _snapshot(dst) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_failure_after_weights_leaves_no_output(adapter, tmp_path, monkeypatch):
    import gradience.compress.core as core

    def boom(path, obj):
        raise OSError("cannot write json (simulated)")

    monkeypatch.setattr(core, "_write_json", boom)
    with pytest.raises(OSError, match="simulated"):
        compress_adapter(adapter, tmp_path / "out", CompressionPlan(rank=2))
    assert list(tmp_path.iterdir()) == []


def test_overwrite_rules(adapter, tmp_path):
    dst = tmp_path / "out"
    dst.mkdir()
    compress_adapter(adapter, dst, CompressionPlan(rank=3))  # an empty folder is fine
    before = _snapshot(dst)
    with pytest.raises(OutputPathError, match="not empty"):
        compress_adapter(adapter, dst, CompressionPlan(rank=2))
    assert _snapshot(dst) == before
    report = compress_adapter(adapter, dst, CompressionPlan(rank=2), overwrite=True)
    assert report.config["r"] == 2 and json.loads((dst / "adapter_config.json").read_text())["r"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    with pytest.raises(OutputPathError, match="input folder"):
        compress_adapter(adapter, adapter, CompressionPlan(rank=2), overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputPathError, match="not a directory"):
        compress_adapter(adapter, tmp_path / "file", CompressionPlan(rank=2))


def test_dora_is_refused_with_the_reason(tmp_path):
    make_adapter(tmp_path / "in", arch="llama", use_dora=True)
    with pytest.raises(CompressError, match="column norms"):
        compress_adapter(tmp_path / "in", tmp_path / "out", CompressionPlan(rank=2))
    assert not (tmp_path / "out").exists()


def test_non_finite_factors_are_refused(adapter, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "adapter_config.json").write_bytes((adapter / "adapter_config.json").read_bytes())
    sd = load_file(str(adapter / "adapter_model.safetensors"))
    key = next(k for k in sd if k.endswith("lora_B.weight"))
    sd[key][0, 0] = float("nan")
    save_file(sd, str(src / "adapter_model.safetensors"))
    with pytest.raises(CompressError, match="NaN/Inf"):
        compress_adapter(src, tmp_path / "out", CompressionPlan(rank=2))


def test_bin_input_gives_the_same_output_as_safetensors(tmp_path):
    model = make_adapter(tmp_path / "st", arch="gpt2")
    model.save_pretrained(str(tmp_path / "bin"), safe_serialization=False)
    assert (tmp_path / "bin" / "adapter_model.bin").is_file()
    compress_adapter(tmp_path / "st", tmp_path / "a", CompressionPlan(rank=3))
    compress_adapter(tmp_path / "bin", tmp_path / "b", CompressionPlan(rank=3))
    a, b = (
        load_file(str(tmp_path / "a/adapter_model.safetensors")),
        load_file(str(tmp_path / "b/adapter_model.safetensors")),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_untrained_adapter_compresses_to_zero_update(tmp_path):
    make_adapter(tmp_path / "in", arch="llama", init_lora_weights=True)  # lora_B = 0
    report = compress_adapter(tmp_path / "in", tmp_path / "out", CompressionPlan(rank=2))
    assert report.totals.retained_energy == 1.0
    new = load_peft("llama", tmp_path / "out")
    assert all(m.r["default"] == 2 for m in lora_modules(new).values())
    assert all(not d.any() for d in peft_delta_weights(new).values())


runner = CliRunner()


def test_cli_json_and_text(adapter, tmp_path):
    res = runner.invoke(
        app, ["compress", "--peft-dir", str(adapter), "--out", str(tmp_path / "o"), "--rank", "2", "--json"]
    )
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["schema"] == "gradience.compress/v1" and out["totals"]["lora_reduction"] == pytest.approx(0.75)
    res = runner.invoke(
        app,
        [
            "compress",
            "--peft-dir",
            str(adapter),
            "--out",
            str(tmp_path / "p"),
            "--budget-ratio",
            "0.5",
            "--allowed-ranks",
            "2,4",
        ],
    )
    assert res.exit_code == 0, res.stderr
    assert "LoRA compress" in res.stdout and "retained energy" in res.stdout


@pytest.mark.parametrize(
    "args, msg",
    [
        ([], "exactly one of"),
        (["--rank", "2", "--from-audit"], "exactly one of"),
        (["--energy", "1.5"], "energy must be"),
        (["--rank", "2", "--allowed-ranks", "a,b"], "allowed-ranks"),
        (["--budget-params", "5"], "below the smallest"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(adapter, tmp_path, args, msg):
    res = runner.invoke(app, ["compress", "--peft-dir", str(adapter), "--out", str(tmp_path / "o"), *args])
    assert res.exit_code == 2
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("error:") and msg in res.stderr
    assert not (tmp_path / "o").exists()


def test_cli_unreadable_and_dora_inputs_exit_2(tmp_path):
    res = runner.invoke(
        app,
        ["compress", "--peft-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--rank", "2"],
    )
    assert res.exit_code == 2 and "not found" in res.stderr and res.stderr.count("\n") == 1
    make_adapter(tmp_path / "dora", arch="llama", use_dora=True)
    res = runner.invoke(
        app, ["compress", "--peft-dir", str(tmp_path / "dora"), "--out", str(tmp_path / "o"), "--rank", "2"]
    )
    assert res.exit_code == 2 and "DoRA" in res.stderr and res.stderr.count("\n") == 1
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    make_adapter(tmp_path / "ok", arch="llama")
    res = runner.invoke(
        app, ["compress", "--peft-dir", str(tmp_path / "ok"), "--out", str(tmp_path / "full"), "--rank", "2"]
    )
    assert res.exit_code == 2 and "--overwrite" in res.stderr
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]


def test_rank_above_layer_width_is_padded_with_zero_directions(tmp_path):
    """r=40 on 32-wide layers: B·A has rank ≤ 32, so k=36 keeps everything and pads with zeros."""
    make_adapter(tmp_path / "in", arch="bert", r=40, lora_alpha=40)
    compress_adapter(tmp_path / "in", tmp_path / "out", CompressionPlan(rank=36))
    orig, new = load_peft("bert", tmp_path / "in"), load_peft("bert", tmp_path / "out")
    d_orig, d_new = peft_delta_weights(orig), peft_delta_weights(new)
    for name, m in lora_modules(new).items():
        assert m.r["default"] == 36
        assert torch.linalg.norm(d_new[name] - d_orig[name]) <= 1e-6 * torch.linalg.norm(d_orig[name])
