"""Exact pairwise geometry of two low-rank updates from their factors; ΔW is never formed.

Each update ΔW = s·B·A (A r×in, B out×r) is put in thin-SVD form U·diag(S)·Vᵀ from its r×r
cores: compress's `truncate_factors` at k = r gives the balanced factors B' = U·√S, A' = √S·Vᵀ
(from the Gram cores and an SVD of the r×r core, falling back to QR of B and of Aᵀ when a core is
ill-conditioned — see compress/factors.py), so U = B'/√S and V = A'ᵀ/√S. Householder QR of the
tall factors costs 10-50× more than the Gram products here. Then, with M_U = U_Aᵀ·U_B and
M_V = V_Aᵀ·V_B (r_A×r_B, one skinny product each):

- the cosines of the principal angles between the column spaces are the singular values of
  M_U restricted to each update's numerical rank (Björck & Golub 1973); rows likewise with M_V;
- ⟨ΔW_A, ΔW_B⟩_F = tr(S_A·M_U·S_B·M_Vᵀ) = Σ_ij S_A,i·(M_U)_ij·S_B,j·(M_V)_ij, exactly.

Cost per layer: a few (out or in)×r×r products per update, against out·in·(r_A + r_B) flops just
to form the two dense updates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gradience.audit.metrics import numerical_rank
from gradience.audit.spectra import one_blas_thread
from gradience.compress import truncate_factors


@dataclass
class ThinSVD:
    """ΔW = U·diag(S)·Vᵀ with the PEFT scale folded in (S ≥ 0, descending); k = numerical rank."""

    u: np.ndarray  # out×r, float64, orthonormal columns
    s: np.ndarray  # r
    v: np.ndarray  # in×r
    k: int

    @property
    def norm(self) -> float:
        return float(np.sqrt((self.s**2).sum()))


def thin_svd(a: np.ndarray, b: np.ndarray, scale: float) -> ThinSVD:
    r = a.shape[0]
    a2, b2 = truncate_factors(a, b, r)  # B' = U·√S (out×r), A' = √S·Vᵀ (r×in), S descending
    s = (b2 * b2).sum(axis=0)  # ‖U_i·√S_i‖² = S_i
    k = numerical_rank(s)
    inv = np.zeros_like(s)
    inv[:k] = 1.0 / np.sqrt(s[:k])
    u, v = b2 * inv, a2.T * inv  # directions beyond the numerical rank are left zero
    if scale < 0:  # s·U·S·Vᵀ = U·(|s|·S)·(−V)ᵀ
        v = -v
    sigma = abs(scale) * s
    return ThinSVD(u, sigma, v, k)


@dataclass
class PairGeometry:
    col_cosines: np.ndarray  # cosines of the principal angles between column spaces, descending
    row_cosines: np.ndarray
    inner: float  # ⟨ΔW_A, ΔW_B⟩_F
    norm_a: float
    norm_b: float

    @property
    def cosine(self) -> float | None:
        """cos(ΔW_A, ΔW_B) in the Frobenius inner product; None when either update is zero."""
        den = self.norm_a * self.norm_b
        return float(np.clip(self.inner / den, -1.0, 1.0)) if den > 0 else None

    @staticmethod
    def overlap(cosines: np.ndarray) -> float:
        """Mean cos² of the principal angles: 1 when one subspace contains the other, 0 when orthogonal."""
        return float((cosines**2).mean()) if cosines.size else 0.0


def _cosines(m: np.ndarray) -> np.ndarray:
    if 0 in m.shape:
        return np.zeros(0)
    with one_blas_thread():
        c = np.linalg.svd(m, compute_uv=False)
    return np.clip(c, 0.0, 1.0)


def pair_geometry(x: ThinSVD, y: ThinSVD) -> PairGeometry:
    mu = x.u.T @ y.u
    mv = x.v.T @ y.v
    inner = float((x.s[:, None] * mu * y.s[None, :] * mv).sum())
    return PairGeometry(
        col_cosines=_cosines(mu[: x.k, : y.k]),
        row_cosines=_cosines(mv[: x.k, : y.k]),
        inner=inner,
        norm_a=x.norm,
        norm_b=y.norm,
    )
