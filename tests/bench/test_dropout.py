"""BitDropout: the same unbiased inverted dropout as torch's, from 16-bit uniforms. Checked
against the binomial law (every one of the four 16-bit lanes of a 64-bit draw on its own, so
a biased lane would show), eval/p=0 identity, seeding, the gradient, and the swap in a PEFT model."""

from __future__ import annotations

import math

import pytest
import torch
from peft import get_peft_model

from gradience.bench.dropout import BitDropout, set_dropout, use_bit_dropout
from gradience.bench.training import lora_config
from tiny_models import tiny_model


@pytest.mark.parametrize("p", [0.1, 0.5, 0.05])
def test_drops_each_element_with_probability_p_in_every_lane_and_scales_the_rest(p: float) -> None:
    torch.manual_seed(0)
    n = 400_000
    y = BitDropout(p).train()(torch.ones(n))
    cut = round(p * 65536)
    q = cut / 65536  # p on the 2⁻¹⁶ grid
    assert abs(q - p) <= 2**-17
    kept = y != 0
    assert torch.allclose(y[kept], torch.full_like(y[kept], 65536 / (65536 - cut)), rtol=0, atol=1e-6)
    for lane in range(4):  # the four int16 lanes of each 64-bit draw
        dropped = (~kept[lane::4]).double().mean().item()
        sd = math.sqrt(q * (1 - q) / (n / 4))
        assert abs(dropped - q) < 5 * sd, (lane, dropped, q)
    sd_mean = math.sqrt(q / (1 - q) / n)  # the output's mean is 1 in expectation: unbiased
    assert abs(y.double().mean().item() - 1.0) < 5 * sd_mean


def test_odd_sizes_shapes_and_dtypes() -> None:
    torch.manual_seed(1)
    for shape in [(1,), (3, 5), (2, 7, 9)]:
        x = torch.randn(shape, dtype=torch.float64)
        y = BitDropout(0.3).train()(x)
        assert y.shape == x.shape and y.dtype == x.dtype
        kept = y != 0
        assert torch.allclose(y[kept], x[kept] * (65536 / (65536 - round(0.3 * 65536))))


def test_eval_mode_zero_p_and_p_one() -> None:
    x = torch.randn(4, 8)
    assert torch.equal(BitDropout(0.1).eval()(x), x)
    assert torch.equal(BitDropout(0.0).train()(x), x)
    assert torch.equal(BitDropout(1.0).train()(x), torch.zeros_like(x))


def test_seeded_like_torch_dropout_and_gradient_is_the_mask() -> None:
    x = torch.randn(64, 33, requires_grad=True)
    torch.manual_seed(7)
    a = BitDropout(0.2).train()(x)
    torch.manual_seed(7)
    b = BitDropout(0.2).train()(x)
    assert torch.equal(a, b)
    a.sum().backward()
    scale = 65536 / (65536 - round(0.2 * 65536))
    assert torch.allclose(x.grad, (a != 0).to(x.dtype) * scale)


def test_use_bit_dropout_swaps_every_dropout_module_of_a_peft_model() -> None:
    model = get_peft_model(tiny_model("bert"), lora_config(4, 8.0, ["query", "value"], 0.1, False))
    before = [m for m in model.modules() if type(m) is torch.nn.Dropout]
    ps = sorted(m.p for m in before)
    keys = list(model.state_dict())
    model.eval()
    ids = torch.randint(0, 128, (3, 10))
    ref = model(input_ids=ids).logits
    assert use_bit_dropout(model) == len(before) > 4  # the base's and each LoRA branch's
    assert not any(type(m) is torch.nn.Dropout for m in model.modules())
    assert sorted(m.p for m in model.modules() if isinstance(m, BitDropout)) == ps
    assert list(model.state_dict()) == keys  # nothing saved changes
    assert torch.equal(model(input_ids=ids).logits, ref)  # eval: no dropout either way
    model.train()
    assert all(m.training for m in model.modules() if isinstance(m, BitDropout))
    model(input_ids=ids).logits.sum().backward()  # trains through it
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)
    assert set_dropout(model, torch.nn.Dropout) == len(before)  # and back, as the benchmark swaps
    assert sorted(m.p for m in model.modules() if type(m) is torch.nn.Dropout) == ps
