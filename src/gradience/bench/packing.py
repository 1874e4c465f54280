"""Sequence packing for fused training of BERT-style classifiers.

Length-sorted chunks still pad every row to its chunk's longest; SST-2 sentences average 13
tokens against ~21 computed per row that way. Packed, several sentences of one job share a row
of the forward pass, each in its own block of a block-diagonal attention mask and with its own
positions (``position_ids`` restart at 0), so only each bin's tail is padding.

Exact up to float rounding: a token attends only to its own sentence, its position embedding is
its position in that sentence, and every other layer of the encoder acts token by token; each
sentence's first token ([CLS]) is gathered back and goes through the model's own pooler, dropout
and head. Supported: ``BertForSequenceClassification``-shaped models (``.bert`` with a pooler,
``.dropout``, ``.classifier``) with eager or SDPA attention; anything else trains unpacked.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradience.bench.tasks import Split, Task

_ATTENTION = ("sdpa", "eager")


def _inner(model: Any) -> Any:
    return model.base_model.model  # PeftModel → LoraModel → the transformers model


def packable(model: Any, task: Task) -> bool:
    inner = _inner(model)
    bert = getattr(inner, "bert", None)
    return (
        task.peft_task_type == "SEQ_CLS"
        and getattr(bert, "pooler", None) is not None
        and hasattr(inner, "classifier")
        and hasattr(inner, "dropout")
        and getattr(inner.config, "_attn_implementation", None) in _ATTENTION
    )


def bins(lengths: list[int], capacity: int) -> list[list[int]]:
    """First-fit decreasing: the indices of `lengths` in each bin, no bin over `capacity`."""
    loads: list[int] = []
    out: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for b, load in enumerate(loads):
            if load + lengths[i] <= capacity:
                loads[b] += lengths[i]
                out[b].append(i)
                break
        else:
            loads.append(lengths[i])
            out.append([i])
    return out


def pack_rows(rows: np.ndarray, width: np.ndarray, capacity: int | None = None) -> list[np.ndarray]:
    """One job's rows in bins of ``capacity`` tokens (default: its longest row), first-fit decreasing."""
    return [rows[b] for b in bins([int(w) for w in width[rows]], capacity or int(width[rows].max()))]


def packed_logits(
    model: Any, split: Split, jobs: list[tuple[str, list[np.ndarray]]], pad_token_id: int, device: Any
) -> tuple[Any, Any, list[tuple[str, slice]]]:
    """Logits and labels of every job's rows — given as bins of row ids, each bin one row of the
    pass — in order (job after job, bin after bin), and each job's slice of them. Bins never mix
    jobs, so each LoRA branch sees only its own."""
    import torch

    from gradience.bench.fused import row_groups

    feats = split.features
    ids, types = feats["input_ids"], feats.get("token_type_ids")
    flat = [(j, b) for j, (_, job_bins) in enumerate(jobs) for b in job_bins]
    capacity = max(sum(len(ids[int(i)]) for i in b) for _, b in flat)
    input_ids = torch.full((len(flat), capacity), pad_token_id, dtype=torch.long)
    token_types = torch.zeros((len(flat), capacity), dtype=torch.long)
    positions = torch.zeros((len(flat), capacity), dtype=torch.long)
    segment = torch.full((len(flat), capacity), -1, dtype=torch.long)  # padding: its own segment
    cls_bin, cls_at, labels = [], [], []
    for row_of_pass, (_, members) in enumerate(flat):
        at = 0
        for seg, row in enumerate(int(i) for i in members):
            n = len(ids[row])
            input_ids[row_of_pass, at : at + n] = torch.tensor(ids[row])
            if types is not None:
                token_types[row_of_pass, at : at + n] = torch.tensor(types[row])
            positions[row_of_pass, at : at + n] = torch.arange(n)
            segment[row_of_pass, at : at + n] = seg
            cls_bin.append(row_of_pass)
            cls_at.append(at)
            labels.append(split.labels[row])
            at += n
    mask = (segment[:, :, None] == segment[:, None, :])[:, None]  # (bins, 1, L, L), True: attend
    inner = _inner(model)
    if inner.config._attn_implementation == "eager":  # eager adds the mask to the scores
        dtype = inner.dtype
        mask = torch.zeros(mask.shape, dtype=dtype).masked_fill(~mask, torch.finfo(dtype).min)
    bin_groups, row_groups_ = [], []
    b0 = r0 = 0
    for name, job_bins in jobs:
        n_rows = sum(len(b) for b in job_bins)
        bin_groups.append((name, slice(b0, b0 + len(job_bins))))
        row_groups_.append((name, slice(r0, r0 + n_rows)))
        b0, r0 = b0 + len(job_bins), r0 + n_rows
    with row_groups(bin_groups):
        hidden = inner.bert(
            input_ids=input_ids.to(device), attention_mask=mask.to(device), token_type_ids=token_types.to(device),
            position_ids=positions.to(device),
        ).last_hidden_state  # fmt: skip
    cls = hidden[torch.tensor(cls_bin, device=device), torch.tensor(cls_at, device=device)]
    with row_groups(row_groups_):
        logits = inner.classifier(inner.dropout(inner.bert.pooler(cls[:, None])))
    return logits, torch.tensor(labels, dtype=torch.long, device=device), row_groups_
