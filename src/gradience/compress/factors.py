"""Rank-k factors of B·A from the audit's r×r Gram cores, in float64, without forming B·A.

With G_A = A·Aᵀ = V_a·Λ_a·V_aᵀ and G_B = Bᵀ·B = V_b·Λ_b·V_bᵀ (the cores the audit's spectrum
comes from), A = (V_a·Λ_a^{½})·Q_aᵀ and B = Q_b·(Λ_b^{½}·V_bᵀ) with orthonormal Q_a, Q_b. So
B·A = Q_b·C·Q_aᵀ with the r×r core C = Λ_b^{½}·V_bᵀ·V_a·Λ_a^{½}; with C = U_c·S·V_cᵀ the thin SVD is
U = B·V_b·Λ_b^{-½}·U_c and Vᵀ = V_cᵀ·Λ_a^{-½}·V_aᵀ·A. Every new factor is therefore one skinny
product of an old factor with an r×k matrix: B' = B·P and A' = Q·A. That is the audit's Gram
work plus two GEMMs per layer, several times faster than Householder QR of the tall factors.

Forming Λ^{-½} squares the factor's condition number: the rounding error of Q_a, Q_b is at worst
about u₆₄·κ(G) ≈ 1e-16·κ(G) (graded factors, the usual case, do far better: ~1e-15 measured at
κ(G) = 8e7). When κ(G_A) or κ(G_B) exceeds 1e8 (worst case ~1e-8, below fp32 storage rounding),
or r exceeds the layer's width, the layer falls back to the audit's `factored_svd` (QR of both
factors), which is backward stable.

Split: B' = U_k·√Σ_k and A' = √Σ_k·V_kᵀ (balanced), not U_k·Σ_k / V_kᵀ. Both give the same B'·A'
in exact arithmetic; balanced factors have equal norms (‖B'‖_F² = ‖A'‖_F² = Σσ_i), so in fp16/bf16
neither side drifts toward subnormals or overflow, the storage rounding error is bounded by
≈ 2u·‖ΔW_k‖_* rather than 2u·√k·‖ΔW_k‖_F, and a balanced pair (AAᵀ = BᵀB) is the fixed point of
gradient flow should the adapter be trained further.

numpy throughout (the compress command imports no torch); torch tensors given to
`truncate_factors` come back as torch tensors, converted at the boundary.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradience.audit.spectra import factored_svd, gram_cores, one_blas_thread, to_f64

MAX_GRAM_CONDITION = 1e8


def _mixers(ga: np.ndarray, gb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(P r×k, Q k×r) with B' = B·P, A' = Q·A; None when a Gram core is too ill-conditioned."""
    with one_blas_thread():
        wa, va = np.linalg.eigh((ga + ga.T) / 2)
        wb, vb = np.linalg.eigh((gb + gb.T) / 2)
        if (
            min(wa[0], wb[0]) <= 0
            or wa[-1] > MAX_GRAM_CONDITION * wa[0]
            or wb[-1] > MAX_GRAM_CONDITION * wb[0]
        ):
            return None
        ra, rb = np.sqrt(wa), np.sqrt(wb)
        core = (rb[:, None] * (vb.T @ va)) * ra[None, :]
        uc, s, vch = np.linalg.svd(core)
        root = np.sqrt(s[:k])
        p = (vb / rb[None, :]) @ uc[:, :k] * root[None, :]
        q = root[:, None] * (vch[:k] / ra[None, :]) @ va.T
    return p, q


def truncated(
    a64: np.ndarray, b64: np.ndarray, k: int, cores: tuple[np.ndarray, np.ndarray] | None = None,
    gain: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Balanced rank-k factors (A' k×in, B' out×k), float64, of the best rank-k approximation of
    gain·B·A, from float64 factors A (r×in), B (out×r). `cores` = (A·Aᵀ, Bᵀ·B) if already
    computed. The gain is folded into the r×k mixer, so no full-size copy is scaled."""
    r = a64.shape[0]
    if r <= min(a64.shape[1], b64.shape[0]):
        if cores is None:
            c = gram_cores(a64, b64)
            cores = (c.ga, c.gb)
        mixers = _mixers(cores[0], cores[1], k)
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
