"""Property tests of the spectral core and unit tests of the one-of-each rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradience.audit import factored_svd, lora_spectrum, module_type, snap_rank
from gradience.audit.metrics import effective_rank, energy_rank, stable_rank
from gradience.audit.suggest import (
    LayerShape,
    allocate,
    kohya_sv_cumulative,
    kohya_sv_fro,
    kohya_sv_ratio,
    lora_params_at,
    peft_energy,
)


@st.composite
def factors(draw):
    r = draw(st.integers(1, 12))
    n_in, n_out = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**31 - 1))
    deficient = draw(st.integers(0, r))  # rows of A made copies of row 0 → rank deficiency
    zero = draw(st.sampled_from(["none", "A", "B"]))
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(r, n_in, generator=g, dtype=torch.float64)
    b = torch.randn(n_out, r, generator=g, dtype=torch.float64) * torch.logspace(
        0, -3, r, dtype=torch.float64
    )
    if deficient and r > 1:
        a[1 : 1 + deficient] = a[0]
    if zero == "A":
        a.zero_()
    elif zero == "B":
        b.zero_()
    return a, b


@settings(max_examples=150, deadline=None)
@given(factors(), st.floats(0.01, 100))
def test_spectrum_equals_dense_svd(ab, scale):
    a, b = ab
    ours = lora_spectrum(a, b, scale)
    ref = torch.linalg.svdvals(scale * (b @ a)).numpy()
    k = min(len(ours), len(ref))
    top = max(ref[0] if ref.size else 0.0, 1e-300)
    np.testing.assert_allclose(ours[:k], ref[:k], rtol=0, atol=1e-7 * top)
    # r > min(in, out): the extra σ are zero. From r×r Grams an exactly-zero σ comes out at
    # √(ε·‖G_A‖·‖G_B‖) ≈ 1.5e-8·‖A‖₂‖B‖₂, which exceeds 1e-7·σ_max when B·A cancels strongly.
    bound = 1e-7 * max(top, scale * float(torch.linalg.matrix_norm(a, 2) * torch.linalg.matrix_norm(b, 2)))
    assert np.all(ours[k:] <= bound)
    assert np.all(np.diff(ours) <= 1e-12 * top)  # descending


@settings(max_examples=100, deadline=None)
@given(factors())
def test_factored_svd_reconstructs_b_a(ab):
    a, b = ab
    u, s, v = factored_svd(a, b)
    np.testing.assert_allclose((u * s) @ v.T, b @ a, atol=1e-9 * max(1.0, float(s.max())))
    np.testing.assert_allclose(u.T @ u, np.eye(u.shape[1]), atol=1e-9)


def test_metrics_of_known_spectra():
    s = np.array([3.0, 4.0, 0.0])[[1, 0, 2]]  # 4, 3, 0
    assert stable_rank(s) == pytest.approx(25 / 16)
    p = np.array([4, 3]) / 7
    assert effective_rank(s) == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    assert energy_rank(s, 0.64) == 1 and energy_rank(s, 0.6401) == 2 and energy_rank(s, 0.99) == 2
    assert energy_rank(np.zeros(4), 0.9) == 0 and stable_rank(np.zeros(4)) == 0


@pytest.mark.parametrize(
    "value, allowed, cap, expected",
    [(3, [1, 2, 4, 8], 16, 4), (4, [1, 2, 4, 8], 16, 4), (4.2, [1, 2, 4, 8], 16, 8), (9, [1, 2, 4, 8], 16, 16),
     (9, [1, 2, 4, 8, 16], 12, 12), (0, [2, 4], 8, 2), (33, [1, 2, 4], 32, 32)],
)  # fmt: skip
def test_snap_rounds_up_then_caps(value, allowed, cap, expected):
    assert snap_rank(value, allowed, cap) == expected


@pytest.mark.parametrize(
    "name, kind",
    [
        ("bert.encoder.layer.0.attention.self.query", "attn"),
        ("bert.encoder.layer.0.attention.output.dense", "attn"),
        ("bert.encoder.layer.0.intermediate.dense", "mlp"),
        ("bert.encoder.layer.0.output.dense", "mlp"),
        ("roberta.encoder.layer.3.attention.self.value", "attn"),
        ("distilbert.transformer.layer.0.attention.q_lin", "attn"),
        ("distilbert.transformer.layer.0.attention.out_lin", "attn"),
        ("distilbert.transformer.layer.0.ffn.lin1", "mlp"),
        ("transformer.h.0.attn.c_attn", "attn"),
        ("transformer.h.0.attn.c_proj", "attn"),
        ("transformer.h.0.mlp.c_fc", "mlp"),
        ("transformer.h.0.mlp.c_proj", "mlp"),
        ("model.layers.0.self_attn.o_proj", "attn"),
        ("model.layers.0.mlp.down_proj", "mlp"),
        ("classifier", "other"),
        ("bert.embeddings.word_embeddings", "other"),
    ],
)
def test_one_classifier_reads_the_whole_path(name, kind):
    assert module_type(name) == kind


def test_named_rules():
    s = np.array([10.0, 5.0, 2.0, 0.5])
    assert kohya_sv_ratio(s, 4) == 2  # σ > 2.5
    assert kohya_sv_cumulative(s, 0.9) == 3  # cumulative 10, 15, 17 of 17.5; 0.9·17.5 = 15.75
    assert kohya_sv_fro(s, 0.99) == 3  # σ² cum 100, 125, 129 of 129.25; 0.98·129.25=126.7
    assert peft_energy(s, 0.9) == 2  # 125 ≥ 116.3


def test_allocator_takes_largest_sigma_first_and_respects_budget():
    layers = [LayerShape("a", 4, 10, 10), LayerShape("b", 4, 5, 5)]
    spectra = [np.array([5.0, 4.0, 0.1, 0.0]), np.array([6.0, 3.0, 2.0, 1.0])]
    by_energy = allocate(layers, spectra, energy=0.95)
    # σ² in order: 36(b) 25(a) 16(a) 9(b) 4(b) 1(b) → 95% of 91.01 needs 36+25+16+9+4=90 ≥ 86.46
    assert by_energy.rank_pattern == {"a": 2, "b": 3}
    budget = allocate(layers, spectra, budget_params=60)  # min rank 1 each: 20 + 10 = 30 used
    assert budget.lora_params <= 60
    assert budget.rank_pattern == {"a": 2, "b": 2}  # +a (20, σ²=16) then +b (10, σ²=9) = 60
    assert lora_params_at(layers, budget.rank_pattern) == budget.lora_params
    assert lora_params_at(layers, 8) == 4 * 20 + 4 * 10  # uniform rank capped at each layer's r
