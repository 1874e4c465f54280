"""Rank-k factors of B·A from the audit's r×r Gram cores, in float64, without forming B·A.

With G_A = A·Aᵀ = V_a·Λ_a·V_aᵀ and G_B = Bᵀ·B (the cores the audit's spectrum comes from),
R_A = V_a·Λ_a^{½} gives A = R_A·Q_aᵀ with orthonormal Q_aᵀ = Λ_a^{-½}·V_aᵀ·A, so B·A = M·Q_aᵀ with
M = B·R_A. MᵀM = R_Aᵀ·G_B·R_A = W·Σ²·Wᵀ (an r×r eigenproblem) gives M = U·Σ·Wᵀ, hence the thin SVD
U = B·R_A·W·Σ⁻¹, V = Q_a·W. Every new factor is one skinny product of an old factor with an r×k
matrix: B' = B·P with P = R_A·W_k·Σ_k^{-½}, A' = Q·A with Q = Σ_k^{½}·W_kᵀ·Λ_a^{-½}·V_aᵀ. That is
the audit's Gram work, two r×r eigenproblems and two GEMMs per layer, several times faster than
Householder QR of the tall factors (and G_B needs no factorisation of its own).

Λ_a^{-½} and Σ_k^{-½} square condition numbers: the rounding error is at worst about
u₆₄·κ ≈ 1e-16·κ (graded factors, the usual case, do far better: ~1e-15 measured at κ = 8e7).
When κ(G_A) or σ₁²/σ_k² exceeds 1e8 (worst case ~1e-8, below fp32 storage rounding), or r
exceeds the layer's width, the layer falls back to the audit's `factored_svd` (QR of both
factors), which is backward stable. Directions past k never enter P or Q, so an ill-conditioned
tail that the truncation drops costs nothing.

Split: B' = U_k·√Σ_k and A' = √Σ_k·V_kᵀ (balanced), not U_k·Σ_k / V_kᵀ. Both give the same B'·A'
in exact arithmetic; balanced factors have equal norms (‖B'‖_F² = ‖A'‖_F² = Σσ_i), so in fp16/bf16
neither side drifts toward subnormals or overflow, the storage rounding error is bounded by
≈ 2u·‖ΔW_k‖_* rather than 2u·√k·‖ΔW_k‖_F, and a balanced pair (AAᵀ = BᵀB) is the fixed point of
gradient flow should the adapter be trained further.

numpy throughout (the compress command imports no torch); torch tensors given to
`truncate_factors` come back as torch tensors, converted at the boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gradience.audit.spectra import factored_svd, gram_cores, one_blas_thread, to_f64

MAX_GRAM_CONDITION = 1e8


@dataclass
class CoreEig:
    """B·A's thin SVD held as r×r pieces: G_A = V_a·diag(λ_a)·V_aᵀ, and the eigenpairs of
    R_Aᵀ·G_B·R_A (R_A = V_a·Λ_a^{½}), descending: e = σ(B·A)², W their vectors."""

    wa: np.ndarray
    va: np.ndarray
    e: np.ndarray
    w: np.ndarray

    @property
    def sigma(self) -> np.ndarray:
        return np.sqrt(np.clip(self.e, 0.0, None))

    def mixers(self, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(P r×k, Q k×r) with B' = B·P, A' = Q·A; None when σ₁²/σ_k² > 1e8."""
        e, w = self.e[:k], self.w[:, :k]
        if e[-1] <= 0 or e[0] > MAX_GRAM_CONDITION * e[-1]:
            return None
        quarter = e**0.25  # √σ
        with one_blas_thread():
            p = (self.va * np.sqrt(self.wa)[None, :]) @ (w / quarter[None, :])
            q = (quarter[:, None] * w.T) @ (self.va / np.sqrt(self.wa)[None, :]).T
        return p, q


def core_eig(ga: np.ndarray, gb: np.ndarray) -> CoreEig | None:
    """Two r×r eigenproblems; None when κ(G_A) > 1e8 (the Gram route would lose accuracy)."""
    with one_blas_thread():
        wa, va = np.linalg.eigh((ga + ga.T) / 2)
        if wa[0] <= 0 or wa[-1] > MAX_GRAM_CONDITION * wa[0]:
            return None
        root_a = va * np.sqrt(wa)[None, :]
        core = root_a.T @ gb @ root_a  # (B·R_A)ᵀ(B·R_A)
        e, w = np.linalg.eigh((core + core.T) / 2)
    return CoreEig(wa, va, e[::-1].copy(), w[:, ::-1].copy())


def _mixers(ga: np.ndarray, gb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
    eig = core_eig(ga, gb)
    return None if eig is None else eig.mixers(k)


def truncated(
    a64: np.ndarray, b64: np.ndarray, k: int, cores: tuple[np.ndarray, np.ndarray] | None = None,
    gain: float = 1.0, eig: CoreEig | None = None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Balanced rank-k factors (A' k×in, B' out×k), float64, of the best rank-k approximation of
    gain·B·A, from float64 factors A (r×in), B (out×r). `cores` = (A·Aᵀ, Bᵀ·B) and `eig` =
    `core_eig(*cores)` if already computed. The gain is folded into the r×k mixer, so no
    full-size copy is scaled."""
    r = a64.shape[0]
    if r <= min(a64.shape[1], b64.shape[0]):
        if eig is None:
            if cores is None:
                c = gram_cores(a64, b64)
                cores = (c.ga, c.gb)
            eig = core_eig(*cores)
        mixers = None if eig is None else eig.mixers(k)
        if mixers is not None:
            p, q = mixers
            return q @ a64, b64 @ (p * gain if gain != 1.0 else p)
    u, s, v = factored_svd(a64, b64)
    root = np.sqrt(np.clip(s[:k], 0.0, None))
    a2, b2 = (v[:, :k] * root).T, u[:, :k] * (root * gain)
    if a2.shape[0] < k:  # r > min(in, out): B·A has rank < k, the missing directions are zero
        a2 = np.concatenate([a2, np.zeros((k - a2.shape[0], a2.shape[1]))])
        b2 = np.concatenate([b2, np.zeros((b2.shape[0], k - b2.shape[1]))], axis=1)
    return np.ascontiguousarray(a2), np.ascontiguousarray(b2)


def truncate_factors(
    a: Any, b: Any, k: int, cores: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[Any, Any]:
    """Balanced rank-k factors (A' k×in, B' out×k), float64, of the best rank-k approximation of
    B·A (A r×in, B out×r): numpy arrays, or torch tensors when given torch tensors."""
    a2, b2 = truncated(*to_f64(a, b), k, cores)
    if isinstance(a, np.ndarray) or not hasattr(a, "detach"):
        return a2, b2
    import torch

    return torch.from_numpy(a2), torch.from_numpy(b2)
