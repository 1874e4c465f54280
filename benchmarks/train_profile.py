"""train_profile: where a bench training step's time goes, and what BitDropout saves.

    python benchmarks/train_profile.py [--steps 8] [--rounds 3] [--compare dropout|precision]

The certification bench's model and data (MiniLM-L6, its SST-2 training items, batch 16, LoRA on
query/key/value/attention.output.dense, dropout 0.1, fp32, all threads): one job trained alone as
the sequential bench trains it (the probe, r=32) and one fused group as the fused bench trains
the retrained variants (12 jobs: 3 seeds × r = 4, 8, 16, 32). Each with torch's dropout and with
``BitDropout`` (what the bench now runs), in interleaved rounds; medians of ms per job-step.
Then torch.profiler's self-CPU time per op for each of the four, top ops: what fusing leaves to
gain is what does not shrink when K jobs share one pass over the frozen base.
``--compare precision``: both with BitDropout, fp32 against ``runtime.precision: bf16`` (the
frozen base's Linear layers in bfloat16, ``bench.precision``), written as train_profile_precision.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

from _common import write_result

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "glue-sst2"
FUSED_RANKS = (4, 8, 16, 32)
SEEDS = (42, 123, 456)


@contextlib.contextmanager
def _silent(description: str, total: int) -> Any:
    yield lambda n=1, info="": None


def setup() -> tuple[Any, Any, Any, list[str], list[Any]]:
    from gradience.bench import fused as F
    from gradience.bench import runs as RS
    from gradience.bench.config import parse_config

    raw = yaml.safe_load((ROOT / "src/gradience/bench/configs/minilm_sst2_certify.yaml").read_text())
    raw["task"]["data_dir"] = str(DATA)
    cfg = parse_config(raw)
    ctx = RS._Ctx(cfg, smoke=False)
    probe = RS.RunSpec(name="probe_r32", variant="probe", seed=42, method="train", r=32, alpha=64)
    alone = RS._fresh_model(cfg, probe, ctx)[1]
    specs = [RS.RunSpec(name=f"r{r}", variant="uniform", seed=s, method="train", r=r, alpha=2 * r)
             for s in SEEDS for r in FUSED_RANKS]  # fmt: skip
    names = ["default", *(f"job{k}" for k in range(1, len(specs)))]
    models = [RS._fresh_model(cfg, sp, ctx)[1] for sp in specs]
    fused = F.build(models, [RS._lora(cfg, sp, ctx) for sp in specs], names)
    return cfg, ctx, (alone, fused), names, specs


def step_ms(
    cfg: Any, ctx: Any, which: str, model: Any, names: list[str], specs: list[Any], steps: int,
    precision: str = "fp32",
) -> float:  # fmt: skip
    """ms per job-step of ``steps`` steps (a fused step trains every job once)."""
    from gradience.bench import fused as F
    from gradience.bench import training as T

    tr, data = cfg.train, ctx.data
    kw = dict(task=ctx.task, steps=steps, batch_size=tr.per_device_train_batch_size, lr=tr.lr,
              weight_decay=tr.weight_decay, warmup_ratio=tr.warmup_ratio, pad_token_id=data.pad_token_id,
              device=ctx.device, label=which, precision=precision)  # fmt: skip
    if which == "alone":
        return 1000 * T.train_lora(model, data.train, seed=42, **kw).wall_s / steps
    jobs = [F.FusedJob(adapter=n, seed=sp.seed, label=n) for n, sp in zip(names, specs, strict=True)]
    stats = F.train_fused(model, jobs, data.train, **kw)
    return 1000 * stats[0].wall_s / steps / len(jobs)


def top_ops(fn: Any, n: int = 12) -> list[str]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    avg = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in avg)
    rows = ["| op | self CPU share | calls |", "|---|---|---|"]
    rows += [f"| `{e.key}` | {e.self_cpu_time_total / total:.1%} | {e.count} |" for e in avg[:n]]
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--compare", choices=["dropout", "precision"], default="dropout")
    args = ap.parse_args()
    from gradience.bench import training as T
    from gradience.bench.dropout import BitDropout, set_dropout

    T.set_progress_factory(_silent)
    cfg, ctx, (alone, fused), names, specs = setup()
    models = {"alone": alone, "fused": fused}
    if args.compare == "dropout":  # (dropout module, runtime.precision) per arm; the first is the baseline
        arms = {"torch dropout": (torch.nn.Dropout, "fp32"), "BitDropout": (BitDropout, "fp32")}
    else:
        arms = {"fp32": (BitDropout, "fp32"), "bf16 base": (BitDropout, "bf16")}
    first = next(iter(arms))

    def timed(which: str, arm: str, steps: int) -> float:
        set_dropout(models[which], arms[arm][0])
        return step_ms(cfg, ctx, which, models[which], names, specs, steps, arms[arm][1])

    times: dict[tuple[str, str], list[float]] = {(w, a): [] for w in models for a in arms}
    for which in models:  # warm-up
        for arm in arms:
            timed(which, arm, 2)
    for r in range(args.rounds):
        for which in models:
            for arm in arms:
                times[(which, arm)].append(timed(which, arm, args.steps))
                print(
                    f"round {r + 1}: {which}, {arm}: {times[(which, arm)][-1]:.0f} ms/job-step",
                    file=sys.stderr,
                )
    med = {key: statistics.median(v) for key, v in times.items()}
    base = med[("alone", first)]
    axis = "dropout" if args.compare == "dropout" else "precision"
    lines = [
        f"Model and data of `minilm_sst2_certify` (MiniLM-L6, SST-2, batch 16, dropout 0.1, "
        f"{torch.get_num_threads()} threads); {args.rounds} interleaved rounds of {args.steps} steps, medians. "
        f"Alone: the probe (r=32) as the sequential bench trains it; fused: {len(specs)} jobs "
        f"({len(SEEDS)} seeds × r = {', '.join(map(str, FUSED_RANKS))}) as the fused bench trains a group. "
        f"Arms: {'; '.join(f'{a}: {c.__name__}, precision {p}' for a, (c, p) in arms.items())}. "
        f"Command: `python benchmarks/train_profile.py --steps {args.steps} --rounds {args.rounds}"
        f"{'' if args.compare == 'dropout' else ' --compare precision'}`.",
        "",
        f"| training | {axis} | ms per job-step | vs alone, {first} | saves vs {first} | rounds faster |",
        "|---|---|---|---|---|---|",
    ]
    for which in models:
        for arm in arms:
            m = med[(which, arm)]
            ref = times[(which, first)]
            save = "" if arm == first else f"{1 - m / med[(which, first)]:.0%}"
            wins = (
                ""
                if arm == first
                else f"{sum(t < b for t, b in zip(times[(which, arm)], ref, strict=True))}/{args.rounds}"
            )
            lines.append(f"| {which} | {arm} | {m:.1f} | {base / m:.2f}× | {save} | {wins} |")
    for which in models:
        for arm in arms:
            lines += [
                "",
                f"Profile, {which}, {arm} ({args.steps} steps; self CPU time of each op, all threads):",
                "",
            ]
            lines += top_ops(lambda: timed(which, arm, args.steps))  # noqa: B023
    text = "\n".join(lines)
    print(text)
    name = "train_profile" if args.compare == "dropout" else "train_profile_precision"
    print(f"wrote {write_result(name, text)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
