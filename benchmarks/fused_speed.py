"""fused_speed: today's sequential bench against the fused bench (``runtime.fuse: auto``).

    python benchmarks/fused_speed.py [--budget smoke|certify] [--seeds 3] [--precision fp32|bf16]

Same machine, data, budgets and seeds, one after the other in this run, each in a fresh
process (peak RSS by GNU time): ``gradience bench --config minilm_sst2_certify`` (3 seeds × 500
steps, 2,000 held-out items, probe r=32 and the retrained variants) with ``runtime.fuse`` off and
auto, or the same config at its smoke budget (``--smoke``). Printed: wall-time ratio, useful
FLOP/s (4 × non-embedding parameters × real training tokens: the frozen base's forward and its
input-gradient backward; padding is not useful work) as a share of this CPU's measured fp32
matmul rate, peak RSS, and both verdict tables, which must agree on every PASS/FAIL. Also
where the time goes: how a batch's cost grows with its rows, and the share of padding.
``--precision bf16`` runs the fused bench with ``runtime.precision: bf16`` (the sequential one
stays fp32) and writes ``fused_speed_<budget>_bf16``: what fusing and bf16 give together, and
whether bf16 keeps the verdicts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from _common import write_result
from bench_speed import matmul_gflops, non_embedding_params

ROOT = Path(__file__).resolve().parents[1]
_BF16 = (
    " (the frozen base's Linear layers in bfloat16, bench.precision; LoRA, heads, gradients and AdamW "
    "in fp32; the FLOP/s share below is of the fp32 peak)"
)
DATA = ROOT.parent / "shared" / "data" / "glue-sst2"


def config(fuse: str, seeds: int, precision: str = "fp32") -> dict[str, Any]:
    cfg = yaml.safe_load((ROOT / "src/gradience/bench/configs/minilm_sst2_certify.yaml").read_text())
    cfg["task"]["data_dir"] = str(DATA)
    cfg["compression"]["seeds"] = cfg["compression"]["seeds"][:seeds]
    cfg["runtime"]["fuse"] = fuse
    cfg["runtime"]["precision"] = precision
    return cfg


def run(fuse: str, budget: str, seeds: int, tmp: Path, precision: str = "fp32") -> dict[str, Any]:
    path = tmp / f"{fuse}.yaml"
    path.write_text(yaml.safe_dump(config(fuse, seeds, precision)))
    out = tmp / f"out_{fuse}"
    cmd = ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "gradience.cli", "bench", "--config", str(path),
           "--output", str(out), "--json", *(["--smoke"] if budget == "smoke" else [])]  # fmt: skip
    print(f"[{fuse}] {' '.join(cmd[3:])}", file=sys.stderr)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if res.returncode not in (0, 1):
        raise SystemExit(f"bench (fuse {fuse}) failed: {res.stderr.strip()[-500:]}")
    rss_mb = int(res.stderr.strip().splitlines()[-1]) / 1024
    report = json.loads(res.stdout)
    tokens, train_s = training(out)
    return {"wall": wall, "rss": rss_mb, "report": report, "tokens": tokens, "train_s": train_s, "out": out}


def training(out: Path) -> tuple[float, float]:
    """(real training tokens, seconds spent training) of a bench folder. A fused group's jobs
    all report the group's wall time: each group is counted once."""
    tokens, walls = 0.0, set()
    for p in out.glob("seed_*/*/result.json"):
        r = json.loads(p.read_text())
        if r.get("train"):
            tokens += r["train"]["train_tokens"]
            walls.add(r["train"]["wall_s"])
    return tokens, float(sum(walls))


def batch_scaling(model_path: str) -> list[str]:
    """ms per row of one training step of the probe's shape at 16, 48 and 96 rows (32 tokens)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    m = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=2)
    m = get_peft_model(m, LoraConfig(task_type="SEQ_CLS", r=32, lora_alpha=64,
                                     target_modules=["query", "key", "value", "attention.output.dense"]))  # fmt: skip
    m.train()
    rows = []
    for b in (16, 48, 96):
        x = torch.randint(1000, 2000, (b, 32))
        times = []
        for _ in range(4):
            t0 = time.perf_counter()
            m(
                input_ids=x, attention_mask=torch.ones_like(x), labels=torch.randint(0, 2, (b,))
            ).loss.backward()
            times.append(time.perf_counter() - t0)
        rows.append(f"| {b} | {1000 * min(times):.0f} ms | {1000 * min(times) / b:.2f} ms |")
    return rows


def padding_share(seeds: int) -> tuple[float, float, float, float]:
    """Mean tokens per row: real, padded to each job's batch (alone), padded in fused chunks, and
    computed in packed fused passes (what BERT-style models run)."""
    from gradience.bench.config import parse_config, resolve_model_path
    from gradience.bench.fused import PASS_TOKENS, plan_chunks, plan_passes
    from gradience.bench.packing import pack_rows
    from gradience.bench.tasks import load_task_data
    from gradience.bench.training import _batches

    cfg = parse_config(config("off", seeds))
    data = load_task_data(resolve_model_path(cfg.model.name), cfg.task, cfg.train.train_samples,
                          cfg.train.eval_samples, smoke=False, selection=False)  # fmt: skip
    width = np.asarray([len(x) for x in data.train.features["input_ids"]])
    bs, steps = cfg.train.per_device_train_batch_size, cfg.train.max_steps
    orders = [_batches(len(width), bs, steps, s) for s in cfg.seeds]
    alone = fused = packed = 0
    for _ in range(steps):
        idx = [next(o) for o in orders]
        alone += sum(int(width[i].max()) * bs for i in idx)
        for chunk in plan_chunks([width[i] for i in idx], bs):
            rows = np.concatenate([idx[j][p] for j, p in chunk])
            fused += int(width[rows].max()) * len(rows)
        cap = max(int(width[i].max()) for i in idx)  # packed: bins of the step's longest row
        units = [pack_rows(i, width, cap) for i in idx]
        for chunk in plan_passes([len(u) for u in units], cap, PASS_TOKENS):
            used = [units[j][p] for j, ps in chunk for p in ps]
            packed += max(int(width[u].sum()) for u in used) * len(used)
    n = steps * bs * len(orders)
    return float(width.mean()), alone / n, fused / n, packed / n


def paired_accuracy(seq: Path, fus: Path) -> list[str]:
    """Fused − sequential accuracy on the same eval items, run by run (every trained run, dropout on)
    and pooled over runs: Newcombe's paired interval, the bench's own formula."""
    from gradience.verdicts.paired import newcombe_paired_ci

    def correct(run: Path) -> np.ndarray:
        ev = json.loads((run / "eval.json").read_text())["splits"]["eval"]
        return np.asarray(ev["preds"]) == np.asarray(ev["labels"])

    def row(name: str, s: np.ndarray, f: np.ndarray) -> str:
        b, c, a = int((s & ~f).sum()), int((f & ~s).sum()), int((s & f).sum())
        lo, hi = newcombe_paired_ci(b, c, len(s), a, confidence=0.95)
        return f"| {name} | {len(s)} | {s.mean():.3f} | {f.mean():.3f} | {100 * (f.mean() - s.mean()):+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] |"

    lines, all_s, all_f = [], [], []
    for res in sorted(seq.glob("seed_*/*/result.json")):
        run = res.parent.relative_to(seq)
        if json.loads(res.read_text())["spec"]["method"] != "train" or not (fus / run / "eval.json").exists():
            continue
        s, f = correct(seq / run), correct(fus / run)
        lines.append(row(str(run), s, f))
        all_s.append(s)
        all_f.append(f)
    if all_s:
        lines.append(row("**all trained runs, pooled**", np.concatenate(all_s), np.concatenate(all_f)))
    head = [
        "| run | items | sequential acc | fused acc | Δ fused − sequential, points [95% CI] |",
        "|---|---|---|---|---|",
    ]
    return head + lines


def verdicts(report: dict[str, Any]) -> dict[str, str]:
    return {n: v["verdict"]["non_inferiority"] for n, v in report["compressed"].items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", choices=["smoke", "certify"], default="smoke")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="the fused bench's runtime.precision (the sequential one stays fp32, today's default)",
    )
    args = ap.parse_args()
    from gradience.bench.config import resolve_model_path

    model_path = resolve_model_path("minilm-l6")
    peak = matmul_gflops()
    flops_token = 4 * non_embedding_params(model_path)
    with tempfile.TemporaryDirectory(prefix="fused-speed-") as tmp:
        seq = run("off", args.budget, args.seeds, Path(tmp))
        fus = run("auto", args.budget, args.seeds, Path(tmp), args.precision)
        paired = paired_accuracy(seq["out"], fus["out"])
    real, alone_w, fused_w, packed_w = padding_share(args.seeds)
    va, vf = verdicts(seq["report"]), verdicts(fus["report"])
    agree = all(va[n] == vf.get(n) for n in va)
    flag = "" if args.precision == "fp32" else f" --precision {args.precision}"
    fused_tag = "" if args.precision == "fp32" else f", `precision: {args.precision}`"
    lines = [
        f"Budget: `{args.budget}` of `minilm_sst2_certify` ({args.seeds} seeds), "
        f"sequential fp32, fused {args.precision}{_BF16 if args.precision == 'bf16' else ''}. Command: "
        f"`python benchmarks/fused_speed.py --budget {args.budget} --seeds {args.seeds}{flag}`.",
        f"Matmul peak measured: {peak:,.0f} GFLOP/s (fp32 1024² GEMM, all threads); useful work = "
        f"{flops_token / 1e6:.1f} MFLOP per real training token.",
        "",
        "| bench | wall | ratio | training (share of wall) | training ratio | useful GFLOP/s (share of peak) | peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in (("sequential (`fuse: off`)", seq), (f"fused (`fuse: auto`{fused_tag})", fus)):
        gf = r["tokens"] * flops_token / r["wall"] / 1e9
        lines.append(f"| {name} | {r['wall']:.0f} s | {seq['wall'] / r['wall']:.2f}× | {r['train_s']:.0f} s "
                     f"({r['train_s'] / r['wall']:.0%}) | {seq['train_s'] / max(r['train_s'], 1e-9):.2f}× | "
                     f"{gf:.1f} ({gf / peak:.1%}) | {r['rss']:.0f} MB |")  # fmt: skip
    rest = seq["wall"] - seq["train_s"]
    lines += ["", f"Ceiling: the sequential bench spends {rest:.0f} s outside training (evaluation, truncation, "
              f"model loading); fusing only speeds training, so even free training would give "
              f"{seq['wall'] / max(rest, 1e-9):.2f}× end to end."]  # fmt: skip
    lines += [
        "",
        f"Verdicts agree on every variant: **{agree}**",
        "",
        "| variant | sequential | fused |",
        "|---|---|---|",
    ]
    lines += [f"| {n} | {va[n]} | {vf.get(n)} |" for n in va]
    lines += [
        "",
        "Accuracy of every trained run (dropout on), fused vs sequential, on the same eval items "
        "(non-inferior within 1 point when the pooled interval's lower end is above −1):",
        "",
        *paired,
    ]
    lines += ["", "Where the time goes: one training step of the probe's shape (r=32, 32 tokens per row), "
              "by batch rows — fusing K jobs only pays what bigger batches save:", "",
              "| rows | step | per row |", "|---|---|---|", *batch_scaling(model_path), "",
              f"Tokens per training row: {real:.1f} real; {alone_w:.1f} computed when each job pads its batch "
              f"to its longest row; {fused_w:.1f} in length-sorted fused chunks, {packed_w:.1f} packed in bins of the step's "
              "longest row, whole jobs per pass (what the fused bench runs for this BERT model)."]  # fmt: skip
    text = "\n".join(lines)
    print(text)
    path = write_result(
        f"fused_speed_{args.budget}" + ("" if args.precision == "fp32" else f"_{args.precision}"), text
    )
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
