"""The one module-type classifier: reads the whole module path, not only its last name.

BERT's `attention.output.dense` is attention while its FFN `output.dense` is MLP; GPT-2's
`attn.c_proj` is attention while `mlp.c_proj` is MLP — the last name alone cannot tell.
"""

from __future__ import annotations

ATTN_LEAVES = {
    "q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj", "out_proj",  # Llama, Mistral, OPT, …
    "q_lin", "k_lin", "v_lin", "out_lin",  # DistilBERT
    "query", "key", "value",  # BERT, RoBERTa
    "c_attn", "query_key_value", "Wqkv",  # GPT-2, GPT-NeoX, MPT
}  # fmt: skip
MLP_LEAVES = {
    "gate_proj", "up_proj", "down_proj",  # Llama, Mistral
    "fc1", "fc2", "c_fc",  # OPT/Phi, GPT-2
    "dense_h_to_4h", "dense_4h_to_h", "w1", "w2", "w3",  # GPT-NeoX, Mixtral experts
}  # fmt: skip
ATTN_SUFFIXES = ("attention.output.dense", "attn.c_proj", "attention.dense", "self_attention.dense")
MLP_SUFFIXES = ("intermediate.dense", "output.dense", "mlp.c_proj", "ffn.lin1", "ffn.lin2")


def module_type(name: str) -> str:
    """'attn', 'mlp' or 'other' for a module path such as `bert.encoder.layer.0.attention.self.query`."""
    parts = name.split(".")
    leaf = parts[-1]
    for suffix in ATTN_SUFFIXES:  # attention suffixes first: `attention.output.dense` ⊃ `output.dense`
        if name == suffix or name.endswith("." + suffix):
            return "attn"
    for suffix in MLP_SUFFIXES:
        if name == suffix or name.endswith("." + suffix):
            return "mlp"
    if leaf in ATTN_LEAVES:
        return "attn"
    if leaf in MLP_LEAVES:
        return "mlp"
    return "other"
