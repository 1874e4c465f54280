"""Round trips through PEFT: compress with k < r, load OUT with PeftModel.from_pretrained, and
compare against dense-SVD truncations of the original's get_delta_weight."""

from __future__ import annotations

import json

import pytest
import torch
from compress_helpers import (
    assert_bit_identical,
    check_truncation,
    load_peft,
    lora_modules,
    non_lora_keys,
    reference_model,
)

from gradience.compress import CompressionPlan, compress_adapter
from gradience.files import MARKER
from tiny_models import make_adapter


def _perturb_and_resave(peft_model, path) -> None:
    """Give every non-LoRA trainable tensor (head, lora_B biases, token rows) values that differ
    from the base model's, so dropping one of them cannot go unnoticed, then save again."""
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if p.requires_grad and not name.endswith(("lora_A.default.weight", "lora_B.default.weight")):
                p.add_(torch.randn(p.shape, generator=g).to(p.dtype))
    peft_model.save_pretrained(str(path))


def _batch(arch: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, 128, (3, 11), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


CASES = {
    # BERT classifier: head in modules_to_save, lora_B biases; energy plan gives mixed ranks.
    "bert_head_bias": (dict(arch="bert", lora_bias=True), CompressionPlan(energy=0.7), torch.float32),
    "gpt2_conv1d": (dict(arch="gpt2"), CompressionPlan(rank=3), torch.float32),
    "llama_tokens": (
        dict(arch="llama", trainable_token_indices=[3, 7, 11]),
        CompressionPlan(budget_ratio=0.5),
        torch.float32,
    ),
    "bert_embedding": (
        dict(arch="bert", target_modules=["word_embeddings", "query"]),
        CompressionPlan(rank=5),
        torch.float32,
    ),
    "llama_fp16": (dict(arch="llama", save_dtype=torch.float16), CompressionPlan(rank=3), torch.float16),
    "llama_bf16": (dict(arch="llama", save_dtype=torch.bfloat16), CompressionPlan(rank=3), torch.bfloat16),
}


@pytest.mark.parametrize("case", list(CASES))
def test_round_trip_is_eckart_young_truncation(tmp_path, case):
    kw, plan, dtype = CASES[case]
    arch = kw["arch"]
    src, dst = tmp_path / "in", tmp_path / "out"
    peft_model = make_adapter(src, **kw)
    if dtype == torch.float32:
        _perturb_and_resave(peft_model, src)
    report = compress_adapter(src, dst, plan)
    assert sorted(p.name for p in dst.iterdir()) == [
        MARKER,  # lets a later --overwrite recognise the folder as ours
        "adapter_config.json",
        "adapter_model.safetensors",
        "compression_report.json",
    ]
    assert not list(tmp_path.glob(".out.*"))  # no temp folder left behind

    orig, new = load_peft(arch, src), load_peft(arch, dst)
    assert check_truncation(orig, new, dtype) > 0
    assert report.totals.n_truncated > 0

    # stored dtype and config fields are kept
    out_sd = non_lora_keys(dst)
    in_sd = non_lora_keys(src)
    assert set(out_sd) == set(in_sd)
    for key in in_sd:
        assert_bit_identical(in_sd[key], out_sd[key], key)
    cfg_in = json.loads((src / "adapter_config.json").read_text())
    cfg_out = json.loads((dst / "adapter_config.json").read_text())
    for field in ("base_model_name_or_path", "task_type", "target_modules", "modules_to_save", "peft_type"):
        assert cfg_out.get(field) == cfg_in.get(field), field
    assert report.dtypes == [{torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}[dtype]]

    # the model: outputs equal a dense-truncated reference that keeps the original head & biases
    ranks = {name: m.r["default"] for name, m in lora_modules(new).items()}
    ref = reference_model(orig, ranks)
    batch = _batch(arch)
    with torch.no_grad():
        got = new(**batch).logits
        want = ref(**batch).logits
    tol = 1e-6 if dtype == torch.float32 else 2e-2
    assert torch.allclose(got, want, rtol=0, atol=tol * float(want.abs().max())), float(
        (got - want).abs().max()
    )


def test_dropping_the_head_would_be_caught(tmp_path):
    """Control for the test above: the perturbed head really changes the outputs."""
    peft_model = make_adapter(tmp_path, arch="bert")
    _perturb_and_resave(peft_model, tmp_path)
    loaded = load_peft("bert", tmp_path)
    batch = _batch("bert")
    with torch.no_grad():
        with_head = loaded(**batch).logits
        loaded.base_model.model.classifier.modules_to_save["default"].load_state_dict(
            loaded.base_model.model.classifier.original_module.state_dict()
        )
        without = loaded(**batch).logits
    assert not torch.allclose(with_head, without, atol=1e-3)


PATTERN_CASES = {
    "patterns": dict(
        arch="bert",
        r=8,
        rank_pattern={"value": 4, "layer.1.attention.self.query": 2, "intermediate.dense": 6},
        alpha_pattern={"key": 3.0, "output.dense": 40.0},
    ),
    "rslora": dict(arch="bert", r=16, lora_alpha=8, use_rslora=True),
    "rslora_patterns": dict(
        arch="llama",
        r=8,
        lora_alpha=5,
        use_rslora=True,
        rank_pattern={"v_proj": 4},
        alpha_pattern={"o_proj": 11},
    ),
}


@pytest.mark.parametrize("case", list(PATTERN_CASES))
@pytest.mark.parametrize("plan", [CompressionPlan(rank=3), CompressionPlan(energy=0.8)], ids=["rank3", "e80"])
def test_pattern_and_rslora_inputs_keep_every_scale(tmp_path, case, plan):
    kw = PATTERN_CASES[case]
    src, dst = tmp_path / "in", tmp_path / "out"
    make_adapter(src, **kw)
    report = compress_adapter(src, dst, plan)
    orig, new = load_peft(kw["arch"], src), load_peft(kw["arch"], dst)
    assert check_truncation(orig, new, torch.float32) > 0  # also asserts scaling ==, bit for bit
    rows = {la.name: la for la in report.layers}
    for name, mod in lora_modules(new).items():
        assert mod.r["default"] == rows[name].new_rank
    # layers that need no truncation are copied byte for byte
    from safetensors.torch import load_file

    a, b = (
        load_file(str(src / "adapter_model.safetensors")),
        load_file(str(dst / "adapter_model.safetensors")),
    )
    kept = [la for la in report.layers if not la.truncated]
    for la in kept:
        for key in (k for k in a if f".{la.name}.lora_" in f".{k}"):
            assert_bit_identical(a[key], b[key], key)
    if case == "patterns" and plan.rank == 3:
        assert any(not la.truncated and la.old_rank == 2 for la in report.layers)
