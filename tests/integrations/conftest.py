"""A real, tiny `transformers.Trainer` run: random BERT (hidden 32, 2 layers) + PEFT LoRA, CPU."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)


def token_data(n: int, seed: int, seq: int = 16) -> list[dict[str, torch.Tensor]]:
    """Random token ids with a learnable label (is token 1 in the lower half of the vocab)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, (n, seq), generator=g)
    labels = (ids[:, 1] < 52).long()
    mask = torch.ones(seq, dtype=torch.long)
    return [{"input_ids": ids[i], "attention_mask": mask, "labels": labels[i]} for i in range(n)]


def tiny_lora_bert(
    seed: int = 0, r: int = 16, targets: tuple[str, ...] = ("query", "value", "intermediate.dense")
):
    import transformers as tf
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    cfg = tf.BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=2,
    )
    lora = LoraConfig(
        r=r, lora_alpha=2 * r, target_modules=list(targets), task_type="SEQ_CLS", lora_dropout=0.1
    )
    return get_peft_model(tf.BertForSequenceClassification(cfg), lora)


@pytest.fixture
def make_trainer(tmp_path: Path) -> Callable[..., Any]:
    def make(
        callbacks: list[Any], max_steps: int = 40, eval_steps: int = 20, lr: float = 5e-3, **kw: Any
    ) -> Any:
        import transformers as tf

        args = tf.TrainingArguments(
            output_dir=str(tmp_path / "out"),
            max_steps=max_steps,
            per_device_train_batch_size=8,
            per_device_eval_batch_size=16,
            learning_rate=lr,
            logging_steps=5,
            eval_strategy="steps" if eval_steps else "no",
            eval_steps=eval_steps or None,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            disable_tqdm=True,
            seed=0,
            **kw,
        )
        return tf.Trainer(
            model=tiny_lora_bert(),
            args=args,
            train_dataset=token_data(256, 0),
            eval_dataset=token_data(64, 1),
            callbacks=callbacks,
        )

    return make
