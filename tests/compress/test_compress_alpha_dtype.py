"""alpha_mode keep_alpha and a chosen save dtype, checked through PEFT against dense truncations."""

from __future__ import annotations

import json

import torch
from compress_helpers import check_truncation, dense_truncation, load_peft, lora_modules, non_lora_keys
from safetensors import safe_open

from gradience.compress import CompressionPlan, compress_adapter
from tiny_models import make_adapter, peft_delta_weights


def test_keep_alpha_keeps_alpha_and_the_same_truncated_update(tmp_path):
    src, dst = tmp_path / "in", tmp_path / "out"
    make_adapter(src, arch="llama")  # r = 8, α = 16
    compress_adapter(src, dst, CompressionPlan(rank=3, alpha_mode="keep_alpha"))
    cfg = json.loads((dst / "adapter_config.json").read_text())
    assert cfg["r"] == 3 and cfg["lora_alpha"] == 16 and not cfg.get("alpha_pattern")
    orig, new = load_peft("llama", src), load_peft("llama", dst)
    d_orig, d_new = peft_delta_weights(orig), peft_delta_weights(new)
    for name, m in lora_modules(new).items():
        assert m.scaling["default"] == 16 / 3  # PEFT's scale now α/k …
        ref, _ = dense_truncation(d_orig[name], 3)  # … and the update is still the rank-3 truncation
        assert torch.linalg.norm(d_new[name] - ref) <= 1e-6 * torch.linalg.norm(ref), name


def test_save_dtype_converts_every_lora_factor_and_nothing_else(tmp_path):
    src, dst = tmp_path / "in", tmp_path / "out"
    make_adapter(src, arch="bert")  # fp32, with the classifier head in modules_to_save
    report = compress_adapter(src, dst, CompressionPlan(rank=3, dtype="bf16"))
    with safe_open(str(dst / "adapter_model.safetensors"), framework="pt") as f:
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}
    assert {d for k, d in dtypes.items() if ".lora_" in k} == {"BF16"}
    assert {v.dtype for v in non_lora_keys(dst).values()} == {torch.float32}
    assert set(report.dtypes) == {"BF16", "F32"}
    assert check_truncation(load_peft("bert", src), load_peft("bert", dst), torch.bfloat16) > 0
