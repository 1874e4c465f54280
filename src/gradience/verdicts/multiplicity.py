"""Choosing among several variants without inflating the false-PASS rate.

Testing five variants that each truly lose the margin, each at one-sided 2.5%, and naming
the most compressed one that passes, claims a false PASS far more often than 2.5%. Holm's
step-down procedure keeps the family-wise error at α for any dependence between the tests
(S. Holm, "A simple sequentially rejective multiple test procedure", Scand. J. Statist. 6,
1979): sort the k p-values, reject the i-th smallest while p_(i) ≤ α / (k − i + 1). Unlike a
fixed sequence, one unstable variant does not block the others.
"""

from __future__ import annotations

from collections.abc import Mapping

SELECTION = "Holm over all tested variants (family-wise false PASS ≤ the one-sided α)"


def holm(p_values: Mapping[str, float], alpha: float) -> list[str]:
    """Names whose null (Δ ≤ −margin) Holm rejects at family-wise level `alpha`, in p order."""
    order = sorted(p_values, key=lambda n: (p_values[n], n))
    k = len(order)
    accepted = []
    for i, name in enumerate(order):
        if p_values[name] > alpha / (k - i):
            break
        accepted.append(name)
    return accepted
