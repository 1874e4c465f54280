"""Singular values of B·A from r×r cores, in float64, without ever forming B·A.

With G_A = A·Aᵀ and G_B = Bᵀ·B (both r×r), the squared singular values of B·A are the
eigenvalues of G_A^{1/2}·G_B·G_A^{1/2}; the two Gram products cost r²·(in+out) flops, the
r×r eigenproblems are negligible. `factored_svd` gives the singular vectors too (QR of each
side, SVD of the r×r core), which is what truncation needs.

Everything is numpy: the audit's whole path imports no torch (its import costs more than the
audit). Torch tensors handed in (a live model, the public helpers) are converted at the
boundary (`as_numpy`). A streaming pass runs layers on several threads with one BLAS thread
each (`gradience.audit.parallel`): the cast to float64 and the reads parallelise too, and
multi-threaded LAPACK on a 64×64 matrix spends far longer waiting for threads than computing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from gradience.audit.store import cast_into


@lru_cache(maxsize=1)
def _controller() -> Any:  # building it scans loaded libraries: do it once
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


_depth = 0  # 1 inside one_blas_thread: a streaming pass enters once, not once per layer


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Limit numpy's BLAS/LAPACK to one thread (process-wide); cheap when nested."""
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


def as_numpy(x: Any) -> np.ndarray:
    """A numpy view of an array or a (CPU or device, any float dtype) torch tensor."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach"):  # a torch tensor: torch is already imported by whoever made it
        x = x.detach().cpu()
        if str(x.dtype) in ("torch.bfloat16", "torch.float8_e4m3fn", "torch.float8_e5m2"):
            x = x.float()
        return x.numpy()
    return np.asarray(x)


class Workspace:
    """Named reusable buffers for one thread of a streaming pass: casting every layer into fresh
    memory makes glibc raise its mmap threshold and fragment the heap, so peak RSS creeps up
    with the number of layers; reusing buffers keeps it flat."""

    def __init__(self) -> None:
        self._bufs: dict[str, np.ndarray] = {}

    def take(self, name: str, n: int, dtype: Any) -> np.ndarray:
        """A 1-D view of n elements of buffer `name`, valid until the next take of that name."""
        dtype = np.dtype(dtype)
        buf = self._bufs.get(name)
        if buf is None or buf.nbytes < n * dtype.itemsize:
            buf = self._bufs[name] = np.empty(n * dtype.itemsize, dtype=np.uint8)
        return buf[: n * dtype.itemsize].view(dtype)

    def f64(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        na, nb = a.size, b.size
        buf = self.take("f64", na + nb, np.float64)
        a64, b64 = buf[:na].reshape(a.shape), buf[na:].reshape(b.shape)
        cast_into(a64, a)
        cast_into(b64, b)
        return a64, b64


def to_f64(a: Any, b: Any, ws: Workspace | None = None) -> tuple[np.ndarray, np.ndarray]:
    a, b = as_numpy(a), as_numpy(b)
    if ws is not None:
        return ws.f64(a, b)
    return _f64(a), _f64(b)


def _f64(x: np.ndarray) -> np.ndarray:
    """float64 (no copy if already): float16 through `cast_into`, whose subnormals stay fast."""
    if x.dtype == np.float64:
        return x
    out = np.empty(x.shape, dtype=np.float64)
    cast_into(out, x)
    return out


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


def gram_cores(a: Any, b: Any, ws: Workspace | None = None) -> Cores:
    """G_A = A·Aᵀ and G_B = Bᵀ·B in float64; A is (r×in), B is (out×r). With `ws`, the float64
    copies live in its buffer (and stay there for `ws.f64`'s caller until the next layer)."""
    a64, b64 = to_f64(a, b, ws)
    with np.errstate(all="ignore"):  # NaN/Inf factors: reported by Cores.finite, not warned
        return Cores(a64 @ a64.T, b64.T @ b64)


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


def lora_spectrum(a: Any, b: Any, scale: float = 1.0) -> np.ndarray:
    """σ(scale·B·A), descending, float64 (length r)."""
    cores = gram_cores(a, b)
    return abs(scale) * spectrum_from_grams(cores.ga, cores.gb)


def factored_svd(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin SVD of B·A = U·diag(S)·Vᵀ in float64 via QR of both factors; U (out×r), S (r), V (in×r)."""
    a64, b64 = to_f64(a, b)
    qa, ra = np.linalg.qr(a64.T)  # Aᵀ = Qa·Ra   (in×r', r'×r)
    qb, rb = np.linalg.qr(b64)  # B  = Qb·Rb   (out×r', r'×r)
    with one_blas_thread():
        uc, s, vhc = np.linalg.svd(rb @ ra.T, full_matrices=False)  # the small core
    return qb @ uc, s, qa @ vhc.T
