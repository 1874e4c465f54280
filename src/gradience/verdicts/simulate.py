"""Synthetic per-example correctness with a known true Δ, for calibration studies and tests.

Generative model (shared eval items, per-seed training noise):
  * item i has a flip latent u_i and an easiness w_i, both shared by every seed;
    with ``item_share`` < 1 the flip latent mixes in per-seed noise (a Gaussian copula
    with latent correlation ``item_share``; at 0 and 1 this is the planner's item_share);
  * seed s has a true Δ_s = delta + N(0, seed_sd²);
  * item i is lost by the variant (probe right, variant wrong) when u < (disc − Δ_s)/2,
    won when u > 1 − (disc + Δ_s)/2, else both agree, and are both right when
    w < (acc − lost)/(1 − disc) — so the probe's accuracy is ``baseline_acc``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


def simulate_correctness(
    rng: np.random.Generator,
    n_draws: int,
    n_items: int,
    n_seeds: int,
    *,
    delta: float,
    baseline_acc: float = 0.83,
    discordance: float = 0.10,
    seed_sd: float = 0.008,
    item_share: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(probe_correct, variant_correct), each bool of shape (n_draws, n_items, n_seeds)."""
    if item_share >= 1.0:
        u = np.broadcast_to(rng.random((n_draws, n_items, 1)), (n_draws, n_items, n_seeds))
    else:
        shared = rng.standard_normal((n_draws, n_items, 1))
        own = rng.standard_normal((n_draws, n_items, n_seeds))
        u = stats.norm.cdf(np.sqrt(item_share) * shared + np.sqrt(1.0 - item_share) * own)
    easy = rng.random((n_draws, n_items, 1))
    seed_delta = delta + rng.normal(0.0, seed_sd, (n_draws, 1, n_seeds))
    lost = np.clip((discordance - seed_delta) / 2, 0.0, discordance)
    won = discordance - lost
    variant_loses = u < lost
    variant_wins = u > 1.0 - won
    both_right = (easy < (baseline_acc - lost) / (1.0 - discordance)) & ~variant_loses & ~variant_wins
    probe = variant_loses | both_right
    variant = variant_wins | both_right
    return probe, variant


class InfeasibleCell(ValueError):
    """The requested accuracy, discordance and Δ cannot hold together in the probit model."""


@dataclass(frozen=True)
class ProbitCell:
    """Latent thresholds and loadings that give a cell its exact population acc, Δ and discordance.

    z_m[i, s] = c_m + √ρ·A_i + √(1−ρ)·(√f·G_m,i + √(1−f)·H_m,is) + κ·η_m,s  for m ∈ {probe, variant}:
    A_i is the item's difficulty (shared by both models and every seed), G/H the model-specific
    part that makes items flip (shared by every seed with weight f: the shared-flip fraction),
    η the seed's effect on each model; an item is right when z > 0. The marginal accuracies are
    Φ(c_m/√(1+κ²)), so Δ is exact; ρ is solved so that P(probe ≠ variant) is the discordance;
    κ so that the seed-to-seed SD of a seed's Δ is ``seed_sd`` (to first order).
    """

    c_probe: float
    c_variant: float
    rho: float
    kappa: float
    share: float


def probit_cell(*, acc: float, delta: float, discordance: float, share: float, seed_sd: float) -> ProbitCell:
    """Solve the latent model for one cell of the calibration grid (raises InfeasibleCell)."""
    from scipy.optimize import brentq

    acc_v = acc + delta
    if not (0 < acc < 1 and 0 < acc_v < 1):
        raise InfeasibleCell(f"accuracies {acc:g} and {acc_v:g} must lie in (0, 1)")
    q_p, q_v = stats.norm.ppf(acc), stats.norm.ppf(acc_v)
    kappa = 0.0
    for _ in range(3):  # κ enters the thresholds only through √(1+κ²): a few fixed-point steps
        scale = np.sqrt(1 + kappa**2)
        kappa = seed_sd / np.hypot(stats.norm.pdf(q_p * scale), stats.norm.pdf(q_v * scale))
    total = 1 + kappa**2

    def disc_at(r: float) -> float:
        both = stats.multivariate_normal(mean=[0, 0], cov=[[1, r], [r, 1]]).cdf([q_p, q_v])
        return acc + acc_v - 2 * float(both) - discordance

    r_max = 1 / total - 1e-9
    if disc_at(0.0) < 0:
        raise InfeasibleCell(f"discordance {discordance:g} exceeds that of independent models at acc {acc:g}")
    if disc_at(r_max) > 0:
        raise InfeasibleCell(f"discordance {discordance:g} is below what seed effects alone give")
    r = brentq(disc_at, 0.0, r_max, xtol=1e-12)
    scale = np.sqrt(total)
    return ProbitCell(float(q_p * scale), float(q_v * scale), float(r * total), float(kappa), float(share))


def simulate_probit(
    rng: np.random.Generator, cell: ProbitCell, n_draws: int, n_items: int, n_seeds: int
) -> tuple[np.ndarray, np.ndarray]:
    """(probe_correct, variant_correct), each bool of shape (n_draws, n_items, n_seeds)."""
    shape, item = (n_draws, n_items, n_seeds), (n_draws, n_items, 1)
    common = np.sqrt(cell.rho) * rng.standard_normal(item)
    own, f = np.sqrt(1 - cell.rho), cell.share
    out = []
    for c in (cell.c_probe, cell.c_variant):
        z = common + own * (
            np.sqrt(f) * rng.standard_normal(item) + np.sqrt(1 - f) * rng.standard_normal(shape)
        )
        z += cell.kappa * rng.standard_normal((n_draws, 1, n_seeds))
        out.append(z > -c)
    return out[0], out[1]


def standard_skewed(rng: np.random.Generator, shape: tuple[int, ...], skew: float) -> np.ndarray:
    """Mean 0, variance 1 and the given skewness: a standardised gamma (normal at skew 0).

    Negative skew is a long left tail: a variant that now and then does much worse on an item.
    """
    if skew == 0:
        return rng.standard_normal(shape)
    k = 4.0 / skew**2
    return np.sign(skew) * (rng.standard_gamma(k, shape) - k) / np.sqrt(k)


def simulate_continuous(
    rng: np.random.Generator,
    n_draws: int,
    n_items: int,
    n_seeds: int,
    *,
    delta: float,
    item_sd: float,
    seed_sd: float,
    item_share: float = 1.0,
    skew: float = 0.0,
    higher_is_better: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(probe, variant) per-item values, each float of shape (n_draws, n_items, n_seeds).

    The oriented difference (positive = variant better) is
    d[i, s] = delta + b_s + item_sd·(√share·A_i + √(1−share)·E_is): A_i shared by every seed,
    E_is each seed's own, both standardised with skewness ``skew``; b_s ~ N(0, seed_sd²).
    So a seed's mean difference has SD ≈ √(seed_sd² + item_sd²/N) and the true Δ is ``delta``.
    The probe's values are NLL-like (a log-normal item difficulty plus a little seed noise);
    they do not enter Δ.
    """
    item, cell = (n_draws, n_items, 1), (n_draws, n_items, n_seeds)
    noise = np.sqrt(item_share) * standard_skewed(rng, item, skew)
    if item_share < 1:
        noise = noise + np.sqrt(1 - item_share) * standard_skewed(rng, cell, skew)
    d = delta + rng.normal(0.0, seed_sd, (n_draws, 1, n_seeds)) + item_sd * noise
    probe = rng.lognormal(0.0, 0.5, item) + rng.normal(0.0, 0.05, cell)
    return probe, (probe + d if higher_is_better else probe - d)
