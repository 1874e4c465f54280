"""train_profile: where a bench training step's time goes, and what BitDropout saves.

    python benchmarks/train_profile.py [--steps 8] [--rounds 3]

The certification bench's model and data (MiniLM-L6, its SST-2 training items, batch 16, LoRA on
query/key/value/attention.output.dense, dropout 0.1, fp32, all threads): one job trained alone as
the sequential bench trains it (the probe, r=32) and one fused group as the fused bench trains
the retrained variants (12 jobs: 3 seeds × r = 4, 8, 16, 32). Each with torch's dropout and with
``BitDropout`` (what the bench now runs), in interleaved rounds; medians of ms per job-step.
Then torch.profiler's self-CPU time per op for each of the four, top ops: what fusing leaves to
gain is what does not shrink when K jobs share one pass over the frozen base.
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
    cfg: Any, ctx: Any, which: str, model: Any, names: list[str], specs: list[Any], steps: int
) -> float:
    """ms per job-step of ``steps`` steps (a fused step trains every job once)."""
    from gradience.bench import fused as F
    from gradience.bench import training as T

    tr, data = cfg.train, ctx.data
    kw = dict(task=ctx.task, steps=steps, batch_size=tr.per_device_train_batch_size, lr=tr.lr,
              weight_decay=tr.weight_decay, warmup_ratio=tr.warmup_ratio, pad_token_id=data.pad_token_id,
              device=ctx.device, label=which)  # fmt: skip
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
    args = ap.parse_args()
    from gradience.bench import training as T
    from gradience.bench.dropout import BitDropout, set_dropout

    T.set_progress_factory(_silent)
    cfg, ctx, (alone, fused), names, specs = setup()
    models = {"alone": alone, "fused": fused}
    kinds = {"torch dropout": torch.nn.Dropout, "BitDropout": BitDropout}
    times: dict[tuple[str, str], list[float]] = {(w, k): [] for w in models for k in kinds}
    for which, model in models.items():  # warm-up
        step_ms(cfg, ctx, which, model, names, specs, 2)
    for r in range(args.rounds):
        for which, model in models.items():
            for kind, cls in kinds.items():
                set_dropout(model, cls)
                times[(which, kind)].append(step_ms(cfg, ctx, which, model, names, specs, args.steps))
                print(
                    f"round {r + 1}: {which}, {kind}: {times[(which, kind)][-1]:.0f} ms/job-step",
                    file=sys.stderr,
                )
    med = {key: statistics.median(v) for key, v in times.items()}
    base = med[("alone", "torch dropout")]
    lines = [
        f"Model and data of `minilm_sst2_certify` (MiniLM-L6, SST-2, batch 16, dropout 0.1, fp32, "
        f"{torch.get_num_threads()} threads); {args.rounds} interleaved rounds of {args.steps} steps, medians. "
        f"Alone: the probe (r=32) as the sequential bench trains it; fused: {len(specs)} jobs "
        f"({len(SEEDS)} seeds × r = {', '.join(map(str, FUSED_RANKS))}) as the fused bench trains a group. "
        f"Command: `python benchmarks/train_profile.py --steps {args.steps} --rounds {args.rounds}`.",
        "",
        "| training | dropout | ms per job-step | vs alone with torch dropout | BitDropout saves |",
        "|---|---|---|---|---|",
    ]
    for which in models:
        for kind in kinds:
            m = med[(which, kind)]
            save = "" if kind == "torch dropout" else f"{1 - m / med[(which, 'torch dropout')]:.0%}"
            lines.append(f"| {which} | {kind} | {m:.1f} | {base / m:.2f}× | {save} |")
    for which, model in models.items():
        for kind, cls in kinds.items():
            set_dropout(model, cls)
            lines += [
                "",
                f"Profile, {which}, {kind} ({args.steps} steps; self CPU time of each op, all threads):",
                "",
            ]
            lines += top_ops(lambda: step_ms(cfg, ctx, which, model, names, specs, args.steps))  # noqa: B023
    text = "\n".join(lines)
    print(text)
    print(f"wrote {write_result('train_profile', text)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
