"""A tiny Llama that has really learned something, for the causal-LM task's tests.

The language: "copy: 3141 =" → "3141" and "inc: 3141 =" → "4252" (each digit + 1 mod 10).
The model is pre-trained on both in full, so that LoRA on a related op it has never
seen ("dec", each digit − 1) starts near 0 exact match and can be shown to climb. The
tokenizer is one token per character, so every id in a test can be worked out by hand.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SPECIAL = ["<pad>", "<s>", "</s>", "<unk>"]  # ids 0..3, Llama's own bos=1, eos=2
VOCAB = {t: i for i, t in enumerate(SPECIAL + [chr(c) for c in range(32, 127)] + ["\n"])}
PAD, BOS, EOS = 0, 1, 2
TEMPLATE = "{op}: {x} ="
PRETRAIN_STEPS, PRETRAIN_LR = 300, 2e-3  # held-out exact match 1.0 for init seeds 0, 1, 2 (5e-3 can stall)


def char_ids(text: str) -> list[int]:
    """What the character tokenizer must give, worked out without it."""
    return [VOCAB[c] for c in text]


def apply_op(op: str, x: str) -> str:
    shift = {"copy": 0, "inc": 1, "dec": -1}[op]
    return "".join(str((int(c) + shift) % 10) for c in x)


def op_rows(ops: list[str], n: int, seed: int, lengths: tuple[int, int] = (4, 4)) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        op, x = rng.choice(ops), "".join(rng.choice("0123456789") for _ in range(rng.randint(*lengths)))
        rows.append({"op": op, "x": x, "y": apply_op(op, x)})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def char_tokenizer() -> Any:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel(VOCAB, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tk.decoder = decoders.Fuse()
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", BOS)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


@contextlib.contextmanager
def _silent(description: str, total: int) -> Iterator[Any]:
    yield lambda n=1, info="": None


@pytest.fixture(scope="session")
def causal_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pre-trained tiny Llama (hidden 64, 2 layers) and its tokenizer, in a folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from gradience.bench.config import TaskConfig
    from gradience.bench.tasks import load_task_data
    from gradience.bench.training import seed_everything, set_progress_factory, train_lora

    out = tmp_path_factory.mktemp("tiny_llama")
    char_tokenizer().save_pretrained(str(out))
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(VOCAB), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=64, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD,
    )  # fmt: skip
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(str(out))  # config and tokenizer first: the task's data path reads them
    data_file = write_jsonl(out / "pretrain.jsonl", op_rows(["copy", "inc"], 3000, seed=0))
    task_cfg = TaskConfig(type="causal_lm", data=str(data_file), prompt_template=TEMPLATE, response_field="y")
    data = load_task_data(str(out), task_cfg, 2800, 100, smoke=False, selection=False)
    assert data.task is not None
    seed_everything(0)
    set_progress_factory(_silent)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic wherever it runs, and no spinning on a shared box
    try:  # full-parameter training: every weight requires grad, so the LoRA loop trains them all
        train_lora(model, data.train, task=data.task, steps=PRETRAIN_STEPS, batch_size=32, lr=PRETRAIN_LR,
                   weight_decay=0.0, seed=0, pad_token_id=PAD, device=torch.device("cpu"))  # fmt: skip
    finally:
        set_progress_factory(None)
        torch.set_num_threads(threads)
    model.save_pretrained(str(out))
    return out
