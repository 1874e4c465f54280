"""certify_speed: `gradience certify` against evaluating the same candidates the ordinary way.

    python benchmarks/certify_speed.py [--steps 400] [--threads 1]

Trains the MiniLM-L6 SST-2 probe adapter with the LoRA settings of the built-in
``minilm_sst2_certify`` config (r=32, α=64, dropout 0.1 on query/key/value/attention.output.dense,
lr 5e-4, warmup 0.1, batch 16, 2,000 training items, seed 42; fewer steps than its 500 to keep
the run short), writes the 2,000 held-out training items (disjoint from the training items) as
a TSV, and times, in one process on the same tokenised items:

- certify: one call of ``certify()`` with the default 5-step budget ladder (everything: reading
  and tokenising, loading, the original, the candidates, compress of the certified one, reports);
- (a) the ordinary way, for the original and every candidate certify evaluated: the candidate
  written by ``compress_adapter``, the base loaded, ``PeftModel.from_pretrained`` (unmerged LoRA),
  every item scored; its predictions are compared with certify's;
- (b) one ordinary evaluation pass of the original (load, PEFT wrap, score every item).

"Ordinary" is measured two ways, both with the items tokenised once beforehand (not timed):
HF's default — batches of 64 in file order, each padded to its longest item (``tokenizer.pad``,
what the Trainer's DataCollatorWithPadding does) — and gradience's own ``task.evaluate``
(length-sorted batches), which isolates what swapping, one load and early stopping buy.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from _common import write_result

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "glue-sst2"
CONFIG = ROOT / "src/gradience/bench/configs/minilm_sst2_certify.yaml"


def train_probe(cfg: dict[str, Any], steps: int, out: Path) -> tuple[Any, float]:
    import torch
    from peft import get_peft_model

    from gradience.bench.config import TaskConfig, resolve_model_path
    from gradience.bench.tasks import load_task_data
    from gradience.bench.training import lora_config, seed_everything, train_lora

    tr, lo = cfg["train"], cfg["lora"]
    model_path = resolve_model_path(cfg["model"]["name"])
    task_cfg = TaskConfig(**{**cfg["task"], "data_dir": str(DATA)})
    data = load_task_data(
        model_path, task_cfg, tr["train_samples"], tr["eval_samples"], smoke=False, selection=False
    )
    seed_everything(tr["seed"])
    cpu = torch.device("cpu")
    model = get_peft_model(data.task.load_model(model_path, data, cpu),
                           lora_config(lo["probe_r"], lo["alpha"], lo["target_modules"], lo["dropout"], lo["use_rslora"]))  # fmt: skip
    t0 = time.perf_counter()
    train_lora(model, data.train, task=data.task, steps=steps, batch_size=tr["per_device_train_batch_size"],
               lr=float(tr["lr"]), warmup_ratio=tr["warmup_ratio"], weight_decay=tr["weight_decay"], seed=tr["seed"],
               pad_token_id=data.pad_token_id, device=cpu, label="train probe")  # fmt: skip
    model.save_pretrained(str(out))
    return data, time.perf_counter() - t0


def write_heldout(data: Any, path: Path) -> None:
    with open(DATA / "train.tsv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("sentence\tlabel\n")
        for i in data.eval.rows:
            fh.write(f"{rows[i]['sentence']}\t{rows[i]['label']}\n")


def ordinary(items: Any, model_path: str, adapter: Path, batch_size: int) -> tuple[list[int], float]:
    """gradience's own way per adapter: load, PEFT wrap, ``task.evaluate`` (length-sorted batches)."""
    import torch
    from peft import PeftModel

    t0 = time.perf_counter()
    cpu = torch.device("cpu")
    model = PeftModel.from_pretrained(items.task.load_model(model_path, items.data, cpu), str(adapter))
    ev = items.task.evaluate(
        model, items.split, batch_size, items.data.pad_token_id, cpu, f"ordinary {adapter.name}"
    )
    return list(ev.preds or []), time.perf_counter() - t0


def hf_default(
    enc: Any, tok: Any, model_path: str, adapter: Path, batch_size: int
) -> tuple[list[int], float]:
    """HF's default per adapter: load, PEFT wrap, batches in file order padded to their longest item."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    t0 = time.perf_counter()
    base = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=2)
    model = PeftModel.from_pretrained(base, str(adapter)).eval()
    preds: list[int] = []
    n = len(enc["input_ids"])
    with torch.inference_mode():
        for i in range(0, n, batch_size):
            batch = tok.pad({k: v[i : i + batch_size] for k, v in enc.items()}, return_tensors="pt")
            preds += model(**batch).logits.argmax(-1).tolist()
    return preds, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=400, help="training steps of the probe (config: 500)")
    ap.add_argument(
        "--eval-items", type=int, default=2000, help="held-out items (2,000; fewer only to try the script)"
    )
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (the 2 cores are shared: 1 is steadier)"
    )
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from gradience.bench.certify import CertifyOptions, certify
    from gradience.bench.certify.items import load_eval_items
    from gradience.bench.config import TaskConfig, resolve_model_path
    from gradience.compress import CompressionPlan, compress_adapter

    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["train"]["eval_samples"] = args.eval_items
    model_path = resolve_model_path(cfg["model"]["name"])
    bs = cfg["train"]["per_device_eval_batch_size"]
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="certify-speed-") as tmp_name:
        tmp = Path(tmp_name)
        print(f"training the probe ({args.steps} steps) …", file=sys.stderr)
        data, train_s = train_probe(cfg, args.steps, tmp / "probe")
        write_heldout(data, tmp / "heldout.tsv")
        items = load_eval_items(model_path, TaskConfig(data=str(tmp / "heldout.tsv")), None)
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        tok = AutoTokenizer.from_pretrained(model_path)
        with open(tmp / "heldout.tsv", encoding="utf-8") as fh:
            texts = [r["sentence"] for r in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)]
        enc = dict(tok(texts, truncation=True, max_length=128))
        print("(b) one ordinary pass of the original, both ways …", file=sys.stderr)
        b_hf_preds, b_hf = hf_default(enc, tok, model_path, tmp / "probe", bs)
        b_g_preds, b_g = ordinary(items, model_path, tmp / "probe", bs)
        print("certify …", file=sys.stderr)
        t0 = time.perf_counter()
        outcome = certify(CertifyOptions(peft_dir=tmp / "probe", data=str(tmp / "heldout.tsv"), out=tmp / "out",
                                         base_model=cfg["model"]["name"], batch_size=bs))  # fmt: skip
        certify_s = time.perf_counter() - t0
        rep = outcome.report
        print("(a) the same models the ordinary way, both ways …", file=sys.stderr)
        import json

        def saved(name: str) -> dict[str, Any]:
            return json.loads((tmp / f"out/predictions/{name}.json").read_text())["eval"]

        def differ(mine: dict[str, Any], preds: list[int]) -> int:
            return sum(p != preds[r] for p, r in zip(mine["preds"], mine["rows"], strict=True))

        a_hf = {"original": b_hf}
        a_g = {"original": b_g}
        mism = {"hf": differ(saved("original"), b_hf_preds), "g": differ(saved("original"), b_g_preds)}
        for c in rep.candidates:
            if c.status == "NOT_TESTED":
                continue
            t0 = time.perf_counter()
            compress_adapter(tmp / "probe", tmp / "cands" / c.name, CompressionPlan(**c.plan))
            write_s = time.perf_counter() - t0
            preds_hf, s_hf = hf_default(enc, tok, model_path, tmp / "cands" / c.name, bs)
            preds_g, s_g = ordinary(items, model_path, tmp / "cands" / c.name, bs)
            a_hf[c.name], a_g[c.name] = write_s + s_hf, write_s + s_g
            mism["hf"] += differ(saved(c.name), preds_hf)
            mism["g"] += differ(saved(c.name), preds_g)
        md = (tmp / "out/certify.md").read_text()
    total_min = (time.perf_counter() - t_all) / 60
    cert = next((c for c in rep.candidates if c.name == rep.certified), None)
    table = [
        "| step | LoRA params | rank equiv. | ranks | accuracy | Δ (pts) | 95% CI | items scored | verdict | certify eval | (a) HF default | (a) gradience eval |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| original | {rep.original.lora_params:,} | 32 | 32 | {100 * rep.original.metric_value:.1f}% | | | "
        f"{rep.original.n_items:,} | | {rep.original.eval_s:.1f} s | {b_hf:.1f} s | {b_g:.1f} s |",
    ]  # fmt: skip
    for c in rep.candidates:
        tested = c.status != "NOT_TESTED"
        ci = f"[{100 * c.ci_low:+.1f}, {100 * c.ci_high:+.1f}]" if tested else "—"
        table.append(
            f"| {c.name} | {c.lora_params:,} | {c.rank_equivalent:.1f} | {c.rank_min}–{c.rank_max} | "
            + (f"{100 * c.metric_value:.1f}% | {100 * c.delta:+.1f} | {ci} | {c.n_evaluated:,}" if tested else "— | — | — | —")
            + f" | {c.status} | {c.eval_s:.1f} s | "
            + (f"{a_hf[c.name]:.1f} s | {a_g[c.name]:.1f} s |" if tested else "— | — |")
        )  # fmt: skip
    answer = md.splitlines()[2].strip("*")
    body = "\n".join([
        f"Setup: 2 CPU cores (shared with other jobs), no GPU; torch threads {args.threads}. "
        f"Probe: MiniLM-L6 (`minilm-l6`), LoRA r=32 α=64 dropout 0.1 on query/key/value/attention.output.dense, "
        f"lr 5e-4, warmup 0.1, batch 16, **{args.steps} steps** on 2,000 SST-2 training items, seed 42 "
        f"(trained in {train_s:.0f} s). Eval: the {args.eval_items:,} held-out training items (disjoint from the training items). "
        "Ladder: the default budgets 50/25/12.5/6.25/3.125% of the LoRA parameters; margin 2.5 points; confidence 95%.",
        "",
        f"**Answer (certify.md):** {answer}",
        "",
        f"Certified: **{rep.certified or 'nothing'}**" + (
            f" — {cert.rank_equivalent:.1f} rank-equivalent (ranks {cert.rank_min}–{cert.rank_max}), "
            f"{cert.lora_params:,} of {rep.original.lora_params:,} LoRA parameters (−{100 * cert.lora_reduction:.1f}%)."
            if cert else "."),
        "",
        "| measure | wall | certify vs it |",
        "|---|---|---|",
        f"| certify, whole command (read, tokenise, load once, original + candidates, compress, reports) | "
        f"{certify_s:.1f} s | |",
        f"| (a) the same {len(a_hf)} models, HF default (compress each, load, PEFT wrap, score every item) | "
        f"{sum(a_hf.values()):.1f} s | **{sum(a_hf.values()) / certify_s:.2f}× faster** (target ≥ 3×) |",
        f"| (b) one pass of the original, HF default (load, PEFT wrap, score every item) | {b_hf:.1f} s | "
        f"**{certify_s / b_hf:.2f}×** (b) (target ≤ 3×) |",
        f"| (a) the same {len(a_g)} models with gradience's own length-sorted evaluation | {sum(a_g.values()):.1f} s | "
        f"{sum(a_g.values()) / certify_s:.2f}× faster |",
        f"| (b) one pass of the original with gradience's own evaluation | {b_g:.1f} s | {certify_s / b_g:.2f}× (b) |",
        "",
        f"Certify's own split: {', '.join(f'{k} {v:.1f} s' for k, v in rep.timings.items())}. Predictions that "
        f"differ from certify's (merged weights vs unmerged LoRA, other padding), over all {len(a_hf)} models: "
        f"HF default **{mism['hf']}**, gradience's evaluation **{mism['g']}**.",
        "",
        *table,
        "",
        f"Total benchmark time {total_min:.1f} min. Command: `python benchmarks/certify_speed.py --steps {args.steps} "
        f"--threads {args.threads} --eval-items {args.eval_items}`.",
    ])  # fmt: skip
    print(body)
    print(f"wrote {write_result('certify_speed', body)}", file=sys.stderr)


if __name__ == "__main__":
    main()
