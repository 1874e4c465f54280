"""Whole-process speed and memory of our CLI against upstream Gradience's, as users time them.

    python benchmarks/cli_speed.py --upstream /path/to/venv/bin/gradience [--repeats 5] [--layers 32]

Upstream is its latest release (0.11 here) installed in its own venv: `python -m venv up &&
up/bin/pip install torch gradience`. Each command runs as a fresh process on the 7B-shaped
adapter (32 layers × q,k,v,o,gate,up,down, r=64, fp16), ours and upstream's interleaved so
drift hits both; wall time and each process's peak RSS (GNU time) are medians over repeats.
Pairs: `audit --json` vs upstream's `audit --json`; `compress --rank 32` vs upstream's
`truncate --rank 32` (same dtype as the input); `--help` vs `--help`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _adapters import build_7b_adapter
from _common import machine, write_result

# the console script users type (its launcher is part of what they wait for), else `python -m`
_SCRIPT = Path(sys.executable).with_name("gradience")
OURS = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "gradience"]


def run_once(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one fresh process; raises if it fails. GNU time forks
    the command from its own small process, so the RSS is the command's alone (a child forked
    from this process would count this process's memory from before its exec)."""
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, check=False)  # fmt: skip
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-500:]}")
    return wall, int(proc.stderr.strip().splitlines()[-1]) / 1024


def pair(name: str, ours: list[str], theirs: list[str], repeats: int, before: object = None) -> dict:
    times: dict[str, list[float]] = {"ours": [], "upstream": []}
    rss: dict[str, list[float]] = {"ours": [], "upstream": []}
    for _ in range(repeats):
        for who, cmd in (("ours", ours), ("upstream", theirs)):
            if callable(before):
                before()
            t, m = run_once(cmd)
            times[who].append(t)
            rss[who].append(m)
    med = {k: statistics.median(v) for k, v in times.items()}
    mem = {k: statistics.median(v) for k, v in rss.items()}
    print(
        f"  {name}: ours {med['ours']:.2f} s, upstream {med['upstream']:.2f} s", file=sys.stderr, flush=True
    )
    return {"name": name, "t": med, "rss": mem}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", required=True, help="upstream's `gradience` executable (its own venv)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--layers", type=int, default=32)
    args = ap.parse_args()
    up = [args.upstream]
    up_python = Path(args.upstream).with_name("python")
    probe = "import importlib.metadata as m; print(m.version('gradience'))"
    version = subprocess.run(
        [str(up_python), "-c", probe], capture_output=True, text=True, check=False
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        adapter = build_7b_adapter(Path(tmp) / "adapter", n_layers=args.layers)
        size = sum(p.stat().st_size for p in adapter.iterdir()) / 2**20
        out_ours, out_up = Path(tmp) / "ours", Path(tmp) / "up"

        def clean() -> None:
            shutil.rmtree(out_ours, ignore_errors=True)
            shutil.rmtree(out_up, ignore_errors=True)

        rows = [
            pair("`--help`", [*OURS, "--help"], [*up, "--help"], args.repeats),
            pair(
                "`audit --json`",
                [*OURS, "audit", "--peft-dir", str(adapter), "--json"],
                [*up, "audit", "--peft-dir", str(adapter), "--json"],
                args.repeats,
            ),  # fmt: skip
            pair(
                "`compress --rank 32` vs `truncate --rank 32`",
                [*OURS, "compress", "--peft-dir", str(adapter), "--out", str(out_ours), "--rank", "32"],
                [
                    *up,
                    "truncate",
                    "--peft-dir",
                    str(adapter),
                    "--out-dir",
                    str(out_up),
                    "--rank",
                    "32",
                    "--dtype",
                    "fp16",
                ],
                args.repeats,
                before=clean,
            ),  # fmt: skip
        ]
    lines = [
        f"# CLI speed against upstream — {time.strftime('%Y-%m-%d')}",
        "",
        f"Machine: {machine()}. Upstream: gradience {version or '?'} ({args.upstream}). Adapter: 7B-shaped, {args.layers} layers × 7 "
        f"modules, r=64, fp16, {size:.0f} MB. {args.repeats} interleaved repeats, medians; peak RSS of each process "
        "(GNU time). Command: `python benchmarks/cli_speed.py --upstream …`.",
        "",
        "| command | ours (s) | upstream (s) | time ratio (ours / upstream) | ours RSS (MB) | upstream RSS (MB) | RSS ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t, m = r["t"], r["rss"]
        lines.append(f"| {r['name']} | {t['ours']:.2f} | {t['upstream']:.2f} | **{t['ours'] / t['upstream']:.2f}×** | "
                     f"{m['ours']:.0f} | {m['upstream']:.0f} | {m['ours'] / m['upstream']:.2f}× |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)
    print(f"wrote {write_result('cli_speed', text)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
