"""The planner's inputs estimated from a finished bench: accuracy, discordance, seed SD, shared flips.

Per variant, with d[i, s] = variant − probe correctness on the shared items, the crossed
ANOVA's mean squares give the item variance common to all seeds σ²_a = (MS_R − MS_E)/S,
the item-by-seed part σ²_e = MS_E and the seed variance σ²_b = (MS_C − MS_E)/N (each
clipped at 0). The planner's ``item_share`` is σ²_a/(σ²_a + σ²_e) — the fraction of the
per-item noise that the seeds share — and its ``seed_sd`` is σ_b. The plan is made for the
hardest variant (the largest discordance: the one that needs the most eval items), with its
own seed SD and share, so a cheap SVD truncation cannot make the plan look easier than a
retrained variant; every variant's values are kept so the user sees the spread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from gradience.verdicts.aggregate import crossed_interval
from gradience.verdicts.errors import PolicyError
from gradience.verdicts.models import PlanEstimate, VariantEstimate


def _variant_estimate(name: str, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> VariantEstimate:
    probe = np.stack([np.asarray(p, bool) for p, _ in pairs], axis=1)
    variant = np.stack([np.asarray(v, bool) for _, v in pairs], axis=1)
    d = variant.astype(np.int8) - probe.astype(np.int8)
    n, s = d.shape
    ci = crossed_interval(d, 0.95)  # the verdict's own ANOVA: only its variance components are used
    common, own = float(ci.item_var) * n, float(ci.mse)  # (MS_R − MS_E)/S clipped, MS_E
    seed_var = max(float(ci.seed_var) * s - own / n, 0.0)  # (MS_C − MS_E)/N clipped
    return VariantEstimate(
        variant=name,
        n_seeds=s,
        n_items=n,
        probe_accuracy=float(probe.mean()),
        delta=float(ci.mean),
        discordance=float((d != 0).mean()),
        seed_sd=float(np.sqrt(seed_var)),
        item_share=float(common / (common + own)) if common + own > 0 else 1.0,
    )


def estimate_plan_inputs(by_variant: Mapping[str, Sequence[tuple[np.ndarray, np.ndarray]]]) -> PlanEstimate:
    """Plan inputs of the hardest variant; every variant needs ≥ 2 seeds on the same items."""
    rows = []
    for name, pairs in by_variant.items():
        if len(pairs) < 2:
            raise PolicyError(f"{name}: {len(pairs)} seed(s); estimating seed variance needs at least 2")
        sizes = {np.asarray(a).size for pair in pairs for a in pair}
        if len(sizes) != 1 or sizes == {0} or min(sizes) < 2:
            raise PolicyError(f"{name}: seeds were scored on different or too few items {sorted(sizes)}")
        rows.append(_variant_estimate(name, pairs))
    if not rows:
        raise PolicyError("no variant with per-item results to estimate from")
    hardest = max(rows, key=lambda r: (r.discordance, r.seed_sd))
    return PlanEstimate(
        baseline_acc=float(np.mean([r.probe_accuracy for r in rows])),
        discordance=hardest.discordance,
        seed_sd=hardest.seed_sd,
        item_share=hardest.item_share,
        planned_for=hardest.variant,
        variants=rows,
    )
