"""TIES and DARE: merges defined elementwise on the dense updates, one layer at a time.

Both act on entries of ΔW_t = s_t·B_t·A_t (out×in, float64), so the dense update of one layer
per input is formed here and nowhere else; the merged dense ΔW is factored back by SVD.

TIES (Yadav et al., "TIES-Merging: Resolving Interference When Merging Models", NeurIPS 2023):
trim each ΔW_t to its ⌈density·n⌉ largest-magnitude entries (the paper's top-k%, default 20%);
elect each entry's sign as the sign of Σ_t w_t·T_t (the sign with the larger total mass); take the
disjoint mean over the inputs whose trimmed entry is non-zero and agrees with the elected sign,
weighted by w_t: Σ_{t∈agree} w_t·T_t / Σ_{t∈agree} w_t. Weights set relative importance only
(equal weights give the paper's plain mean); λ = 1.

DARE (Yu et al., "Language Models are Super Mario: Absorbing Abilities from Homologous Models as
a Free Lunch", ICML 2024): drop each entry of ΔW_t with probability p = 1 − density and rescale the
survivors by 1/density (so the expectation is ΔW_t), then add: Σ_t w_t·D_t. The keep mask of input
t in layer j is `numpy.random.default_rng([seed, j, t]).random((out, in)) < density`, with j the
layer's index in the output adapter and t the input's position, so a run is reproducible.
"""

from __future__ import annotations

import math

import numpy as np


def trim(delta: np.ndarray, density: float) -> np.ndarray:
    """delta with all but its ⌈density·n⌉ largest-magnitude entries set to zero."""
    flat = np.abs(delta).ravel()
    k = min(flat.size, max(1, math.ceil(density * flat.size)))
    if k == flat.size:
        return delta.copy()
    cut = np.partition(flat, flat.size - k)[flat.size - k]
    return np.where(np.abs(delta) >= cut, delta, 0.0)


def ties(deltas: list[np.ndarray], weights: list[float], density: float) -> np.ndarray:
    trimmed = [trim(d, density) for d in deltas]
    elected = np.sign(sum(w * t for w, t in zip(weights, trimmed, strict=True)))
    num = np.zeros_like(deltas[0])
    den = np.zeros_like(deltas[0])
    for w, t in zip(weights, trimmed, strict=True):
        agree = (np.sign(t) == elected) & (t != 0)
        num += np.where(agree, w * t, 0.0)
        den += np.where(agree, w, 0.0)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def dare(
    deltas: list[np.ndarray],
    weights: list[float],
    density: float,
    seed: int,
    layer_index: int,
    inputs: list[int],
) -> np.ndarray:
    """`inputs`: each delta's position among the command's adapters (the mask's stream id)."""
    out = np.zeros_like(deltas[0])
    for t, w, d in zip(inputs, weights, deltas, strict=True):
        keep = np.random.default_rng([seed, layer_index, t]).random(d.shape) < density
        out += w * np.where(keep, d / density, 0.0)
    return out
