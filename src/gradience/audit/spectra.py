"""Singular values of B·A from r×r cores, in float64, without ever forming B·A.

With G_A = A·Aᵀ and G_B = Bᵀ·B (both r×r), the squared singular values of B·A are the
eigenvalues of G_A^{1/2}·G_B·G_A^{1/2}; the two Gram products cost r²·(in+out) flops, the
r×r eigenproblems are negligible. `factored_svd` gives the singular vectors too (QR of each
side, SVD of the r×r core), which is what truncation needs.
"""

from __future__ import annotations

import numpy as np
import torch


def _f64(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to(device="cpu", dtype=torch.float64)


def gram_cores(a: torch.Tensor, b: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """G_A = A·Aᵀ and G_B = Bᵀ·B in float64; A is (r×in), B is (out×r)."""
    a64, b64 = _f64(a), _f64(b)
    return (a64 @ a64.T).numpy(), (b64.T @ b64).numpy()


def spectrum_from_grams(ga: np.ndarray, gb: np.ndarray) -> np.ndarray:
    """σ(B·A), descending, from the two r×r Gram matrices."""
    w, v = np.linalg.eigh((ga + ga.T) / 2)
    root = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T  # G_A^{1/2}, PSD square root
    core = root @ gb @ root
    ev = np.linalg.eigvalsh((core + core.T) / 2)
    return np.sqrt(np.clip(ev, 0.0, None))[::-1].copy()


def lora_spectrum(a: torch.Tensor, b: torch.Tensor, scale: float = 1.0) -> np.ndarray:
    """σ(scale·B·A), descending, float64 (length r)."""
    return abs(scale) * spectrum_from_grams(*gram_cores(a, b))


def factored_svd(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD of B·A = U·diag(S)·Vᵀ in float64 via QR of both factors; U (out×r), S (r), V (in×r)."""
    a64, b64 = _f64(a), _f64(b)
    qa, ra = torch.linalg.qr(a64.T)  # Aᵀ = Qa·Ra   (in×r, r×r)
    qb, rb = torch.linalg.qr(b64)  # B  = Qb·Rb   (out×r, r×r)
    uc, s, vhc = torch.linalg.svd(rb @ ra.T)  # core = Rb·Raᵀ
    return qb @ uc, s, qa @ vhc.T
