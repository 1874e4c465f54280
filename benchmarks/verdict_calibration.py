"""Calibration study of the verdict rules: false-PASS rates and power by simulation.

    python benchmarks/verdict_calibration.py            # full study, ~10 minutes on 2 cores
    python benchmarks/verdict_calibration.py --quick    # 4× fewer draws, for a smoke check

First the grid of every regime (``_calibration_grid.py``: 1/3/5 seeds, 20–2,000 items,
three discordances, two accuracies, three shared-flip fractions, a probit latent model).
Then the comparison with upstream's rules on the simpler flip model
(``gradience.verdicts.simulate.simulate_correctness``): probe accuracy
0.83, 10% of eval items flipping between probe and variant, seed-to-seed SD 0.8
points, the same eval items for every seed (and, as the planner assumes, the same
items flip for every seed). For each budget (3 / 5 seeds × 500 / 872 / 2,000 items)
and true Δ it measures how often each rule says PASS, all rules on the same draws:
(a) upstream as published (safe_uniform: 2/3 quorum + worst seed ≥ −2.5 → every
seed), (a') upstream as intended (2/3 quorum only), (b) ours: the non-inferiority
verdict, (b') the ``noninferiority`` policy. It then checks the budget that
``gradience bench plan`` recommends for power 0.8, and shows why the interval is
studentised rather than a plain crossed percentile bootstrap. Writes
``results/verdict_calibration_<date>.md`` and exits 1 if an acceptance check fails.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from _calibration_grid import grid_report, run_grid  # benchmarks/ is on sys.path when run as a script
from gradience.verdicts import (
    crossed_bootstrap_ci,
    judge_variant,
    load_policy,
    ni_pass_probability,
    plan,
    policy_from_dict,
    verdict_intervals,
)
from gradience.verdicts.aggregate import can_pass
from gradience.verdicts.simulate import simulate_correctness

MARGIN, CONF, BASE, DISC, SEED_SD = 0.025, 0.95, 0.83, 0.10, 0.008
BUDGETS = [(s, n) for s in (3, 5) for n in (500, 872, 2000)]
FALSE_DELTAS = (-MARGIN, -MARGIN - 0.005, -MARGIN - 0.01)
RESULTS = Path(__file__).resolve().parents[1] / "results"
CHUNK_CELLS = 4_000_000  # items × seeds × draws per simulated batch (bounds memory)

UPSTREAM = load_policy("safe_uniform")
INTENDED = policy_from_dict({"name": "two_thirds", "scope": "upstream's intended 2/3 quorum, no floor",
                             "margin": MARGIN, "min_pass_fraction": "2/3"})  # fmt: skip
STRICT = load_policy("noninferiority")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}, numpy {np.__version__}"


def pass_rates(key: tuple[int, ...], draws: int, n_items: int, n_seeds: int, delta: float, **model) -> dict:
    """P(PASS) of every rule on the same simulated draws (seeded per cell, so order does not matter)."""
    rng = np.random.default_rng(np.random.SeedSequence(list(key)))
    hits = dict.fromkeys(("upstream", "intended", "ours", "strict"), 0)
    chunk = max(1, CHUNK_CELLS // (n_items * n_seeds))
    done, checked = 0, False
    while done < draws:
        size = min(chunk, draws - done)
        probe, variant = simulate_correctness(
            rng, size, n_items, n_seeds, delta=delta, baseline_acc=BASE, **model
        )
        diff = variant.astype(np.int8) - probe.astype(np.int8)
        low, _, distinct = verdict_intervals(probe, variant, CONF)
        ni_pass = (low > -MARGIN) & can_pass(distinct, None)
        counts = diff.sum(axis=1)
        hits["upstream"] += int(UPSTREAM.point_verdict(counts, n_items)["passed"].sum())
        hits["intended"] += int(INTENDED.point_verdict(counts, n_items)["passed"].sum())
        hits["ours"] += int(ni_pass.sum())
        strict = STRICT.point_verdict(counts, n_items)["passed"] & ni_pass
        hits["strict"] += int(strict.sum())
        if not checked:  # the batch path must be the path the bench takes
            for r in range(min(3, size)):
                v = judge_variant(
                    [(probe[r, :, s], variant[r, :, s]) for s in range(n_seeds)], STRICT, n_boot=200
                )
                assert (v.noninferiority == "PASS") == bool(ni_pass[r]) and v.passed == bool(strict[r])
            checked = True
        done += size
    return {k: v / draws for k, v in hits.items()}


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def main_table(draws: int) -> tuple[list[str], list[str], bool]:
    model = dict(discordance=DISC, seed_sd=SEED_SD)
    fp_rows, pw_rows, ok = [], [], True
    for bi, (seeds, items) in enumerate(BUDGETS):
        for di, delta in enumerate(FALSE_DELTAS):
            r = pass_rates((1, bi, di), draws, items, seeds, delta, **model)
            ok &= r["ours"] <= 0.05
            fp_rows.append(f"| {seeds} | {items:,} | {100 * delta:+.1f} | {pct(r['upstream'])} | "
                           f"{pct(r['intended'])} | **{pct(r['ours'])}** | {pct(r['strict'])} |")  # fmt: skip
        r = pass_rates((2, bi), draws, items, seeds, 0.0, **model)
        predicted = ni_pass_probability(0.0, items, seeds, margin=MARGIN, confidence=CONF, **model)
        pw_rows.append(f"| {seeds} | {items:,} | {pct(r['upstream'])} | {pct(r['intended'])} | "
                       f"**{pct(r['ours'])}** | {pct(predicted)} | {pct(r['strict'])} |")  # fmt: skip
        print(f"  budget {seeds} seeds × {items} items done", file=sys.stderr, flush=True)
    return fp_rows, pw_rows, ok


PLANNER_TOLERANCE = 0.02  # the planner's analytic power vs simulation, measured here (see the text)


def recommended_check(draws: int) -> tuple[list[str], bool]:
    """The default plan (shared-flip fraction unknown: worst case) simulated at three shares."""
    p = plan(MARGIN, 0.8, BASE, DISC, SEED_SD, confidence=CONF)
    seeds, items = p.recommended_seeds, p.recommended_eval_items
    assert seeds is not None and items is not None and p.evaluated is not None
    lines = [
        f"`gradience bench plan --margin {MARGIN} --power 0.8 --baseline-acc {BASE} --discordance {DISC} "
        f"--seed-sd {SEED_SD}` (shared-flip fraction unknown: the worst case over it) recommends **{seeds} seeds × "
        f"{items:,} eval items** (planner power {p.evaluated.power:.3f}).",
        "",
        "| shared-flip fraction | planner power | simulated power at Δ = 0 | simulated false-PASS at Δ = −2.5 |",
        "|---|---|---|---|",
    ]
    ok = True
    for k, share in enumerate((1.0, 0.5, 0.0)):
        model = dict(discordance=DISC, seed_sd=SEED_SD, item_share=share)
        power = pass_rates((3, k, 0), draws, items, seeds, 0.0, **model)["ours"]
        fp = pass_rates((3, k, 1), draws // 2, items, seeds, -MARGIN, **model)["ours"]
        se = (power * (1 - power) / draws) ** 0.5
        predicted = ni_pass_probability(0.0, items, seeds, margin=MARGIN, confidence=CONF, **model)
        ok &= power >= 0.8 - PLANNER_TOLERANCE and fp <= 0.05
        lines.append(
            f"| {share} | {predicted:.3f} | **{power:.3f}** ± {se:.3f} (MC s.e., {draws:,} draws) | {pct(fp)} |"
        )
    lines += [
        "",
        f"The planner integrates over the seed term's χ² but treats the item term as known; at the "
        f"worst-case share it is about 1–2 points optimistic against simulation, so this check accepts "
        f"simulated power ≥ {0.8 - PLANNER_TOLERANCE:.2f}.",
    ]
    return lines, ok


def independent_table(draws: int) -> tuple[list[str], bool]:
    """Sensitivity: flips independent across seeds (item_share = 0), the other extreme of the model."""
    model = dict(discordance=DISC, seed_sd=SEED_SD, item_share=0.0)
    rows, ok = [], True
    for bi, (seeds, items) in enumerate(BUDGETS):
        fp = pass_rates((5, bi, 0), draws, items, seeds, -MARGIN, **model)
        pw = pass_rates((5, bi, 1), draws, items, seeds, 0.0, **model)
        ok &= fp["ours"] <= 0.05
        pred = ni_pass_probability(0.0, items, seeds, margin=MARGIN, confidence=CONF, **model)
        rows.append(f"| {seeds} | {items:,} | {pct(fp['upstream'])} | {pct(fp['intended'])} | **{pct(fp['ours'])}** | "
                    f"{pct(pw['upstream'])} | {pct(pw['intended'])} | **{pct(pw['ours'])}** | {pct(pred)} |")  # fmt: skip
    return rows, ok


def bootstrap_table(draws: int) -> tuple[list[str], float, float]:
    """Plain crossed percentile bootstrap vs the studentised interval, on the same draws."""
    rows, worst = [], [0.0, 0.0]
    for si, (seed_sd, share) in enumerate([(0.008, 1.0), (0.02, 1.0), (0.008, 0.3), (0.02, 0.3)]):
        rates = []
        for delta in (-MARGIN, 0.0):
            rng = np.random.default_rng(np.random.SeedSequence([4, si, int(delta == 0)]))
            probe, variant = simulate_correctness(
                rng,
                draws,
                2000,
                3,
                delta=delta,
                baseline_acc=BASE,
                discordance=DISC,
                seed_sd=seed_sd,
                item_share=share,
            )
            diff = variant.astype(np.int8) - probe.astype(np.int8)
            low, _, distinct = verdict_intervals(probe, variant, CONF)
            ours = float(np.mean((low > -MARGIN) & can_pass(distinct, None)))
            boot = np.mean([
                crossed_bootstrap_ci(diff[r], confidence=CONF, n_boot=1000, rng=rng)[0] > -MARGIN
                for r in range(draws)
            ])  # fmt: skip
            rates += [float(boot), ours]
        worst = [max(worst[0], rates[0]), max(worst[1], rates[1])]
        rows.append(f"| {100 * seed_sd:.1f} | {'same items' if share == 1 else 'partly shared'} | "
                    f"{pct(rates[0])} | **{pct(rates[1])}** | {pct(rates[2])} | {pct(rates[3])} |")  # fmt: skip
    return rows, worst[0], worst[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4x fewer draws (smoke check)")
    args = ap.parse_args()
    scale = 4 if args.quick else 1
    t0 = time.perf_counter()
    grid_draws = (2000 // scale, 500 // scale)
    grid_lines, grid_ok = grid_report(run_grid(*grid_draws), *grid_draws)
    fp_rows, pw_rows, fp_ok = main_table(2000 // scale)
    rec_lines, rec_ok = recommended_check(10_000 // scale)
    boot_rows, boot_worst, ours_worst = bootstrap_table(2000 // scale)
    indep_rows, indep_ok = independent_table(2000 // scale)
    minutes = (time.perf_counter() - t0) / 60
    today = dt.date.today().isoformat()
    body = [
        f"# Verdict calibration — {today}",
        "",
        f"Machine: {machine()}. Runtime {minutes:.1f} min. Command: `python benchmarks/verdict_calibration.py"
        f"{' --quick' if args.quick else ''}`.",
        "",
        f"Scenario: probe accuracy {BASE}, {100 * DISC:.0f}% of eval items flip between probe and variant, "
        f"seed-to-seed SD {100 * SEED_SD:.1f} points, the same eval items (and flipping items) for every seed; "
        f"margin {100 * MARGIN:.1f} points, {CONF:.0%} two-sided intervals (design false-PASS 2.5%). "
        f"{2000 // scale:,} draws per cell (Monte Carlo s.e. ≈ 0.35 points at 2.5%, ≈ 1 point at 50%).",
        "",
        "## The grid: every regime (probit latent model)",
        "",
        *grid_lines,
        "",
        "## Ours against upstream's rules (binomial flip model)",
        "",
        "Rules, all on the same draws: **upstream** = safe_uniform as published (2/3 quorum + worst seed ≥ −2.5, "
        "which needs every seed); **2/3 only** = upstream's intended quorum without the floor; **ours** = the "
        "non-inferiority verdict (PASS when the CI of mean Δ is above −margin); **NI policy** = the "
        "`noninferiority` policy (ours + 2/3 quorum + no seed below −5 points).",
        "",
        "## False-PASS rate: P(PASS) when the variant truly loses the margin or more (ours must be ≤ 5%)",
        "",
        "| seeds | eval items | true Δ (points) | upstream | 2/3 only | ours | NI policy |",
        "|---|---|---|---|---|---|---|",
        *fp_rows,
        "",
        "## Power: P(PASS) when the variant is truly as good as the probe (Δ = 0)",
        "",
        "| seeds | eval items | upstream | 2/3 only | ours (simulated) | ours (planner) | NI policy |",
        "|---|---|---|---|---|---|---|",
        *pw_rows,
        "",
        "## The budget the planner recommends for power 0.8",
        "",
        *rec_lines,
        "",
        "## Why the interval is studentised (3 seeds × 2,000 items)",
        "",
        "A plain crossed percentile bootstrap (items resampled jointly for all seeds, and seeds resampled) "
        "cannot tell that the seed variance comes from only 3 numbers, so when seed variance is large it "
        f"undercovers (worst false-PASS here {pct(boot_worst)}). The studentised interval (unbiased "
        f"crossed-design variance floored at the within-cell variance, Satterthwaite t with the seed "
        f"term's ν capped at (S−1)/w) stays at or below {pct(ours_worst)} in all four, "
        "though above its 2.5% design where seed-level variance dominates. Its price is power when the "
        "flipping items differ between seeds: the unshared item noise then lands in the between-seed "
        "variance, which 3 seeds estimate with 2 degrees of freedom, and the t quantile widens the interval; "
        "there the bootstrap happens to be both calibrated and more powerful. "
        "Partly shared: the simulator's flip latents correlate 0.3 across seeds. "
        f"{2000 // scale:,} draws per cell, bootstrap with 1,000 resamples.",
        "",
        "| seed SD (points) | flipping items | bootstrap false-PASS | ours false-PASS | bootstrap power | ours power |",
        "|---|---|---|---|---|---|",
        *boot_rows,
        "",
        "## Sensitivity: flips independent across seeds",
        "",
        "The main tables have the same items flip for every seed (the planner's default, item_share = 1). At "
        "the other extreme each seed flips its own items: item noise then averages over seeds, but it also "
        "lands in the between-seed variance, which the interval must estimate from the seeds themselves. "
        "False-PASS stays controlled; with 3 seeds power drops, as `gradience bench plan --item-share 0` "
        "predicts (last column); with 5 seeds it rises. True Δ = −2.5 for false-PASS, 0 for power.",
        "",
        "| seeds | eval items | upstream false-PASS | 2/3 only false-PASS | ours false-PASS | upstream power | "
        "2/3 only power | ours power | ours power (planner, item_share 0) |",
        "|---|---|---|---|---|---|---|---|---|",
        *indep_rows,
        "",
        f"Acceptance: ours ≤ 5% false-PASS in every cell of the grid: **{'yes' if grid_ok else 'NO'}**, "
        f"and of both flip-model scenarios: **{'yes' if fp_ok and indep_ok else 'NO'}**; recommended budget "
        f"reaches power 0.8 (within the planner's tolerance) in simulation: **{'yes' if rec_ok else 'NO'}**.",
    ]
    text = "\n".join(body) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"verdict_calibration_{today}.md"
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)
    return 0 if grid_ok and fp_ok and indep_ok and rec_ok else 1


if __name__ == "__main__":
    sys.exit(main())
