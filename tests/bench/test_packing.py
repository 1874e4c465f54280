"""Sequence packing for fused training: packed logits equal the padded forward's (SDPA and eager
attention, two jobs with different ranks), bins respect their capacity, and training packed
equals training padded. (The fused-vs-alone tests in test_fused.py run packed.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_fused import KW, TARGETS, _model, _quiet, _state

from gradience.bench.fused import (
    PASS_TOKENS,
    FusedJob,
    _padded_logits,
    build,
    fused_forward,
    plan_passes,
    row_groups,
    train_fused,
)
from gradience.bench.packing import bins, pack_rows, packable, packed_logits
from gradience.bench.training import lora_config


def test_passes_hold_whole_jobs_in_order_within_the_token_budget() -> None:
    plan = plan_passes([3, 2, 4, 1], capacity=10, max_tokens=50)
    assert [[(k, list(p)) for k, p in ps] for ps in plan] == [
        [(0, [0, 1, 2]), (1, [0, 1])],
        [(2, [0, 1, 2, 3]), (3, [0])],
    ]
    assert [[k for k, _ in ps] for ps in plan_passes([6, 1], capacity=10, max_tokens=50)] == [[0], [1]]


def test_row_groups_must_be_consecutive_from_zero() -> None:
    with pytest.raises(ValueError, match="consecutive"), row_groups([("a", slice(0, 2)), ("b", slice(3, 4))]):
        pass


def test_bins_hold_every_row_once_within_capacity() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 40, size=60).tolist()
    cap = max(lengths)
    out = bins(lengths, cap)
    assert sorted(i for b in out for i in b) == list(range(60))
    assert all(sum(lengths[i] for i in b) <= cap for b in out)
    loads = [sum(lengths[i] for i in b) for b in out]
    # first fit: no two bins could have been one
    assert all(loads[a] + loads[b] > cap for a in range(len(out)) for b in range(a + 1, len(out)))
    assert len(out) < len(lengths)


def _two_jobs(no_dropout_bert: Path, data: Any) -> Any:
    models = [_model(no_dropout_bert, data, 1, 8, 16.0, {}), _model(no_dropout_bert, data, 2, 4, 8.0, {})]
    configs = [lora_config(8, 16.0, TARGETS, 0.0, False), lora_config(4, 8.0, TARGETS, 0.0, False)]
    model = build(models, configs, ["default", "j1"])
    with torch.no_grad():  # trained-looking B factors, so the LoRA branches really act
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.3, generator=torch.Generator().manual_seed(hash(n) % 2**31))
    return model


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_logits_equal_the_padded_forward(no_dropout_bert: Path, data: Any, attention: str) -> None:
    model = _two_jobs(no_dropout_bert, data)
    model.base_model.model.set_attn_implementation(attention)
    assert model.base_model.model.config._attn_implementation == attention
    assert packable(model, data.task)
    rng = np.random.default_rng(1)
    width = np.asarray([len(x) for x in data.train.features["input_ids"]])
    rows = [
        ("default", rng.choice(len(data.train), 24, replace=False)),
        ("j1", rng.choice(len(data.train), 16)),
    ]
    binned = [(name, pack_rows(r, width)) for name, r in rows]
    assert sum(len(b) for _, b in binned) < 40  # sentences really share rows
    flat = [(name, np.concatenate(b)) for name, b in binned]  # the same rows in the same order
    model.eval()
    with torch.no_grad(), fused_forward(model):
        cpu = torch.device("cpu")
        packed, y_packed, g_packed = packed_logits(model, data.train, binned, data.pad_token_id, cpu)
        padded, y_padded, g_padded = _padded_logits(
            model, data.task, data.train, flat, data.pad_token_id, cpu
        )
    assert g_packed == g_padded and torch.equal(y_packed, y_padded)
    torch.testing.assert_close(packed, padded, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pass_tokens", [1, PASS_TOKENS])  # one job per pass; both jobs in one
def test_training_packed_equals_training_padded(no_dropout_bert: Path, data: Any, pass_tokens: int) -> None:
    states = []
    for pack in (True, False):
        model = _two_jobs(no_dropout_bert, data)
        jobs = [FusedJob(adapter=n, seed=s, label=n) for n, s in (("default", 1), ("j1", 2))]
        with _quiet():
            stats = train_fused(model, jobs, data.train, task=data.task, pad_token_id=data.pad_token_id,
                                device=torch.device("cpu"), label="fused", pack=pack, pass_tokens=pass_tokens,
                                **{**KW, "steps": 10})  # fmt: skip
        assert all(s is not None for s in stats)
        states.append([_state(model, n) for n in ("default", "j1")])
    for packed, padded in zip(*states, strict=True):
        for k, v in padded.items():
            assert float((packed[k] - v).norm() / v.norm()) < 1e-4, k
