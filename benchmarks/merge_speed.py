"""merge-audit and svd-merge of two 7B-shaped adapters (Llama-2-7B widths, r=64, fp16; few
decoder layers so the run stays short) against the dense equivalent on sampled layers, against
upstream's `merge-audit`, and the peak memory of `audit --base-model` streaming a synthetic
7B-shaped base.

    python benchmarks/merge_speed.py [--layers 4] [--base-layers 1,2] [--upstream /tmp/upvenv/bin/gradience]

Dense merge-audit of one layer: form ΔW_A and ΔW_B (fp32 GEMMs), a thin SVD of each (the column
and row spaces), the principal-angle cosines and the Frobenius inner product. Dense svd-merge:
form ΔW_A + ΔW_B, thin SVD, keep k (torch, all cores). Ours: the same numbers from the factors
(Gram cores, r×r eigenproblems, skinny products), timed on one core and, as the commands run
their layers, several layers at once on all cores (per-layer throughput).
The synthetic base holds each decoder layer's seven weight matrices in bf16 (plus nothing else):
Gaussian entries with one planted outlier direction (trained weights have separated top
singular values; the power iteration's step count depends on that gap).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from _adapters import LLAMA7B_MODULES, build_7b_adapter
from _common import write_result
from gradience.audit import open_adapter
from gradience.audit.parallel import default_workers, ordered_map
from gradience.audit.spectra import Workspace, one_blas_thread
from gradience.merge import MergePlan, merge_adapters, merge_audit
from gradience.merge.combine import _merge_layer, _Part
from gradience.merge.geometry import pair_geometry, thin_svd

MEM_PROBE = """
import json, sys
from pathlib import Path
from gradience.audit import audit_adapter
from gradience.audit.base_norms import attach_base_norms
import numpy, safetensors, gradience.audit.core  # imports before the baseline

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024

report = audit_adapter(Path(sys.argv[1]))
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # VmHWM := VmRSS: the audit's own peak drops out
base = status("VmRSS")
attach_base_norms(report, Path(sys.argv[2]), cache_dir=Path(sys.argv[3]))
print(json.dumps({"peak_mb": status("VmHWM") - base, "methods": sorted({la.base_relative.method for la in report.layers})}))
"""


def clock(fn) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def _torch(x: tuple) -> tuple:
    return (torch.from_numpy(x[0]), torch.from_numpy(x[1]), x[2])


def dense_audit_layer(x: tuple, y: tuple) -> None:
    (a1, b1, s1), (a2, b2, s2) = _torch(x), _torch(y)
    d1, d2 = s1 * (b1.float() @ a1.float()), s2 * (b2.float() @ a2.float())
    u1, _, v1 = torch.linalg.svd(d1, full_matrices=False)
    u2, _, v2 = torch.linalg.svd(d2, full_matrices=False)
    r1, r2 = a1.shape[0], a2.shape[0]
    torch.linalg.svdvals(u1[:, :r1].T @ u2[:, :r2])
    torch.linalg.svdvals(v1[:r1] @ v2[:r2].T)
    float((d1 * d2).sum())


def dense_svd_merge_layer(x: tuple, y: tuple, k: int) -> None:
    (a1, b1, s1), (a2, b2, s2) = _torch(x), _torch(y)
    d = 0.5 * s1 * (b1.float() @ a1.float()) + 0.5 * s2 * (b2.float() @ a2.float())
    u, s, vh = torch.linalg.svd(d, full_matrices=False)
    (u[:, :k] * s[:k]).contiguous(), vh[:k].contiguous()


def on_all_cores(fn, n: int = 8) -> tuple[float, float]:
    """Per-layer wall and CPU when `n` copies of the layer run as the commands run their layers:
    on `ordered_map`'s threads (one per core, each with its workspace), BLAS single-threaded in
    each. Best of 3."""

    def run() -> None:
        with one_blas_thread():
            for _ in ordered_map(lambda item, ws: fn(ws), range(n)):
                pass

    wall, cpu = min((clock(run) for _ in range(3)), key=lambda t: t[0])
    return wall / n, cpu / n


def ours_audit_layer(x: tuple, y: tuple) -> None:
    with one_blas_thread():
        pair_geometry(thin_svd(*x), thin_svd(*y))


def ours_svd_merge_layer(x: tuple, y: tuple, k: int, specs: tuple, ws: Workspace | None = None) -> None:
    """What `merge --method svd` does per layer once the factors are read (combine._merge_layer
    itself): float64 casts into the concatenation, Gram cores, spectrum, rank-k factors."""
    parts = [_Part(i, 0.5, spec, f[0], f[1]) for i, (f, spec) in enumerate(zip((x, y), specs, strict=True))]
    with one_blas_thread():
        _merge_layer(MergePlan(method="svd", rank=k), parts, 0, ws)


def build_base(path: Path, n_layers: int) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    tensors = {}
    for i in range(n_layers):
        for mod, (fin, fout) in LLAMA7B_MODULES.items():
            w = torch.randn(fout, fin, generator=gen) * 0.02
            u, v = torch.randn(fout, 1, generator=gen), torch.randn(1, fin, generator=gen)
            w += 0.02 * 3 * (fout**0.5 + fin**0.5) * (u / u.norm()) @ (v / v.norm())
            tensors[f"model.layers.{i}.{mod}.weight"] = w.to(torch.bfloat16)
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    return path


def fmt(t: float) -> str:
    return f"{t * 1000:.2f} ms" if t < 1 else f"{t:.2f} s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--base-layers", default="1,2")
    ap.add_argument(
        "--dense-sample", default="q_proj", help="comma-separated module suffixes to time densely"
    )
    ap.add_argument("--upstream", default="/tmp/upvenv/bin/gradience")
    ap.add_argument("--upstream-timeout", type=int, default=600)
    args = ap.parse_args()
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_p = Path(tmp)
        a = build_7b_adapter(tmp_p / "a", n_layers=args.layers, seed=0)
        b = build_7b_adapter(tmp_p / "b", n_layers=args.layers, seed=1)
        n_mod = args.layers * len(LLAMA7B_MODULES)
        t_audit = clock(lambda: merge_audit(a, b))
        t_merge = clock(lambda: merge_adapters([a, b], tmp_p / "m", MergePlan(method="svd", rank=64)))
        lines += [
            f"Adapters: two of {args.layers} decoder layers × 7 modules ({n_mod} LoRA pairs), hidden 4096, "
            "MLP 11008, r=64, fp16, seeds 0 and 1 (benchmarks/_adapters.py). Wall and CPU seconds.",
            "",
            "| measurement | wall | CPU | ratio |",
            "|---|---|---|---|",
            f"| gradience merge-audit, end to end ({n_mod} layers) | {fmt(t_audit[0])} | {fmt(t_audit[1])} | "
            f"{fmt(t_audit[0] / n_mod)} per layer |",
            f"| gradience merge --method svd --rank 64, end to end (writes OUT) | {fmt(t_merge[0])} | "
            f"{fmt(t_merge[1])} | {fmt(t_merge[0] / n_mod)} per layer |",
        ]
        ad_a, ad_b = open_adapter(a), open_adapter(b)
        suffixes = tuple(args.dense_sample.split(","))
        for la in [la for la in ad_a.layers if la.name.endswith(suffixes)][: len(suffixes)]:
            lb = next(x for x in ad_b.layers if x.name == la.name)
            x, y = (*ad_a.factors(la), la.scale), (*ad_b.factors(lb), lb.scale)
            shape = f"{la.out_features}×{la.in_features}"
            d_a = clock(lambda x=x, y=y: dense_audit_layer(x, y))
            d_m = clock(lambda x=x, y=y: dense_svd_merge_layer(x, y, 64))
            o_a = min((clock(lambda x=x, y=y: ours_audit_layer(x, y)) for _ in range(5)), key=lambda t: t[0])
            ws1 = Workspace()  # one thread's buffers, reused layer after layer as in `merge`
            o_m = min(
                (
                    clock(lambda x=x, y=y, s=(la, lb), ws=ws1: ours_svd_merge_layer(x, y, 64, s, ws))
                    for _ in range(5)
                ),
                key=lambda t: t[0],
            )
            p_a = on_all_cores(lambda ws, x=x, y=y: ours_audit_layer(x, y))
            p_m = on_all_cores(lambda ws, x=x, y=y, s=(la, lb): ours_svd_merge_layer(x, y, 64, s, ws))
            n_cores = default_workers()
            lines += [
                f"| dense merge-audit fp32, {la.name} ({shape}) | {fmt(d_a[0])} | {fmt(d_a[1])} | "
                f"{d_a[0] / o_a[0]:,.0f}× wall (one core), {d_a[0] / p_a[0]:,.0f}× wall ({n_cores} cores), "
                f"{d_a[1] / max(o_a[1], 1e-9):,.0f}× CPU (target ≥ 1000×) |",
                f"|   our merge-audit compute for that layer, one core (Gram cores, r×r SVDs, skinny products; "
                f"I/O excluded) | {fmt(o_a[0])} | {fmt(o_a[1])} | |",
                f"|   the same, per layer with {n_cores} layers at once on {n_cores} cores (as `merge-audit` runs them) | "
                f"{fmt(p_a[0])} | {fmt(p_a[1])} | |",
                f"| dense svd-merge fp32, {la.name} ({shape}, k=64) | {fmt(d_m[0])} | {fmt(d_m[1])} | "
                f"{d_m[0] / o_m[0]:,.0f}× wall (one core), {d_m[0] / p_m[0]:,.0f}× wall ({n_cores} cores), "
                f"{d_m[1] / max(o_m[1], 1e-9):,.0f}× CPU (target ≥ 1000×) |",
                f"|   our svd-merge compute for that layer, one core (float64 factors, concat, Gram cores, spectrum, "
                f"rank-k factors) | {fmt(o_m[0])} | {fmt(o_m[1])} | |",
                f"|   the same, per layer with {n_cores} layers at once on {n_cores} cores (as `merge` runs them) | "
                f"{fmt(p_m[0])} | {fmt(p_m[1])} | |",
            ]
        up = Path(args.upstream)
        if up.exists():
            cmd = [str(up), "merge-audit", "--adapter-a", str(a), "--adapter-b", str(b), "--json"]
            t0 = time.perf_counter()
            try:
                env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # its own package, not ours
                res = subprocess.run(
                    cmd, capture_output=True, text=True, timeout=args.upstream_timeout, check=False, env=env
                )
                t_up = time.perf_counter() - t0
                ok = res.returncode == 0
                note = (
                    "ran"
                    if ok
                    else f"exit {res.returncode}: {(res.stderr.strip().splitlines() or [''])[-1][:120]}"
                )
                ratio = f"{t_up / t_audit[0]:,.1f}× our end-to-end wall" if ok else ""
                lines.append(f"| upstream 0.11 `merge-audit --json` ({note}) | {fmt(t_up)} | | {ratio} |")
            except subprocess.TimeoutExpired:
                lines.append(
                    f"| upstream 0.11 `merge-audit --json` | > {args.upstream_timeout} s (stopped) | | |"
                )
        lines += ["", "Streaming base norms (`audit --base-model`), peak RSS above the post-audit baseline "
                  "(VmHWM after reset), fresh process per base; base = bf16 decoder layers of Llama-2-7B widths "
                  "(7 matrices, 202M weights, 404 MB per layer), adapter = the first adapter above restricted "
                  "to those layers.", "", "| base layers | base size | peak RSS | wall | ‖W‖₂ by |", "|---|---|---|---|---|"]  # fmt: skip
        for n in [int(x) for x in args.base_layers.split(",")]:
            base = build_base(tmp_p / f"base{n}", n)
            sub = build_7b_adapter(tmp_p / f"sub{n}", n_layers=n, seed=0)
            size = (base / "model.safetensors").stat().st_size / 2**20
            t0 = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", MEM_PROBE, str(sub), str(base), str(tmp_p / f"cache{n}")],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            wall = time.perf_counter() - t0
            probe = json.loads(out.stdout)
            lines.append(
                f"| {n} | {size:,.0f} MB | {probe['peak_mb']:.1f} MB | {wall:.1f} s | {', '.join(probe['methods'])} |"
            )
            shutil.rmtree(base)
    lines += ["", "Command: `python benchmarks/merge_speed.py " + " ".join(sys.argv[1:]) + "`."]
    path = write_result("merge_speed", "\n".join(lines))
    print(path.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
