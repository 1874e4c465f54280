"""Rank-selection rules: one function each, σ (descending) → a rank k with 1 ≤ k ≤ len(σ).

Each rule is named as the audit report, `--rank-rule` and compress's `rank_rule` strategy spell it:

- `energy@T`: smallest k keeping fraction T of ‖ΔW‖²_F (Σ_{i≤k} σ_i² ≥ T·Σσ²).
- `knee`: the largest gap of the normalised spectrum: k maximising σ_k/σ_1 − σ_{k+1}/σ_1, with
  σ_{r+1} = 0 (so a spectrum without a drop keeps every direction). Largest gap, not maximum
  curvature: it needs no smoothing and is exact on the r values we have.
- `erank`: the Roy–Vetterli effective rank exp(H(σ/Σσ)), rounded half up.
- `oht`: Gavish–Donoho optimal hard threshold for an unknown noise level (see `oht`).

All are scale invariant, so they apply to σ of s·B·A or of B·A alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from gradience.audit.errors import AdapterError
from gradience.audit.metrics import effective_rank, energy_rank, percentile

DEFAULT_RULE = "energy@0.90"
REPORTED_RULES = ("energy@0.90", "energy@0.95", "energy@0.99", "knee", "erank", "oht")


def median(values: np.ndarray) -> float:
    """np.median's value without np.median (whose NaN check imports numpy.ma: ~20 ms of start-up)."""
    return percentile(values, 50.0)


def energy(sigma: np.ndarray, t: float) -> int:
    return max(1, energy_rank(sigma, t))


def knee(sigma: np.ndarray) -> int:
    s = np.asarray(sigma, dtype=np.float64)
    if not s.size or not s[0] > 0:
        return 1
    unit = np.append(s / s[0], 0.0)
    return int(np.argmax(unit[:-1] - unit[1:])) + 1  # first of equal gaps: the smaller rank


def erank(sigma: np.ndarray) -> int:
    return max(1, math.floor(effective_rank(sigma) + 0.5))


def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes and weights on [-1, 1] by Golub–Welsch (eigen-decomposition of the
    Jacobi matrix, off-diagonal k/√(4k²−1)); the same as numpy.polynomial's leggauss to rounding,
    without importing numpy.polynomial (and numpy.ma with it: ~35 ms of `audit`'s start-up)."""
    k = np.arange(1, n, dtype=np.float64)
    off = k / np.sqrt(4 * k * k - 1)
    nodes, vecs = np.linalg.eigh(np.diag(off, 1) + np.diag(off, -1))
    return nodes, 2 * vecs[0] ** 2


def marchenko_pastur_median(beta: float) -> float:
    """Median of the Marchenko–Pastur law of aspect ratio β ∈ (0, 1] (eigenvalues of Y·Yᵀ/n for
    an m×n matrix Y of unit-variance noise, β = m/n). The density √((b−x)(x−a))/(2πβx) on
    [a, b] = [(1−√β)², (1+√β)²] is integrated with x = a + (b−a)(1−cos θ)/2, which removes the
    square-root end points (Gauss–Legendre, 64 nodes), and the median found by bisection."""
    if not 0.0 < beta <= 1.0:
        raise ValueError(f"aspect ratio must be in (0, 1], got {beta}")
    a, b = (1 - math.sqrt(beta)) ** 2, (1 + math.sqrt(beta)) ** 2
    nodes, wts = _gauss_legendre(64)
    half = (b - a) / 2

    def mass(theta: float) -> float:
        t = (nodes + 1) * theta / 2
        x = a + half * (1 - np.cos(t))
        return float((wts * half**2 * np.sin(t) ** 2 / (2 * math.pi * beta * x)).sum() * theta / 2)

    total, lo, hi = mass(math.pi), 0.0, math.pi
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mass(mid) < total / 2 else (lo, mid)
    return a + half * (1 - math.cos((lo + hi) / 2))


def optimal_lambda(beta: float) -> float:
    """λ*(β) = √(2(β+1) + 8β/((β+1) + √(β²+14β+1))); λ*(1) = 4/√3 (the paper's title)."""
    return math.sqrt(2 * (beta + 1) + 8 * beta / ((beta + 1) + math.sqrt(beta * beta + 14 * beta + 1)))


@lru_cache(maxsize=64)
def omega(beta: float) -> float:
    """ω(β) = λ*(β)/√μ_β, μ_β the Marchenko–Pastur median: τ = ω(β)·median(σ) for unknown noise."""
    return optimal_lambda(beta) / math.sqrt(marchenko_pastur_median(beta))


def omega_approx(beta: float) -> float:
    """The paper's cubic fit, ω(β) ≈ 0.56β³ − 0.95β² + 1.82β + 1.43."""
    return 0.56 * beta**3 - 0.95 * beta**2 + 1.82 * beta + 1.43


def oht(sigma: np.ndarray, shape: tuple[int, int] | None = None) -> int:
    """Gavish & Donoho, "The Optimal Hard Threshold for Singular Values is 4/√3", IEEE Trans.
    Inf. Theory 60(8):5040–5053, 2014, unknown noise level: keep σ_i > ω(β)·median(σ), with
    β = min(m, n)/max(m, n) of the m×n matrix whose min(m, n) singular values σ are (given values
    are padded with zeros to that count). ω(β) is computed exactly (`omega`), not by the cubic fit.

    The audit applies it to the r×r core of each layer (shape None: β = 1, ω ≈ 2.858): ΔW = s·B·A
    has rank ≤ r, so over the full out×in shape the median singular value is 0 and the rule would
    keep every non-zero σ; in the core's coordinates the r values are a full spectrum and the
    rule separates directions that stand out from the bulk of the learned ones."""
    s = np.sort(np.asarray(sigma, dtype=np.float64))[::-1]
    m, n = shape if shape is not None else (s.size, s.size)
    short = min(m, n)
    if short < 1 or not s.size or not s[0] > 0:
        return 1
    full = np.zeros(short)
    full[: min(short, s.size)] = s[:short]
    tau = omega(short / max(m, n)) * median(full)
    return max(1, int((full > tau).sum()))


@dataclass(frozen=True)
class RankRule:
    name: str
    fn: Callable[[np.ndarray], int]

    def __call__(self, sigma: np.ndarray) -> int:
        return self.fn(sigma)


@lru_cache(maxsize=256)
def parse_rule(name: str) -> RankRule:
    """`energy@T` (0 < T ≤ 1), `knee`, `erank` or `oht`; anything else is an AdapterError."""
    text = name.strip().lower()
    if text.startswith("energy@"):
        try:
            t = float(text.split("@", 1)[1])
        except ValueError:
            t = float("nan")
        if not 0.0 < t <= 1.0:
            raise AdapterError(f"rank rule {name!r}: energy@T needs 0 < T ≤ 1 (e.g. energy@0.90)")
        return RankRule(f"energy@{t:.2f}" if round(t, 2) == t else f"energy@{t:g}", lambda s: energy(s, t))
    simple = {"knee": knee, "erank": erank, "oht": oht}
    if text not in simple:
        raise AdapterError(f"unknown rank rule {name!r}: use energy@T, knee, erank or oht")
    return RankRule(text, simple[text])


def rule_ranks(sigma: np.ndarray, cap: int | None = None) -> dict[str, int]:
    """Every reported rule's rank for one layer (capped at `cap`, the layer's r)."""
    out = {}
    for name in REPORTED_RULES:
        k = parse_rule(name)(sigma)
        out[name] = min(k, cap) if cap is not None else k
    return out
