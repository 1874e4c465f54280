"""Compression speed and memory on a 7B-shaped adapter (32 layers × q,k,v,o,gate,up,down; r=64; fp16),
compressed to half its LoRA parameters (`budget_ratio=0.5`).

    python benchmarks/compress_speed.py [--layers 32] [--dense-sample 2] [--repeats 5]

Measured in the same run: our audit of the same adapter (compress = audit pass + truncation pass
+ streamed write, so the target is ≤ 3× the audit); a dense-SVD truncation (form B·A in float32,
torch.linalg.svd, keep the same k, build U_k·Σ_k and V_kᵀ) on sampled layers, per layer, against
our per-layer compute and end-to-end time (target ≥ 1000×); peak RSS above the after-import baseline, in a
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
from collections.abc import Callable
from pathlib import Path

import torch

from _adapters import build_7b_adapter
from _common import machine, write_result
from gradience.audit import audit_adapter, open_adapter
from gradience.audit.spectra import gram_cores, spectrum_from_grams
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


def clock(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds of one call. CPU time (all threads of this process) is reported beside
    wall time because the benchmark machine is shared: other jobs stretch wall time, not CPU time."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def median_clock(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    runs = [clock(fn) for _ in range(repeats)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def compress_once(src: Path, dst: Path) -> None:
    shutil.rmtree(dst, ignore_errors=True)
    compress_adapter(src, dst, PLAN)


def dense_truncation(a: torch.Tensor, b: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What a tool without the factored path does: form ΔW, full thin SVD, keep k."""
    u, s, vh = torch.linalg.svd(b.float() @ a.float(), full_matrices=False)
    return vh[:k].contiguous(), (u[:, :k] * s[:k]).contiguous()


def factored_layer(a: torch.Tensor, b: torch.Tensor, k: int, scale: float) -> None:
    """All our per-layer compute for one layer, I/O excluded: both float64 casts, the r×r Gram
    cores, the spectrum (pass 1) and the rank-k factors from the cores (pass 2)."""
    a, b = a.numpy(), b.numpy()  # our path is numpy (the CLI imports no torch)
    cores = gram_cores(a, b)
    abs(scale) * spectrum_from_grams(cores.ga, cores.gb)
    truncate_factors(a, b, k, (cores.ga, cores.gb))


def sampled_layers(path: Path, ranks: dict[str, int], n: int) -> list[dict[str, float | str]]:
    """Per sampled layer (attention and MLP): dense-SVD truncation time vs our factored path."""
    adapter = open_adapter(path)
    picks = [la for la in adapter.layers if la.name.endswith(("q_proj", "down_proj"))][:n]
    rows = []
    for la in picks:
        a, b = (torch.from_numpy(t.copy()) for t in adapter.factors(la))  # numpy views → tensors
        k = ranks[la.name]
        dense = clock(lambda a=a, b=b, k=k: dense_truncation(a, b, k))
        ours = median_clock(lambda a=a, b=b, k=k, s=la.scale: factored_layer(a, b, k, s), 5)
        shape = f"{la.out_features}×{la.in_features}"
        rows.append({"layer": la.name, "shape": shape, "k": k, "dense": dense, "ours": ours})
    return rows


def peak_memory(src: Path, dst: Path) -> float:
    shutil.rmtree(dst, ignore_errors=True)
    out = subprocess.run(
        [sys.executable, "-c", MEM_PROBE, str(src), str(dst)], capture_output=True, text=True, check=True
    )
    shutil.rmtree(dst, ignore_errors=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--dense-sample", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        sizes = sorted({8, args.layers})
        paths = {n: build_7b_adapter(tmp_path / f"l{n}", n_layers=n) for n in sizes}
        big, out = paths[args.layers], tmp_path / "out"
        n_pairs = len(open_adapter(big).layers)
        size_mb = (big / "adapter_model.safetensors").stat().st_size / 2**20
        log(f"built adapters {sizes}")
        audit_adapter(big)  # warm the page cache and the lazy imports
        t_audit, t_comp = [], []
        for _ in range(args.repeats):  # interleaved, so machine noise hits both alike
            t_audit.append(clock(lambda: audit_adapter(big)))
            t_comp.append(clock(lambda: compress_once(big, out)))
        audit_s = tuple(statistics.median(x[i] for x in t_audit) for i in (0, 1))
        comp_s = tuple(statistics.median(x[i] for x in t_comp) for i in (0, 1))
        log(f"audit {t_audit}, compress {t_comp}")
        report = json.loads((out / "compression_report.json").read_text())
        out_mb = (out / "adapter_model.safetensors").stat().st_size / 2**20
        ranks = {la["name"]: la["new_rank"] for la in report["layers"]}
        mem = {n: peak_memory(p, tmp_path / f"mem{n}") for n, p in paths.items()}
        log(f"memory {mem}")
        dense = sampled_layers(big, ranks, args.dense_sample)
        log(f"dense {dense}")

    t = report["totals"]
    per_layer = (comp_s[0] / n_pairs, comp_s[1] / n_pairs)

    def both(x: tuple[float, float], unit: str = "s", f: float = 1.0) -> tuple[str, str]:
        return f"{f * x[0]:.2f} {unit}", f"{f * x[1]:.2f} {unit}"

    def ratio(x: tuple[float, float], y: tuple[float, float]) -> str:
        return f"{x[0] / y[0]:,.2f}× wall, {x[1] / y[1]:,.2f}× CPU"

    rows = [
        ("gradience audit (full report)", *both(audit_s), "1.00×"),
        (
            "gradience compress, budget_ratio 0.5 (end to end, writes OUT)",
            *both(comp_s),
            f"{ratio(comp_s, audit_s)} the audit (target ≤ 3×)",
        ),
    ]
    for d in dense:
        rows.append(
            (
                f"dense SVD truncation fp32, {d['layer']} ({d['shape']}, k={d['k']})",
                *both(d["dense"]),
                f"{ratio(d['dense'], d['ours'])} our compute for that layer (target ≥ 1000×)",
            )
        )
        rows.append(
            (
                "  our compute for that layer (casts, Gram cores, spectrum, rank-k factors; I/O excluded)",
                *both(d["ours"], "ms", 1e3),
                "",
            )
        )
    rows.append(
        (
            "our end-to-end time per layer (compress time / layers: I/O, both passes, the write)",
            *both(per_layer, "ms", 1e3),
            "dense/ours on the sampled layers: "
            + "; ".join(f"{ratio(d['dense'], per_layer)}" for d in dense),
        )
    )
    small = mem[min(mem)]["peak_mb"]
    for n, m in mem.items():
        rows.append(
            (
                f"compress peak RSS above after-import baseline, {n} layers ({m['how']})",
                f"{m['peak_mb']:.1f} MB",
                "",
                f"{m['peak_mb'] / small:.2f}× the {min(mem)}-layer peak" if small > 0 else "",
            )
        )
    table = "| measurement | wall | CPU | ratio |\n|---|---|---|---|\n" + "\n".join(
        f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows
    )
    body = (
        f"Adapter: {args.layers} layers × 7 modules ({n_pairs} LoRA pairs), hidden 4096, MLP 11008, r=64, fp16, "
        f"{size_mb:.0f} MB → {out_mb:.0f} MB. LoRA params {t['lora_params_before']:,} → "
        f"{t['lora_params_after']:,} ({100 * t['lora_reduction']:.1f}% reduction), {t['n_truncated']} of "
        f"{t['n_layers']} layers truncated, retained energy {100 * t['retained_energy']:.2f}% (worst layer "
        f"{100 * t['min_layer_retained_energy']:.2f}%). Timings: medians of {args.repeats} interleaved repeats, "
        "page cache warm; the dense baseline runs once per sampled layer. The machine is shared with other "
        "jobs: wall times are stretched by them, CPU times (all threads of the process) much less. Command: "
        "`python benchmarks/compress_speed.py`.\n\n" + table
    )
    print(f"Machine: {machine()}\n\n{body}")
    print(f"\nwrote {write_result('compress_speed', body)}")


if __name__ == "__main__":
    main()
