"""Per-layer metrics from a spectrum, and the aggregate statistics. One definition of each."""

from __future__ import annotations

import math

import numpy as np

ENERGY_THRESHOLDS = (0.90, 0.95, 0.99)


def _unit(sigma: np.ndarray) -> np.ndarray:
    """σ / σ_max: every ratio below is scale-free, and squaring σ near 1e154+ would overflow."""
    s = np.asarray(sigma, dtype=np.float64)
    top = float(s.max()) if s.size else 0.0
    return s / top if top > 0 and math.isfinite(top) else s


def smallest_k(values: np.ndarray, t: float) -> int:
    """Smallest k with Σ_{i≤k} v_i ≥ t·Σv, for v descending (0 when Σv = 0): every energy-style rule."""
    v = np.asarray(values, dtype=np.float64)
    total = float(v.sum())
    if not total > 0.0:
        return 0
    k = int(np.searchsorted(np.cumsum(v), t * total, side="left")) + 1
    return min(k, len(v))


def energy_rank(sigma: np.ndarray, t: float) -> int:
    """Smallest k with Σ_{i≤k} σ_i² ≥ t·Σσ² (0 for an all-zero spectrum)."""
    return smallest_k(_unit(sigma) ** 2, t)


def stable_rank(sigma: np.ndarray) -> float:
    """‖ΔW‖²_F / σ_max²."""
    s = _unit(sigma)
    smax = float(s.max()) if s.size else 0.0
    return float((s**2).sum() / smax**2) if smax > 0 else 0.0


def effective_rank(sigma: np.ndarray) -> float:
    """Roy–Vetterli: exp of the entropy of p_i = σ_i / Σσ."""
    s = np.asarray(sigma, dtype=np.float64)
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s[s > 0] / total
    return float(math.exp(-(p * np.log(p)).sum()))


def numerical_rank(sigma: np.ndarray, rtol: float = 1e-5) -> int:
    s = np.asarray(sigma, dtype=np.float64)
    return int((s > rtol * s.max()).sum()) if s.size and s.max() > 0 else 0


def percentile(values: list[float] | np.ndarray, q: float) -> float:
    """numpy's default (linear interpolation) percentile, used for every pXX in reports; its
    arithmetic step for step, without np.percentile's np.unique (which imports numpy.ma: 20 ms
    of the audit command's start-up)."""
    arr = np.sort(np.asarray(values, dtype=np.float64).ravel())
    n = arr.size
    if not n:
        return 0.0
    if np.isnan(arr[-1]):
        return math.nan
    frac = q / 100
    virtual = (n - 1) * frac  # numpy's virtual index for "linear"
    lo = math.floor(virtual)
    gamma = virtual - lo
    a, b = arr[min(max(lo, 0), n - 1)], arr[min(max(lo + 1, 0), n - 1)]
    diff = b - a
    return float(b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma)  # numpy's _lerp


def mean(values: list[float] | np.ndarray) -> float:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()) if arr.size else 0.0


def median(values: list[float] | np.ndarray) -> float:
    return percentile(values, 50)


def weighted_mean(values: list[float], weights: list[float]) -> float:
    w = np.asarray(weights, dtype=np.float64)
    return float(np.dot(values, w) / w.sum()) if w.sum() > 0 else 0.0
