"""``runtime.precision: bf16``: the frozen base's Linear layers compute in bfloat16.

The frozen base's matmuls (its forward, and the input gradients its backward passes down to the
LoRA branches) are most of a LoRA training step's arithmetic. On CPUs with AMX/AVX-512-BF16 and on
CUDA a bf16 matmul runs 2–4× faster. torch.autocast gives that too, but it also turns every small
LoRA product into bf16 (slower on CPU at those shapes, and less exact where the gradient is
made) and re-casts each weight on every call. Here only frozen ``nn.Linear`` layers switch: their
weights are cast once, their inputs per call, their outputs go back to fp32; LoRA branches,
heads, losses, gradients and AdamW state stay fp32. The bf16 copies cost half the fp32 frozen
weights' memory while training (none for a base loaded in bf16: its weights are used as they are).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


def _function() -> Any:
    import torch

    class FrozenLinearBF16(torch.autograd.Function):
        """y = x·Wᵀ + b with W, b frozen: forward and input gradient as bf16 matmuls."""

        @staticmethod
        def forward(ctx: Any, x: Any, weight: Any, bias: Any) -> Any:
            ctx.save_for_backward(weight)
            y = torch.nn.functional.linear(x.to(weight.dtype), weight).to(x.dtype)
            return y if bias is None else y.add_(bias)

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            (weight,) = ctx.saved_tensors
            if not ctx.needs_input_grad[0]:
                return None, None, None
            flat = grad.reshape(-1, grad.shape[-1]).to(weight.dtype)  # 2-D: a 3-D matmul would batch W
            return (flat @ weight).to(grad.dtype).view(*grad.shape[:-1], weight.shape[1]), None, None

    return FrozenLinearBF16


def _forward(self: Any, x: Any) -> Any:
    return self._bf16_function.apply(x, self._bf16_weight, self.bias)


@contextlib.contextmanager
def frozen_bf16(model: Any, enabled: bool = True) -> Iterator[int]:
    """While inside, every ``nn.Linear`` of ``model`` whose weight and bias are frozen computes
    in bf16 (yields how many). Nothing is patched when ``enabled`` is False."""
    import torch

    patched = []
    if enabled:
        fn = _function()
        for mod in model.modules():
            frozen = type(mod) is torch.nn.Linear and not mod.weight.requires_grad
            if frozen and (mod.bias is None or not mod.bias.requires_grad):
                mod._bf16_weight = mod.weight.detach().to(torch.bfloat16)
                mod._bf16_function = fn
                mod.forward = _forward.__get__(mod)
                patched.append(mod)
    try:
        yield len(patched)
    finally:
        for mod in patched:
            del mod.forward, mod._bf16_weight, mod._bf16_function
