"""Every source a task can read gives the same rows: CSV, TSV, JSONL, JSON, Parquet, folders, splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gradience.bench import BenchInputError
from gradience.bench.config import TaskConfig
from gradience.bench.tasks.data import read_source

ROWS = [{"text": f'he said "hi" {i}, twice', "label": i % 3} for i in range(30)]


def _write_all(folder: Path) -> dict[str, Path]:
    import pandas as pd

    folder.mkdir(exist_ok=True)
    df = pd.DataFrame(ROWS)
    paths = {s: folder / f"train.{s}" for s in ("csv", "jsonl", "json", "parquet")}
    df.to_csv(paths["csv"], index=False)
    df.to_json(paths["jsonl"], orient="records", lines=True)
    paths["json"].write_text(json.dumps(ROWS))
    df.to_parquet(paths["parquet"])
    tsv = folder / "rows.tsv"  # GLUE style: bare quotes are text
    tsv.write_text("text\tlabel\n" + "".join(f"{r['text']}\t{r['label']}\n" for r in ROWS))
    paths["tsv"] = tsv
    return paths


@pytest.mark.parametrize("suffix", ["csv", "tsv", "jsonl", "json", "parquet"])
def test_each_file_type_reads_the_same_rows(tmp_path: Path, suffix: str) -> None:
    path = _write_all(tmp_path)[suffix]
    raw, source = read_source(TaskConfig(data=str(path)))
    assert list(raw) == ["train"] and source == str(path.resolve())
    got = [{"text": r["text"], "label": int(r["label"])} for r in raw["train"]]
    assert got == ROWS


def test_folder_with_validation_and_explicit_splits(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (folder / "valid.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS[:7]))
    (folder / "other.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS[:4]))
    raw, _ = read_source(TaskConfig(data=str(folder)))
    assert len(raw["train"]) == 30 and len(raw["validation"]) == 7
    raw, _ = read_source(TaskConfig(data=str(folder), splits={"validation": "other"}))
    assert len(raw["validation"]) == 4
    raw, _ = read_source(
        TaskConfig(data=str(folder / "train.jsonl"), splits={"validation": str(folder / "other.jsonl")})
    )
    assert len(raw["validation"]) == 4
    with pytest.raises(BenchInputError, match="task.splits.validation 'nope'"):
        read_source(TaskConfig(data=str(folder), splits={"validation": "nope"}))


def test_no_train_file_and_missing_file_are_input_errors(tmp_path: Path) -> None:
    (tmp_path / "e").mkdir()
    with pytest.raises(BenchInputError, match="no train file"):
        read_source(TaskConfig(data=str(tmp_path / "e")))
    with pytest.raises(BenchInputError, match="does not exist"):
        read_source(TaskConfig(data=str(tmp_path / "missing.jsonl")))
    (tmp_path / "bad.jsonl").write_text('{"text": 1}\n{oops\n')
    with pytest.raises(BenchInputError, match="cannot read"):
        read_source(TaskConfig(data=str(tmp_path / "bad.jsonl")))


def test_offline_hub_id_says_how_to_pass_files() -> None:
    with pytest.raises(BenchInputError, match="offline, pass local files instead"):
        read_source(TaskConfig(data="nobody/no-such-dataset-xyz"))
