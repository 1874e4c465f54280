"""Calibration of the continuous-outcome verdict (NLL-like metrics): false PASS, coverage and power.

    python benchmarks/continuous_calibration.py            # ~2 minutes on 2 cores
    python benchmarks/continuous_calibration.py --quick    # 4× fewer draws, for a smoke check

Data come from ``gradience.verdicts.simulate.simulate_continuous``: per-item oriented
differences d = Δ + seed effect + item_sd·(shared item part + each seed's own part), with the
residuals normal or skewed to the left (a standardised gamma: a variant that now and then does
much worse on an item, as NLL does), judged as a lower-is-better metric. The grid: seeds
{1, 3, 5} × items {20, 100, 1,000} × shared fraction of item noise {0, 0.5, 1} × skewness
{0, −1, −2} × seed SD {0.5, 2} × one seed's item SE. One seed is judged with the true seed SD
given (without it, one seed never passes). The verdict is ``continuous_intervals``, the
function ``judge_continuous`` calls; a few draws per cell are re-judged by ``judge_continuous``.
Writes ``results/continuous_calibration_<date>.md``; exits 1 if an acceptance check fails.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import numpy as np

from gradience.verdicts import judge_continuous, ni_pass_probability
from gradience.verdicts.aggregate import can_pass
from gradience.verdicts.continuous import continuous_intervals
from gradience.verdicts.simulate import simulate_continuous
from verdict_calibration import machine  # benchmarks/ is on sys.path when run as a script

MARGIN, ITEM_SD, CONF = 0.05, 0.4, 0.95
SEEDS, ITEMS, SHARES, SKEWS, SEED_RATIOS = (
    (1, 3, 5),
    (20, 100, 1000),
    (0.0, 0.5, 1.0),
    (0.0, -1.0, -2.0),
    (0.5, 2.0),
)
RESULTS = Path(__file__).resolve().parents[1] / "results"


def cell(
    key: list[int], draws: int, seeds: int, items: int, share: float, skew: float, ratio: float, delta: float
):
    """(P(PASS), two-sided coverage of the true Δ) over ``draws`` simulated benches."""
    seed_sd = ratio * ITEM_SD / np.sqrt(items)
    probe, variant = simulate_continuous(
        np.random.default_rng(key), draws, items, seeds, delta=delta, item_sd=ITEM_SD, seed_sd=seed_sd,
        item_share=share, skew=skew, higher_is_better=False,
    )  # fmt: skip
    given = seed_sd if seeds == 1 else None
    low, high, distinct = continuous_intervals(probe, variant, CONF, given, higher_is_better=False)
    passed = (low > -MARGIN) & can_pass(distinct, given)
    for r in range(2):  # the batch path is the path judge_continuous takes
        pairs = [(probe[r, :, s], variant[r, :, s]) for s in range(seeds)]
        v = judge_continuous(pairs, "noninferiority", margin=MARGIN, higher_is_better=False, seed_sd=given)
        assert (v.noninferiority == "PASS") == bool(passed[r]), key
    return float(passed.mean()), float(np.mean((low <= delta) & (delta <= high))), seed_sd


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4x fewer draws (smoke check)")
    scale = 4 if ap.parse_args().quick else 1
    draws, power_draws = 2000 // scale, 1000 // scale
    t0 = time.perf_counter()
    rows, fp, cov, power_gap = [], {}, [], []
    for a, seeds in enumerate(SEEDS):
        for b, items in enumerate(ITEMS):
            for c, share in enumerate(SHARES):
                for d, skew in enumerate(SKEWS):
                    for e, ratio in enumerate(SEED_RATIOS):
                        key = [a, b, c, d, e]
                        rate, coverage, seed_sd = cell(
                            [1, *key], draws, seeds, items, share, skew, ratio, -MARGIN
                        )
                        fp[(seeds, items, share, skew, ratio)] = rate
                        cov.append(coverage)
                        power, planned = "", ""
                        if skew == 0 and seeds > 1:
                            sim, _, _ = cell([2, *key], power_draws, seeds, items, share, skew, ratio, 0.0)
                            model = dict(margin=MARGIN, item_sd=ITEM_SD, seed_sd=seed_sd, confidence=CONF)
                            pred = ni_pass_probability(0.0, items, seeds, item_share=share, **model)
                            power_gap.append(abs(sim - pred))
                            power, planned = pct(sim), pct(pred)
                        rows.append(f"| {seeds} | {items:,} | {share} | {skew:g} | {ratio} | **{pct(rate)}** | "
                                    f"{pct(coverage)} | {power} | {planned} |")  # fmt: skip
        print(f"  {seeds} seed(s) done", file=sys.stderr, flush=True)
    minutes = (time.perf_counter() - t0) / 60

    def worst(pred) -> float:
        return max(r for k, r in fp.items() if pred(*k))

    moderate = worst(lambda s, n, f, k, r: k > -2)
    heavy_small = worst(lambda s, n, f, k, r: k == -2 and n == 20)
    heavy_big = worst(lambda s, n, f, k, r: k == -2 and n >= 100)
    ok = moderate <= 0.05 and heavy_big <= 0.05 and min(cov) >= 0.92 and max(power_gap) <= 0.05
    today = dt.date.today().isoformat()
    body = [
        f"# Continuous-outcome verdict calibration — {today}",
        "",
        f"Machine: {machine()}. Runtime {minutes:.1f} min. Command: `python benchmarks/continuous_calibration.py"
        f"{' --quick' if scale > 1 else ''}`.",
        "",
        f"Lower-is-better metric (NLL-like), margin {MARGIN} (metric units), per-item SD of the paired difference "
        f"{ITEM_SD}, {CONF:.0%} two-sided intervals (design false PASS 2.5%). Grid: seeds {{1, 3, 5}} × items "
        "{20, 100, 1,000} × shared fraction of item noise {0, 0.5, 1} × skewness of the item differences "
        "{0, −1, −2} (negative: a long tail of items where the variant does much worse; −2 is an exponential "
        "tail) × seed SD {0.5, 2} × one seed's item SE; one seed is judged with the true seed SD given. "
        f"{draws:,} draws per cell at true Δ = −margin (Monte Carlo s.e. ≈ {100 * (0.025 * 0.975 / draws) ** 0.5:.2f} "
        f"points at 2.5%, {100 * (0.05 * 0.95 / draws) ** 0.5:.2f} at 95%); "
        f"power at Δ = 0 from {power_draws:,} draws for the normal cells with ≥ 2 seeds, beside the planner's "
        "`plan(item_sd=...)` prediction.",
        "",
        f"- **Worst false PASS at Δ = −margin, skewness 0 or −1: {pct(moderate)}** (every size, share, seed SD).",
        f"- Skewness −2 (exponential tail): {pct(heavy_big)} worst from 100 items up, but **{pct(heavy_small)} "
        "at 20 items**: a t interval on 20 strongly skewed values is optimistic; use ≥ 100 items for such metrics.",
        f"- Two-sided coverage {pct(min(cov))} to {pct(max(cov))} over all {len(cov)} cells; above 97.5% only where "
        "the seeds share none of the item noise and the seed SD is small. There the interval's within-cell "
        "floor binds (in about 65% of draws at 3 seeds × 100 items), where a t test on the seed means alone "
        "would be exact: conservative, fewer PASSes. The floor stays because it is what keeps a metric with "
        "ties (partial credit, many exact zeros) from a zero-width interval when seeds' means coincide, as "
        "disjoint flips did for 0/1 metrics.",
        f"- Planner vs simulation, power at Δ = 0: largest gap {100 * max(power_gap):.1f} points.",
        "",
        f"Acceptance (false PASS ≤ 5% for skewness ≥ −1 everywhere and for −2 from 100 items; coverage ≥ 92% "
        f"everywhere; planner within 5 points): **{'yes' if ok else 'NO'}**.",
        "",
        "| seeds | items | shared | skewness | seed SD / item SE | false PASS at Δ = −m | coverage | "
        "power at Δ = 0 (simulated) | power (planner) |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    text = "\n".join(body) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"continuous_calibration_{today}.md"
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
