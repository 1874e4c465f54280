"""Compression speed and memory on a 7B-shaped adapter (32 layers × q,k,v,o,gate,up,down; r=64; fp16),
compressed to half its LoRA parameters (`budget_ratio=0.5`).

    python benchmarks/compress_speed.py [--layers 32] [--dense-sample 2] [--repeats 3]

Measured in the same run: our audit of the same adapter (compress = audit pass + truncation pass
+ streamed write, so the target is ≤ 3× the audit); a dense-SVD truncation (form B·A in float32,
torch.linalg.svd, keep the same k, build U_k·Σ_k and V_kᵀ) on sampled layers, per layer, against
our amortised per-layer time (target ≥ 1000×); peak RSS above the after-import baseline, in a
fresh subprocess per adapter size (so memory does not grow with the adapter).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from _adapters import build_7b_adapter
from _common import machine, timed, write_result
from gradience.audit import audit_adapter, open_adapter
from gradience.compress import CompressionPlan, compress_adapter, truncate_factors

PLAN = CompressionPlan(budget_ratio=0.5)

MEM_PROBE = """
import json, resource, sys
from pathlib import Path
from gradience.compress import CompressionPlan, compress_adapter
import gradience.compress.core, gradience.audit.core, safetensors  # all imports before the baseline

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB -> MB

try:  # reset the kernel's peak-RSS mark (VmHWM) to the current RSS, so imports' transients drop out
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    base, how = status("VmRSS"), "VmHWM after reset"
except OSError:  # no /proc reset: ru_maxrss, which still holds the import peak (a lower bound)
    base, how = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "ru_maxrss"
compress_adapter(Path(sys.argv[1]), Path(sys.argv[2]), CompressionPlan(budget_ratio=0.5))
peak = status("VmHWM") if how.startswith("VmHWM") else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"peak_mb": peak - base, "how": how}))
"""


def compress_once(src: Path, dst: Path) -> None:
    shutil.rmtree(dst, ignore_errors=True)
    compress_adapter(src, dst, PLAN)


def dense_truncation(a: torch.Tensor, b: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What a tool without the factored path does: form ΔW, full thin SVD, keep k."""
    u, s, vh = torch.linalg.svd(b.float() @ a.float(), full_matrices=False)
    return vh[:k].contiguous(), (u[:, :k] * s[:k]).contiguous()


def sampled_layers(path: Path, ranks: dict[str, int], n: int) -> list[dict[str, float | str]]:
    """Per sampled layer (attention and MLP): dense-SVD truncation time vs our factored truncation."""
    adapter = open_adapter(path)
    picks = [la for la in adapter.layers if la.name.endswith(("q_proj", "down_proj"))][:n]
    rows = []
    for la in picks:
        a, b = adapter.factors(la)
        k = ranks[la.name]
        t0 = time.perf_counter()
        dense_truncation(a, b, k)
        dense = time.perf_counter() - t0
        ours = timed(lambda a=a, b=b, k=k: truncate_factors(a, b, k), 5)
        rows.append(
            {
                "layer": la.name,
                "shape": f"{la.out_features}×{la.in_features}",
                "k": k,
                "dense_s": dense,
                "ours_s": ours,
            }
        )
    return rows


def peak_memory(src: Path, dst: Path) -> float:
    shutil.rmtree(dst, ignore_errors=True)
    out = subprocess.run(
        [sys.executable, "-c", MEM_PROBE, str(src), str(dst)], capture_output=True, text=True, check=True
    )
    shutil.rmtree(dst, ignore_errors=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--dense-sample", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        sizes = sorted({8, args.layers})
        paths = {n: build_7b_adapter(tmp_path / f"l{n}", n_layers=n) for n in sizes}
        big, out = paths[args.layers], tmp_path / "out"
        n_pairs = len(open_adapter(big).layers)
        size_mb = (big / "adapter_model.safetensors").stat().st_size / 2**20
        audit_adapter(big)  # warm the page cache and the lazy imports
        t_audit, t_comp = [], []
        for _ in range(args.repeats):  # interleaved, so machine noise hits both alike
            t_audit.append(timed(lambda: audit_adapter(big), 1))
            t_comp.append(timed(lambda: compress_once(big, out), 1))
        audit_s, comp_s = statistics.median(t_audit), statistics.median(t_comp)
        report = json.loads((out / "compression_report.json").read_text())
        out_mb = (out / "adapter_model.safetensors").stat().st_size / 2**20
        ranks = {la["name"]: la["new_rank"] for la in report["layers"]}
        dense = sampled_layers(big, ranks, args.dense_sample)
        mem = {n: peak_memory(p, tmp_path / f"mem{n}") for n, p in paths.items()}

    t = report["totals"]
    per_layer = comp_s / n_pairs
    rows = [
        ("gradience audit (full report)", f"{audit_s:.2f} s", "1.00×"),
        (
            "gradience compress, budget_ratio 0.5 (end to end, writes OUT)",
            f"{comp_s:.2f} s",
            f"{comp_s / audit_s:.2f}× audit (target ≤ 3×)",
        ),
    ]
    for d in dense:
        rows.append(
            (
                f"dense SVD truncation fp32, {d['layer']} ({d['shape']}, k={d['k']})",
                f"{d['dense_s']:.2f} s",
                f"{d['dense_s'] / per_layer:,.0f}× our end-to-end per-layer {1e3 * per_layer:.1f} ms (target ≥ 1000×); "
                f"{d['dense_s'] / d['ours_s']:,.0f}× our factored truncation alone ({1e3 * d['ours_s']:.1f} ms)",
            )
        )
    rows += [
        (
            f"compress peak RSS above after-import baseline, {n} layers",
            f"{mb:.1f} MB",
            f"{mb / mem[min(mem)]:.2f}× the {min(mem)}-layer peak",
        )
        for n, mb in mem.items()
    ]
    table = "| measurement | value | ratio |\n|---|---|---|\n" + "\n".join(
        f"| {a} | {b} | {c} |" for a, b, c in rows
    )
    body = (
        f"Adapter: {args.layers} layers × 7 modules ({n_pairs} LoRA pairs), hidden 4096, MLP 11008, r=64, fp16, "
        f"{size_mb:.0f} MB → {out_mb:.0f} MB. LoRA params {t['lora_params_before']:,} → {t['lora_params_after']:,} "
        f"({100 * t['lora_reduction']:.1f}% reduction), {t['n_truncated']} of {t['n_layers']} layers truncated, "
        f"retained energy {100 * t['retained_energy']:.2f}% (worst layer {100 * t['min_layer_retained_energy']:.2f}%). "
        f"Timings: medians of {args.repeats} interleaved repeats, page cache warm; the dense baseline runs once per "
        "sampled layer.\n\n" + table
    )
    print(f"Machine: {machine()}\n\n{body}")
    print(f"\nwrote {write_result('compress_speed', body)}")


if __name__ == "__main__":
    main()
