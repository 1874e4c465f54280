"""Independent references for the merge tests: PEFT's own loading and get_delta_weight, dense numpy
SVDs and inner products, and straightforward loop implementations of TIES and DARE."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tiny_models import make_adapter, peft_delta_weights, tiny_model


def load_peft(arch: str, path: Path) -> Any:
    from peft import PeftModel

    return PeftModel.from_pretrained(tiny_model(arch, 0), str(path)).double().eval()


def dense_deltas(arch: str, path: Path) -> dict[str, np.ndarray]:
    """ΔW of every layer as (out × in), from PEFT's get_delta_weight (GPT-2's Conv1D transposed back)."""
    fan = json.loads((Path(path) / "adapter_config.json").read_text()).get("fan_in_fan_out", False)
    return {k: (v.T if fan else v).numpy() for k, v in peft_delta_weights(load_peft(arch, path)).items()}


def make_pair(root: Path, arch: str) -> tuple[Path, Path]:
    """A: r=8, α=16 on every target. B: another init, r=4 with a rank_pattern, rsLoRA, α=12, and
    one target fewer (so ranks, scales, patterns and module sets all differ)."""
    from tiny_models import ARCH_TARGETS

    a, b = root / f"{arch}_a", root / f"{arch}_b"
    make_adapter(a, arch, seed=0)
    targets = ARCH_TARGETS[arch][:-1] if arch != "bert" else ["query", "key", "value", "intermediate.dense"]
    make_adapter(b, arch, seed=0, r=4, lora_alpha=12, use_rslora=True, target_modules=targets,
                 rank_pattern={targets[0]: 6})  # fmt: skip
    _reseed_lora(b, seed=7)
    return a, b


def _reseed_lora(path: Path, seed: int) -> None:
    """Give B's factors another draw (make_adapter seeds the LoRA init from the model seed)."""
    from safetensors.torch import load_file, save_file

    sd = load_file(str(path / "adapter_model.safetensors"))
    g = torch.Generator().manual_seed(seed)
    out = {k: (torch.randn(v.shape, generator=g) * v.std() if "lora_" in k else v) for k, v in sd.items()}
    save_file(out, str(path / "adapter_model.safetensors"), metadata={"format": "pt"})


def principal_cosines(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cosines of the principal angles between the column spaces of x and y (dense SVDs)."""

    def basis(m: np.ndarray) -> np.ndarray:
        u, s, _ = np.linalg.svd(m, full_matrices=False)
        return u[:, : int((s > 1e-5 * s[0]).sum())]

    return np.linalg.svd(basis(x).T @ basis(y), compute_uv=False)


def best_rank_k(m: np.ndarray, k: int) -> np.ndarray:
    u, s, vh = np.linalg.svd(m, full_matrices=False)
    return (u[:, :k] * s[:k]) @ vh[:k]


def rel(x: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(x - ref) / np.linalg.norm(ref))


def ties_reference(deltas: list[np.ndarray], weights: list[float], density: float) -> np.ndarray:
    """TIES written entry by entry from the paper's three steps (weighted disjoint mean)."""
    trimmed = []
    for d in deltas:
        flat = d.ravel()
        k = math.ceil(density * flat.size)
        keep = np.zeros(flat.size, dtype=bool)
        keep[np.argsort(-np.abs(flat), kind="stable")[:k]] = True
        trimmed.append(np.where(keep, flat, 0.0))
    out = np.zeros(deltas[0].size)
    for i in range(out.size):
        mass = sum(w * t[i] for w, t in zip(weights, trimmed, strict=True))
        sign = 1.0 if mass > 0 else (-1.0 if mass < 0 else 0.0)
        agree = [
            (w, t[i]) for w, t in zip(weights, trimmed, strict=True) if t[i] != 0 and np.sign(t[i]) == sign
        ]
        if agree:
            out[i] = sum(w * v for w, v in agree) / sum(w for w, _ in agree)
    return out.reshape(deltas[0].shape)


def dare_reference(
    deltas: list[np.ndarray], weights: list[float], density: float, seed: int, j: int
) -> np.ndarray:
    out = np.zeros_like(deltas[0])
    for t, (w, d) in enumerate(zip(weights, deltas, strict=True)):
        u = np.random.default_rng([seed, j, t]).random(d.shape)
        out = out + w * (d * (u < density)) / density
    return out
