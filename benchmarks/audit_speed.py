"""Audit speed and memory on a 7B-shaped adapter (32 layers × q,k,v,o,gate,up,down; r=64; fp16).

    python benchmarks/audit_speed.py [--layers 32] [--dense-sample 2]

Baselines measured in the same run: reading every tensor; the *floor loop* (read each A/B pair,
cast to float64, form the two r×r Gram products — the least work any exact factored audit does);
dense `torch.linalg.svdvals(B @ A)` on a sample of layers. Memory: peak RSS above the
after-import baseline, in a fresh subprocess per adapter size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from _adapters import build_7b_adapter
from _common import machine, write_result
from gradience.audit import audit_adapter, open_adapter
from gradience.audit.spectra import Workspace

MEM_PROBE = """
import json, sys
from pathlib import Path
from gradience.audit import audit_adapter
import gradience.audit.core, gradience.audit.render  # everything the audit imports, before the baseline

def status(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024

Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
base = status("VmRSS")
audit_adapter(sys.argv[1])
print(json.dumps({"peak_mb": status("VmHWM") - base}))
"""


def wall_and_cpu(fn) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds (robust to other processes on the machine)."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def read_all(path: Path) -> None:
    adapter = open_adapter(path)
    for _spec, a, b in adapter.iter_factors():
        a.sum(), b.sum()  # touch every element


def floor_loop(path: Path) -> None:
    """The least work an exact factored audit does, with the same buffer reuse as ours."""
    adapter, ws = open_adapter(path), Workspace()
    for _spec, a, b in adapter.iter_factors(reuse_buffers=True):
        a64, b64 = ws.f64(a, b)
        _ = a64 @ a64.T, b64.T @ b64


def dense_per_layer(path: Path, n: int) -> float:
    """Seconds per layer of dense svdvals(B @ A) in float32, on n layers (attention and MLP)."""
    adapter = open_adapter(path)
    picks = [la for la in adapter.layers if la.name.endswith(("q_proj", "down_proj"))][:n]
    times = []
    for la in picks:
        a, b = (torch.from_numpy(t.astype("float32")) for t in adapter.factors(la))
        t0 = time.perf_counter()
        torch.linalg.svdvals(b @ a)
        times.append(time.perf_counter() - t0)
    return sum(times) / len(times)


def peak_memory(path: Path) -> float:
    out = subprocess.run(
        [sys.executable, "-c", MEM_PROBE, str(path)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--dense-sample", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sizes = sorted({8, 16, args.layers})
        paths = {n: build_7b_adapter(Path(tmp) / f"l{n}", n_layers=n) for n in sizes}
        big = paths[args.layers]
        n_pairs = len(open_adapter(big).layers)
        size_mb = (big / "adapter_model.safetensors").stat().st_size / 2**20
        read_all(big)  # warm the page cache so every variant reads from memory
        # interleave the three timings so machine noise hits them alike
        runs: dict[str, list[tuple[float, float]]] = {"read": [], "floor": [], "audit": []}
        for _ in range(args.repeats):
            runs["read"].append(wall_and_cpu(lambda: read_all(big)))
            runs["floor"].append(wall_and_cpu(lambda: floor_loop(big)))
            runs["audit"].append(wall_and_cpu(lambda: audit_adapter(big)))
        med = {
            k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
            for k, v in runs.items()
        }
        (read_s, read_c), (floor_s, floor_c), (audit_s, audit_c) = med["read"], med["floor"], med["audit"]
        dense_s = dense_per_layer(big, args.dense_sample)
        mem = {n: peak_memory(p) for n, p in paths.items()}

    per_layer_audit = audit_s / n_pairs
    rows = [
        ("read + touch all tensors", f"{read_s:.2f} s wall / {read_c:.2f} s CPU", ""),
        (
            "floor loop (read, cast f64, two r×r Grams)",
            f"{floor_s:.2f} s wall / {floor_c:.2f} s CPU",
            "1.00×",
        ),
        (
            "gradience audit (full report)",
            f"{audit_s:.2f} s wall / {audit_c:.2f} s CPU",
            f"{audit_s / floor_s:.2f}× floor wall, {audit_c / floor_c:.2f}× CPU (target ≤ 1.3×)",
        ),
        (
            f"dense svdvals(B@A) fp32, sampled {args.dense_sample} layers",
            f"{dense_s:.2f} s/layer",
            f"audit is {dense_s / per_layer_audit:,.0f}× faster per layer (target ≥ 1000×)",
        ),
    ]
    rows += [
        (f"audit peak RSS above baseline, {n} layers", f"{mb:.1f} MB", f"{mb / mem[8]:.2f}× the 8-layer peak")
        for n, mb in mem.items()
    ]
    table = "| measurement | value | ratio |\n|---|---|---|\n" + "\n".join(
        f"| {a} | {b} | {c} |" for a, b, c in rows
    )
    body = (
        f"Adapter: {args.layers} layers × 7 modules ({n_pairs} LoRA pairs), hidden 4096, MLP 11008, r=64, "
        f"fp16, {size_mb:.0f} MB. Timings are medians of {args.repeats} interleaved repeats, page cache warm; CPU time is this process's user+system time, less sensitive to other load on the machine.\n\n"
        + table
    )
    print(f"Machine: {machine()}\n\n{body}")
    print(f"\nwrote {write_result('audit_speed', body)}")


if __name__ == "__main__":
    main()
