"""Dropout masks from cheap random bits, for training on CPU.

torch's CPU dropout draws one Bernoulli sample per element through its serial generator, at
about 10 ns each: in a profiled MiniLM LoRA training step on 2 cores, ``aten::bernoulli_`` was
the largest single cost, beside the matmuls (results/train_profile_2026-12-03.md). Here one
64-bit draw of the same generator (seeded by ``torch.manual_seed`` as before) gives four
16-bit uniforms, each compared with a threshold: four times fewer draws, no float conversion.

The drop probability becomes p rounded to a multiple of 2⁻¹⁶ (0.1 → 0.1000061) and the kept
values are scaled by the exact inverse of the keep probability, so the layer stays unbiased.
Elsewhere than on the CPU, and in eval mode, it is torch's own dropout.
"""

from __future__ import annotations

from typing import Any

import torch

_LEVELS = 1 << 16


class BitDropout(torch.nn.Dropout):
    """``nn.Dropout`` whose CPU training mask comes from 16-bit uniforms (see the module)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu" or self.inplace:
            return super().forward(x)
        cut = round(self.p * _LEVELS)
        if cut >= _LEVELS:
            return x * 0.0
        n = x.numel()
        words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), None)  # all 64 bits
        u = words.view(torch.int16)[:n].view(x.shape)  # uniform on [−2¹⁵, 2¹⁵)
        keep = u >= cut - _LEVELS // 2  # probability (2¹⁶ − cut) / 2¹⁶
        return x * keep.to(x.dtype).mul_(_LEVELS / (_LEVELS - cut))  # one scaled mask, saved for backward


def use_bit_dropout(model: Any) -> int:
    """Swap every ``nn.Dropout`` module of ``model`` (the base's and each LoRA branch's) for a
    ``BitDropout`` of the same p, in place; returns how many. Functional dropout calls (e.g.
    on attention probabilities) are left as they are."""
    return set_dropout(model, BitDropout, (torch.nn.Dropout,))


def set_dropout(model: Any, cls: type, kinds: tuple[type, ...] = (torch.nn.Dropout, BitDropout)) -> int:
    """Every module of ``model`` whose exact type is in ``kinds`` replaced by a ``cls`` of the
    same p, inplace flag and mode; returns how many."""
    swaps = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if type(child) in kinds
    ]
    for parent, name, child in swaps:
        new = cls(child.p, child.inplace)
        new.train(child.training)
        setattr(parent, name, new)
    return len(swaps)
