"""runtime.precision bf16: only the frozen base's Linear layers switch to bfloat16. Checked
against an independent reference (the same products in float64 from bf16-rounded operands), on
the trainable parts staying fp32 and untouched, on the gradient reaching the LoRA branches, and
on the model being exactly the fp32 one again outside the context."""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model

from gradience.bench.precision import frozen_bf16
from gradience.bench.training import lora_config
from tiny_models import tiny_model


def _bf16(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.bfloat16).double()


@pytest.mark.parametrize("bias", [True, False])
def test_forward_and_input_gradient_are_the_bf16_products(bias: bool) -> None:
    torch.manual_seed(0)
    lin = torch.nn.Linear(48, 24, bias=bias).requires_grad_(False)
    x = torch.randn(3, 5, 48, requires_grad=True)
    g = torch.randn(3, 5, 24)
    with frozen_bf16(lin) as n:
        assert n == 1
        y = lin(x)
        y.backward(g)
    assert y.dtype == torch.float32 and x.grad.dtype == torch.float32
    ref = _bf16(x) @ _bf16(lin.weight).T  # exact products of the bf16 operands, then bf16 output
    ref = ref.to(torch.bfloat16).double() + (lin.bias.double() if bias else 0)
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-5)
    gref = (_bf16(g) @ _bf16(lin.weight)).to(torch.bfloat16).double()
    torch.testing.assert_close(x.grad.double(), gref, rtol=1e-5, atol=1e-5)
    full = x.detach() @ lin.weight.T + (lin.bias if bias else 0)  # and near the fp32 layer
    torch.testing.assert_close(y, full, rtol=2e-2, atol=2e-2)


def test_input_without_grad_and_trainable_layers_are_left_alone() -> None:
    frozen = torch.nn.Linear(8, 8).requires_grad_(False)
    trainable = torch.nn.Linear(8, 8)
    half = torch.nn.Linear(8, 8)
    half.weight.requires_grad_(False)  # a trainable bias keeps the layer fp32
    model = torch.nn.Sequential(frozen, trainable, half)
    with frozen_bf16(model) as n:
        assert n == 1
        model(torch.randn(2, 8)).sum().backward()
    assert trainable.weight.grad is not None and half.bias.grad is not None
    with frozen_bf16(model, enabled=False) as n:
        assert n == 0


def test_peft_model_bf16_base_fp32_lora_and_exactly_fp32_again_after() -> None:
    model = get_peft_model(tiny_model("bert"), lora_config(4, 8.0, ["query", "value"], 0.0, False))
    for n, p in model.named_parameters():  # a nonzero B, so the LoRA branch matters
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.1)
    ids = torch.randint(0, 128, (4, 12))
    labels = torch.tensor([0, 1, 1, 0])
    model.eval()  # no dropout: both passes see the same network (gradients flow all the same)
    ref_loss = model(input_ids=ids, labels=labels).loss
    ref_loss.backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    frozen = sum(type(m) is torch.nn.Linear and not m.weight.requires_grad for m in model.modules())
    with frozen_bf16(model) as n:
        assert n == frozen > 0  # every frozen Linear of the base (LoRA's base layers included)
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
    assert loss.dtype == torch.float32
    assert abs(loss.item() - ref_loss.item()) < 2e-2
    for name, p in model.named_parameters():
        if p.requires_grad:  # LoRA factors and the head: fp32, gradients close to fp32 training's
            assert p.dtype == torch.float32 and p.grad.dtype == torch.float32
            cos = torch.nn.functional.cosine_similarity(p.grad.flatten(), ref[name].flatten(), dim=0)
            assert cos > 0.999, (name, cos)
    assert not any(hasattr(m, "_bf16_weight") for m in model.modules())
    model.zero_grad(set_to_none=True)
    again = model(input_ids=ids, labels=labels).loss
    assert again.item() == ref_loss.item()  # the fp32 model again, bit for bit
