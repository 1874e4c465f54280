"""Synthetic but realistically shaped adapters for the speed benchmarks (no model weights needed)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

LLAMA7B_MODULES = {  # module → (in_features, out_features) for Llama-2-7B
    "self_attn.q_proj": (4096, 4096),
    "self_attn.k_proj": (4096, 4096),
    "self_attn.v_proj": (4096, 4096),
    "self_attn.o_proj": (4096, 4096),
    "mlp.gate_proj": (4096, 11008),
    "mlp.up_proj": (4096, 11008),
    "mlp.down_proj": (11008, 4096),
}


def build_7b_adapter(out_dir: Path, n_layers: int = 32, r: int = 64, seed: int = 0) -> Path:
    """A PEFT LoRA adapter shaped like one on Llama-2-7B (q,k,v,o,gate,up,down; fp16), with a decaying
    spectrum so truncation has something to find. 32 layers at r=64 is ≈ 320 MB."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    decay = torch.exp(-torch.arange(r, dtype=torch.float32) / 8.0)  # per-rank scale of B's columns
    tensors: dict[str, torch.Tensor] = {}
    for i in range(n_layers):
        for mod, (fin, fout) in LLAMA7B_MODULES.items():
            key = f"base_model.model.model.layers.{i}.{mod}"
            a = torch.randn(r, fin, generator=gen) / fin**0.5
            b = torch.randn(fout, r, generator=gen) * decay * 0.01
            tensors[f"{key}.lora_A.weight"] = a.to(torch.float16)
            tensors[f"{key}.lora_B.weight"] = b.to(torch.float16)
    save_file(tensors, str(out_dir / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": "meta-llama/Llama-2-7b-hf",
        "r": r,
        "lora_alpha": 2 * r,
        "lora_dropout": 0.05,
        "target_modules": sorted({m.split(".")[-1] for m in LLAMA7B_MODULES}),
        "rank_pattern": {},
        "alpha_pattern": {},
        "use_rslora": False,
        "use_dora": False,
        "fan_in_fan_out": False,
        "bias": "none",
        "modules_to_save": None,
    }
    (out_dir / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return out_dir
