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
