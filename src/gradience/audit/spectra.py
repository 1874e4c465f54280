"""Singular values of B·A from r×r cores, in float64, without ever forming B·A.

With G_A = A·Aᵀ and G_B = Bᵀ·B (both r×r), the squared singular values of B·A are the
eigenvalues of G_A^{1/2}·G_B·G_A^{1/2}; the two Gram products cost r²·(in+out) flops, the
r×r eigenproblems are negligible. `factored_svd` gives the singular vectors too (QR of each
side, SVD of the r×r core), which is what truncation needs.

The r×r problems run on one BLAS thread: multi-threaded LAPACK on a 64×64 matrix, interleaved
with torch's OpenMP matmuls, spends 10-100× longer waiting for threads than computing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch


@lru_cache(maxsize=1)
def _controller():  # building it scans loaded libraries: do it once
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


_depth = 0  # 1 inside one_blas_thread: a streaming pass enters once, not once per layer


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Limit numpy's BLAS/LAPACK to one thread (for tiny r×r problems); cheap when nested.

    threadpoolctl sees the BLAS that numpy loaded, not the one linked into torch, so torch's
    own matmuls (the Gram products) keep their threads."""
    global _depth
    if _depth:  # already limited by an outer pass
        yield
        return
    with _controller().limit(limits=1, user_api="blas"):
        _depth = 1
        try:
            yield
        finally:
            _depth = 0


def _f64(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to(device="cpu", dtype=torch.float64)


@dataclass
class Cores:
    """The r×r Gram cores of one layer, and what they tell for free about the factors."""

    ga: np.ndarray  # A·Aᵀ
    gb: np.ndarray  # Bᵀ·B

    @property
    def finite(self) -> bool:
        # diag(G) holds each row's sum of squares: NaN/Inf anywhere in a factor shows up there
        return bool(np.isfinite(np.diag(self.ga)).all() and np.isfinite(np.diag(self.gb)).all())

    @property
    def b_is_zero(self) -> bool:
        return not np.diag(self.gb).any()


class Workspace:
    """One reusable float64 buffer for a streaming pass: casting every layer into fresh memory
    makes glibc raise its mmap threshold and fragment the heap, so peak RSS creeps up with the
    number of layers; reusing one buffer keeps it flat."""

    def __init__(self) -> None:
        self._buf = torch.empty(0, dtype=torch.float64)

    def f64(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        na, nb = a.numel(), b.numel()
        if self._buf.numel() < na + nb:
            self._buf = torch.empty(na + nb, dtype=torch.float64)
        a64 = self._buf[:na].view(a.shape).copy_(a.detach())
        b64 = self._buf[na : na + nb].view(b.shape).copy_(b.detach())
        return a64, b64


def gram_cores(a: torch.Tensor, b: torch.Tensor, ws: Workspace | None = None) -> Cores:
    """G_A = A·Aᵀ and G_B = Bᵀ·B in float64; A is (r×in), B is (out×r)."""
    a64, b64 = ws.f64(a, b) if ws is not None and a.device.type == "cpu" else (_f64(a), _f64(b))
    return Cores((a64 @ a64.T).numpy(), (b64.T @ b64).numpy())


def spectrum_from_grams(ga: np.ndarray, gb: np.ndarray) -> np.ndarray:
    """σ(B·A), descending, from the two r×r Gram matrices."""
    with one_blas_thread():
        ga = (ga + ga.T) / 2
        try:  # G_A = L·Lᵀ: Lᵀ·G_B·L is congruent to G_A^{1/2}·G_B·G_A^{1/2}, at a tenth of an eigh's cost
            root = np.linalg.cholesky(ga)
            core = root.T @ gb @ root
        except np.linalg.LinAlgError:  # G_A singular (rank-deficient A): the PSD square root
            w, v = np.linalg.eigh(ga)
            root = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
            core = root @ gb @ root
        ev = np.linalg.eigvalsh((core + core.T) / 2)
    return np.sqrt(np.clip(ev, 0.0, None))[::-1].copy()


def lora_spectrum(a: torch.Tensor, b: torch.Tensor, scale: float = 1.0) -> np.ndarray:
    """σ(scale·B·A), descending, float64 (length r)."""
    cores = gram_cores(a, b)
    return abs(scale) * spectrum_from_grams(cores.ga, cores.gb)


def factored_svd(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD of B·A = U·diag(S)·Vᵀ in float64 via QR of both factors; U (out×r), S (r), V (in×r)."""
    a64, b64 = _f64(a), _f64(b)
    qa, ra = torch.linalg.qr(a64.T)  # Aᵀ = Qa·Ra   (in×r, r×r)
    qb, rb = torch.linalg.qr(b64)  # B  = Qb·Rb   (out×r, r×r)
    with one_blas_thread():
        uc, s, vhc = np.linalg.svd((rb @ ra.T).numpy(), full_matrices=False)  # the r×r core
    uc, s, vhc = torch.from_numpy(uc), torch.from_numpy(s), torch.from_numpy(vhc)
    return qb @ uc, s, qa @ vhc.T
