"""Independent references for the compression tests: PEFT's own loading and get_delta_weight,
and truncation by a dense torch.linalg.svd (never gradience's own audit or factored SVD)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from tiny_models import peft_delta_weights, tiny_model

EPS = {torch.float32: 2.0**-24, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}


def load_peft(arch: str, path: Path, seed: int = 0) -> Any:
    """PEFT loads the adapter onto the same randomly initialised base; float64 so that
    get_delta_weight is the exact product of the stored factors."""
    from peft import PeftModel

    return PeftModel.from_pretrained(tiny_model(arch, seed), str(path)).double().eval()


def lora_modules(peft_model: Any) -> dict[str, Any]:
    return {
        p.removeprefix("base_model.model."): m
        for p, m in peft_model.named_modules()
        if isinstance(getattr(m, "r", None), dict) and "default" in m.r
    }


def dense_truncation(delta: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(Δ_k, σ): best rank-k approximation of Δ by a dense SVD, and all of Δ's singular values."""
    u, s, vh = torch.linalg.svd(delta.to(torch.float64), full_matrices=False)
    return (u[:, :k] * s[:k]) @ vh[:k], s


def check_truncation(orig: Any, new: Any, dtype: torch.dtype) -> int:
    """Every layer of `new` is the Eckart–Young rank-k truncation of the same layer of `orig`,
    with the same PEFT scale. Returns how many layers were actually truncated (k < r)."""
    d_orig, d_new = peft_delta_weights(orig), peft_delta_weights(new)
    m_orig, m_new = lora_modules(orig), lora_modules(new)
    assert set(d_orig) == set(d_new)
    u = EPS[dtype]
    truncated = 0
    for name, delta in d_orig.items():
        r, k = m_orig[name].r["default"], m_new[name].r["default"]
        assert k <= r
        s_old, s_new = m_orig[name].scaling["default"], m_new[name].scaling["default"]
        assert abs(s_new - s_old) <= math.ulp(s_old), (name, s_new, s_old)  # bit-exact when a float allows
        ref, s = dense_truncation(delta, k)
        dropped = float((s[k:] ** 2).sum())
        err2 = float(((delta - d_new[name]) ** 2).sum())
        off = float(torch.linalg.norm(d_new[name] - ref))
        if k == r:
            assert torch.equal(d_new[name], delta), name
            continue
        truncated += 1
        if dtype == torch.float32:
            assert abs(err2 - dropped) <= 1e-5 * dropped, (name, err2, dropped)
            assert off <= 1e-6 * float(torch.linalg.norm(ref)), name
        else:
            # storage rounding of balanced factors: ‖Δ' − Δ_k‖_F ≤ (2u + u²)·‖Δ_k‖_* (nuclear norm)
            bound = 1.01 * (2 * u + u * u) * float(s[:k].sum())
            assert off <= bound, (name, off, bound)
            assert abs(err2**0.5 - dropped**0.5) <= bound, (name, err2, dropped)
    return truncated


def non_lora_keys(path: Path) -> dict[str, torch.Tensor]:
    sd = load_file(str(Path(path) / "adapter_model.safetensors"))
    factor = ("lora_A.weight", "lora_B.weight", "lora_embedding_A", "lora_embedding_B")
    return {k: v for k, v in sd.items() if not k.endswith(factor)}


def assert_bit_identical(a: torch.Tensor, b: torch.Tensor, name: str = "") -> None:
    assert a.dtype == b.dtype and a.shape == b.shape, name
    assert torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)), name


def reference_model(orig: Any, ranks: dict[str, int]) -> torch.nn.Module:
    """The original adapter merged into its base (head, biases, tokens and all), with each LoRA
    layer's full update replaced by its dense rank-k truncation."""
    deltas = peft_delta_weights(orig)
    merged = orig.merge_and_unload()
    with torch.no_grad():
        for name, delta in deltas.items():
            ref, _ = dense_truncation(delta, ranks[name])
            merged.get_submodule(name).weight += ref - delta
    return merged.eval()
