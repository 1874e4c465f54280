"""Are two bench outputs the same experiment? Per-item predictions, run by run.

Used to show that a refactor changed nothing a verdict depends on: run the same config and
seeds with the old and the new code into two folders, then

    python benchmarks/same_predictions.py OLD_DIR NEW_DIR [--write results/FILE.md]

prints one row per (seed, run, split): items, identical predictions / rows / labels, and the
two accuracies and losses. Exit 1 when anything differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def rows(old: Path, new: Path) -> list[dict]:
    out = []
    for ev_old in sorted(old.glob("seed_*/*/eval.json")):
        rel = ev_old.relative_to(old)
        ev_new = new / rel
        a = json.loads(ev_old.read_text())["splits"]
        b = json.loads(ev_new.read_text())["splits"] if ev_new.is_file() else {}
        for key, sa in a.items():
            sb = b.get(key)
            same = sb is not None and all(sa[k] == sb.get(k) for k in ("rows", "labels", "preds"))
            out.append({
                "run": str(rel.parent), "split": sa["split"], "n": sa["n"], "identical": same,
                "acc_old": sa["accuracy"], "acc_new": None if sb is None else sb.get("accuracy"),
                "loss_old": sa["loss"], "loss_new": None if sb is None else sb.get("loss"),
            })  # fmt: skip
    return out


def table(found: list[dict]) -> str:
    lines = ["| run | split | items | predictions identical | accuracy old / new | loss old / new |",
             "|---|---|---|---|---|---|"]  # fmt: skip

    def num(x: float | None, digits: int) -> str:
        return "missing" if x is None else f"{x:.{digits}f}"

    for r in found:
        lines.append(
            f"| {r['run']} | {r['split']} | {r['n']} | {'yes' if r['identical'] else '**NO**'} | "
            f"{num(r['acc_old'], 4)} / {num(r['acc_new'], 4)} | {num(r['loss_old'], 6)} / {num(r['loss_new'], 6)} |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--write", type=Path, help="also write the table to this markdown file")
    ap.add_argument("--title", default="Same config, same seeds, old vs new code")
    args = ap.parse_args()
    found = rows(args.old, args.new)
    if not found:
        print(f"no seed_*/*/eval.json under {args.old}", file=sys.stderr)
        return 2
    text = table(found)
    print(text)
    if args.write:
        args.write.write_text(f"# {args.title}\n\n{text}\n")
    return 0 if all(r["identical"] for r in found) else 1


if __name__ == "__main__":
    sys.exit(main())
