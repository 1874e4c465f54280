"""truncate_factors against a dense SVD, on both paths: Gram cores (well conditioned) and the QR
fallback (ill-conditioned or rank-deficient factors, r wider than the layer)."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradience.compress import truncate_factors
from gradience.compress.factors import _mixers


def _factors(seed: int, r: int, fin: int, fout: int, log_cond: float) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(r, fin, generator=g, dtype=torch.float64)
    b = torch.randn(fout, r, generator=g, dtype=torch.float64)
    return a, b * torch.logspace(0, -log_cond, r, dtype=torch.float64)  # B's columns span 10^log_cond


def _check(a: torch.Tensor, b: torch.Tensor, k: int) -> None:
    delta = b @ a
    s = torch.linalg.svdvals(delta)
    a2, b2 = truncate_factors(a, b, k)
    assert a2.shape == (k, a.shape[1]) and b2.shape == (b.shape[0], k)
    err2 = float(((delta - b2 @ a2) ** 2).sum())
    dropped = float((s[k:] ** 2).sum())
    assert abs(err2 - dropped) <= 1e-9 * float((s**2).sum()), (err2, dropped)
    # balanced: both factors carry half of every singular value
    assert torch.allclose((a2**2).sum(), (b2**2).sum(), rtol=1e-9, atol=1e-300)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    r=st.integers(1, 12),
    fin=st.integers(1, 40),
    fout=st.integers(1, 40),
    kfrac=st.floats(0.0, 1.0),
    log_cond=st.sampled_from([0.0, 2.0, 6.0, 12.0]),
)
def test_truncation_is_eckart_young(seed, r, fin, fout, kfrac, log_cond):
    a, b = _factors(seed, r, fin, fout, log_cond)
    _check(a, b, max(1, round(kfrac * r)))


def test_both_paths_are_taken():
    a, b = _factors(0, 8, 40, 40, 0.0)
    ga, gb = (a @ a.T).numpy(), (b.T @ b).numpy()
    assert _mixers(ga, gb, 4) is not None  # well conditioned: Gram-core path
    a, b = _factors(0, 8, 40, 40, 6.0)  # σ spans ~1e6: keeping all 8 (σ₁²/σ₈² ≈ 1e12 > 1e8): QR fallback
    ga, gb = (a @ a.T).numpy(), (b.T @ b).numpy()
    assert _mixers(ga, gb, 8) is None
    _check(a, b, 8)
    assert _mixers(ga, gb, 3) is not None  # the ill-conditioned tail is dropped: Gram path, still exact
    _check(a, b, 3)
    a2 = torch.cat([a[:4], a[:4] + 1e-9 * a[4:]])  # κ(G_A) ≈ 1e18: QR fallback
    assert _mixers((a2 @ a2.T).numpy(), gb, 3) is None
    _check(a2, b, 3)
    _check(a, torch.zeros_like(b), 3)  # untrained layer
