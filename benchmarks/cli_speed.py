"""Whole-process speed and memory of our CLI against upstream Gradience's, as users time them.

    python benchmarks/cli_speed.py [--upstream auto|/path/to/venv/bin/gradience] [--ours venv|here]
        [--repeats 5] [--layers 32] [--before-src /path/to/older/checkout/src]

Upstream is its latest release (0.11 here) installed in its own venv, which the benchmark makes
itself by default (`--upstream auto`: `python -m venv` and `pip install torch==<ours> gradience`
under ~/.cache/gradience-bench/, once; if that fails it says so and still lists ours). Ours is
this checkout installed the same way into a venv of its own (`--ours venv`, the default: made
once, the checkout reinstalled as a built, byte-compiled wheel every run), so both processes
start in the same kind of environment: neither runs this machine's site-wide `.pth` start-up
hooks. `--ours here` runs this environment with PYTHONPATH at `src/` instead (byte-compiled
first). Each command runs as a fresh process on the 7B-shaped adapter (32 layers × q,k,v,o,
gate,up,down, r=64, fp16), ours and upstream's interleaved so drift hits both; wall time, CPU
time (user + system, all threads) and peak RSS (GNU time) are medians over repeats. Pairs:
`audit --json` vs upstream's `audit --json`; `compress --rank 32 --json` vs upstream's
`truncate --rank 32 --dtype fp16 --json` (the input's dtype); `--help`. Upstream runs with
PYTHONPATH removed, so neither can pick up the other's package. Also written: `python -X importtime`
of `audit --json` per top-level package (ours, upstream, and an older checkout given with
--before-src), and a profile of `compress --rank 32` on one worker thread (so every call is
attributed; the real command runs layers on several threads). If upstream cannot be run, the
table still lists ours.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from _adapters import build_7b_adapter
from _common import machine, write_result

SRC = Path(__file__).resolve().parents[1] / "src"
# the console script users type (its launcher is part of what they wait for), else `python -m`
_SCRIPT = Path(sys.executable).with_name("gradience")
OURS = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "gradience"]
OURS_ENV = {**os.environ, "PYTHONPATH": str(SRC)}
UP_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
PACKAGES = ("torch", "transformers", "peft", "numpy", "scipy", "pydantic", "typer", "rich", "safetensors")

PROFILE_PROBE = """
import cProfile, pstats, sys
from pathlib import Path
try:
    import gradience.audit.parallel as parallel
    parallel.default_workers = lambda: 1  # one thread: cProfile sees only the thread it runs in
except ImportError:  # an older checkout (--before-src): single-threaded already
    pass
from gradience.compress import CompressionPlan, compress_adapter
prof = cProfile.Profile()
prof.enable()
compress_adapter(Path(sys.argv[1]), Path(sys.argv[2]), CompressionPlan(rank=32))
prof.disable()
stats = pstats.Stats(prof)
total = sum(v[2] for v in stats.stats.values())
rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:14]
print(f"total {total:.3f}")
for (file, line, fn), (cc, nc, tt, ct, _) in rows:
    print(f"{tt:.3f}\\t{nc}\\t{Path(file).name}:{line}({fn})")
"""


def run_once(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MB) of one fresh process; raises if it fails. GNU time forks the
    command from its own small process, so the RSS is the command's alone (a child forked from
    this process would count this process's memory from before its exec)."""
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", *cmd], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=False, env=env)  # fmt: skip
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-500:]}")
    user, system, rss = proc.stderr.strip().splitlines()[-1].split()
    return wall, float(user) + float(system), int(rss) / 1024


def pair(
    name: str,
    ours: list[str],
    theirs: list[str] | None,
    repeats: int,
    before: object = None,
    ours_env: dict[str, str] = OURS_ENV,
) -> dict:
    runs: dict[str, list[tuple[float, float, float]]] = {"ours": [], "upstream": []}
    for _ in range(repeats):
        for who, cmd, env in (("ours", ours, ours_env), ("upstream", theirs, UP_ENV)):
            if cmd is None:
                continue
            if callable(before):
                before()
            runs[who].append(run_once(cmd, env))
    med = {who: tuple(statistics.median(r[i] for r in v) for i in range(3)) for who, v in runs.items() if v}
    up = f", upstream {med['upstream'][0]:.2f} s" if "upstream" in med else ""
    print(f"  {name}: ours {med['ours'][0]:.2f} s{up}", file=sys.stderr, flush=True)
    return {"name": name, "med": med}


def importtime(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Milliseconds of `python -X importtime` per top-level package (self times summed, so the
    packages add up to the total), plus 'total'."""
    proc = subprocess.run(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, check=False
    )
    per: dict[str, float] = defaultdict(float)
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if m:
            per[m[2].split(".")[0]] += int(m[1]) / 1e3
    per["total"] = sum(per.values())
    return dict(per)


def importtime_table(rows: dict[str, dict[str, float]]) -> list[str]:
    names = list(rows)
    out = ["| package (self time, ms) | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    ours = {"gradience"}
    for pkg in (*PACKAGES, "gradience", "other", "total"):
        cells = []
        for who in names:
            per = rows[who]
            if pkg == "other":
                v = per["total"] - sum(per.get(p, 0.0) for p in (*PACKAGES, *ours))
            else:
                v = per.get(pkg, 0.0)
            cells.append(f"{v:.0f}")
        out.append(f"| {pkg} | " + " | ".join(cells) + " |")
    return out


def profile_compress(adapter: Path, out: Path, src: Path, title: str) -> list[str]:
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(src), "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", PROFILE_PROBE, str(adapter), str(out)], capture_output=True,
                          text=True, env=env, check=True)  # fmt: skip
    shutil.rmtree(out, ignore_errors=True)
    lines = proc.stdout.strip().splitlines()
    total = float(lines[0].split()[1])
    table = [f"### {title}", "", f"`compress_adapter(rank=32)` in-process: {total:.2f} s of profiled time on "
             "one thread (cProfile's own overhead included; torch's own threads, in an older checkout, "
             "are not seen).", "", "| self time (s) | share | calls | function |", "|---|---|---|---|"]  # fmt: skip
    for row in lines[1:]:
        tt, nc, fn = row.split("\t")
        table.append(f"| {float(tt):.3f} | {float(tt) / total:.0%} | {nc} | `{fn}` |")
    return table


UPSTREAM_VENV = Path.home() / ".cache" / "gradience-bench" / "upstream-venv"
OURS_VENV = Path.home() / ".cache" / "gradience-bench" / "ours-venv"


def _torch_pin() -> str:
    import torch  # the same CPU wheel for both: a bare `torch` requirement would fetch a CUDA build

    return f"torch=={torch.__version__.split('+')[0]}"


def _steps(steps: list[list[str]], venv: Path | None = None) -> str:
    """Run install steps; '' when all succeed, else what went wrong (and the venv is removed)."""
    for cmd in steps:
        print("+", " ".join(cmd), file=sys.stderr)
        res = subprocess.run(cmd, capture_output=True, text=True, env=UP_ENV, check=False)
        if res.returncode != 0:
            if venv is not None:
                shutil.rmtree(venv, ignore_errors=True)
            return f"{' '.join(cmd[:3])}…: {res.stderr.strip()[-200:]}"
    return ""


def install_ours(venv: Path) -> tuple[str | None, str]:
    """This checkout installed as users install it, into a venv made as upstream's is: the two
    processes then start in the same kind of environment (this machine's site-wide `.pth` hooks,
    which a venv does not run, cost a process ~50 ms). The venv and its dependencies are made once;
    the checkout is reinstalled (a built wheel, byte-compiled) on every run."""
    pip = str(venv / "bin" / "pip")
    root = str(SRC.parent)
    if not (venv / "bin" / "python").exists():
        why = _steps(
            [[sys.executable, "-m", "venv", str(venv)], [pip, "install", "-q", _torch_pin(), root]], venv
        )
        if why:
            return None, f"Ours could not be installed in a venv ({why}); ours runs from this environment."
    why = _steps([[pip, "install", "-q", "--no-deps", "--force-reinstall", root]])
    if why:
        return None, f"Ours could not be reinstalled in its venv ({why}); ours runs from this environment."
    return str(venv / "bin" / "gradience"), ""


def install_upstream(venv: Path) -> tuple[str | None, str]:
    """Upstream's latest release from the package index, in a venv of its own (made once, then
    reused): (its `gradience` executable or None, a note saying what went wrong)."""
    exe = venv / "bin" / "gradience"
    if exe.exists():
        return str(exe), ""
    why = _steps([[sys.executable, "-m", "venv", str(venv)], [str(venv / "bin" / "pip"), "install", "-q",
                  _torch_pin(), "gradience"]], venv)  # fmt: skip
    return (None, f"Upstream could not be installed ({why})") if why else (str(exe), "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--upstream",
        default="auto",
        help=f"upstream's `gradience` executable (its own venv); auto: `pip install gradience` into {UPSTREAM_VENV}",
    )
    ap.add_argument("--ours", choices=["venv", "here"], default="venv",
                    help=f"venv: this checkout installed into {OURS_VENV} (as upstream is into its own); "
                    "here: this environment, with PYTHONPATH at src/")  # fmt: skip
    ap.add_argument("--before-src", help="src/ of an older checkout, for the importtime comparison")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--layers", type=int, default=32)
    args = ap.parse_args()
    import compileall

    compileall.compile_dir(str(SRC), quiet=1)
    up, version, note = None, "", ""
    if args.upstream == "auto":
        args.upstream, note = install_upstream(UPSTREAM_VENV)
    if args.upstream:
        up_python = Path(args.upstream).with_name("python")
        probe = "import importlib.metadata as m; print(m.version('gradience'))"
        res = subprocess.run(
            [str(up_python), "-c", probe], capture_output=True, text=True, env=UP_ENV, check=False
        )
        version = res.stdout.strip()
        if res.returncode == 0 and version:
            up = [args.upstream]
        else:
            note = f"Upstream could not be run ({args.upstream}): {res.stderr.strip()[-200:]}"
    elif not note:
        note = "Upstream was not given (--upstream): only our numbers are listed."
    ours, ours_env, ours_py, ours_note = OURS, OURS_ENV, sys.executable, ""
    if args.ours == "venv":
        exe, ours_note = install_ours(OURS_VENV)
        if exe:
            ours, ours_env, ours_py = [exe], UP_ENV, str(Path(exe).with_name("python"))
    where = (f"Ours: this checkout installed in a venv of its own ({OURS_VENV}), as upstream is."
             if ours_py != sys.executable else ours_note or "Ours: this environment, PYTHONPATH at src/.")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        adapter = build_7b_adapter(Path(tmp) / "adapter", n_layers=args.layers)
        size = sum(p.stat().st_size for p in adapter.iterdir()) / 2**20
        out_ours, out_up = Path(tmp) / "ours", Path(tmp) / "up"

        def clean() -> None:
            shutil.rmtree(out_ours, ignore_errors=True)
            shutil.rmtree(out_up, ignore_errors=True)

        audit_args = ["audit", "--peft-dir", str(adapter), "--json"]
        compress_args = [
            "compress",
            "--peft-dir",
            str(adapter),
            "--out",
            str(out_ours),
            "--rank",
            "32",
            "--json",
        ]
        truncate_args = ["truncate", "--peft-dir", str(adapter), "--out-dir", str(out_up), "--rank", "32",
                         "--dtype", "fp16", "--json"]  # fmt: skip
        rows = [
            pair("`--help`", [*ours, "--help"], up and [*up, "--help"], args.repeats, ours_env=ours_env),
            pair(
                "`audit --json`",
                [*ours, *audit_args],
                up and [*up, *audit_args],
                args.repeats,
                ours_env=ours_env,
            ),  # fmt: skip
            pair(
                "`compress --rank 32` vs `truncate --rank 32`",
                [*ours, *compress_args],
                up and [*up, *truncate_args],
                args.repeats,
                before=clean,
                ours_env=ours_env,
            ),  # fmt: skip
        ]
        imports = {
            "ours": importtime([ours_py, "-X", "importtime", "-m", "gradience", *audit_args], ours_env)
        }
        if args.before_src:
            env = {**os.environ, "PYTHONPATH": str(Path(args.before_src).resolve())}
            imports["before"] = importtime(
                [sys.executable, "-X", "importtime", "-m", "gradience", *audit_args], env
            )
        if up:
            up_cmd = [
                str(Path(args.upstream).with_name("python")),
                "-X",
                "importtime",
                args.upstream,
                *audit_args,
            ]
            imports["upstream"] = importtime(up_cmd, UP_ENV)
        profile = profile_compress(adapter, out_ours, SRC, "This checkout")
        if args.before_src:
            profile += [
                "",
                *profile_compress(
                    adapter, out_ours, Path(args.before_src).resolve(), "Before (--before-src)"
                ),
            ]
    head = f"Upstream: gradience {version} ({args.upstream})." if up else note
    lines = [
        f"# CLI speed against upstream — {time.strftime('%Y-%m-%d')}",
        "",
        f"Machine: {machine()}. {head} {where} Adapter: 7B-shaped, {args.layers} layers × 7 modules, r=64, fp16, "
        f"{size:.0f} MB. {args.repeats} interleaved repeats, medians; CPU = user + system of the process "
        "(all threads), peak RSS of each process (GNU time). Command: `python benchmarks/cli_speed.py "
        "--upstream …`.",
        "",
        "| command | ours (s) | upstream (s) | time ratio | ours CPU (s) | upstream CPU (s) "
        "| ours RSS (MB) | upstream RSS (MB) | RSS ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        o, u = r["med"]["ours"], r["med"].get("upstream")
        if u is None:
            lines.append(f"| {r['name']} | {o[0]:.2f} | – | – | {o[1]:.2f} | – | {o[2]:.0f} | – | – |")
            continue
        lines.append(f"| {r['name']} | {o[0]:.2f} | {u[0]:.2f} | **{o[0] / u[0]:.2f}×** | {o[1]:.2f} | {u[1]:.2f} "
                     f"| {o[2]:.0f} | {u[2]:.0f} | {o[2] / u[2]:.2f}× |")  # fmt: skip
    lines += ["", "## `python -X importtime` of `audit --json`", "",
              "Self time of every module, summed per top-level package (one run each; ms).", "",
              *importtime_table(imports), "",
              "## Where `compress --rank 32`'s time goes", "", *profile]  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)
    print(f"wrote {write_result('cli_speed', text)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
