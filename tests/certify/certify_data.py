"""SST-2 rows for certify's tests (a module of its own: both test folders' conftest are named conftest)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

SST2 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "glue-sst2"


def _sst2_rows(rows: range) -> list[dict[str, str]]:
    if not (SST2 / "train.tsv").is_file():
        pytest.fail(f"the SST-2 copy is expected at {SST2} (../shared/data/glue-sst2 beside the repository)")
    with open(SST2 / "train.tsv", encoding="utf-8") as fh:
        all_rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [all_rows[i] for i in rows]


def write_tsv(
    path: Path, rows: list[dict[str, str]], fields: tuple[str, ...] = ("sentence", "label")
) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\t".join(fields) + "\n")
        for r in rows:
            fh.write("\t".join(r[f] for f in fields) + "\n")
    return path
