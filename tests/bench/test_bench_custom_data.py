"""Classification beyond GLUE TSVs: a CSV with three string classes and a JSONL with other field
names go through the whole bench (train → audit → variants → verdicts → reports) on the tiny model."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from gradience.bench.config import TaskConfig
from gradience.bench.tasks import load_task_data
from gradience.cli import app

WORDS = {
    "cat": ["purr", "whisker", "meow"],
    "dog": ["bark", "fetch", "woof"],
    "fish": ["fin", "swim", "gill"],
}


def _rows(n: int, seed: int) -> list[dict[str, str]]:
    rng = np.random.default_rng(seed)
    names = sorted(WORDS)
    out = []
    for i in range(n):
        label = names[int(rng.integers(3))]
        words = [str(w) for w in rng.choice(WORDS[label], 3)] + ["the", "a", "it"][: int(rng.integers(1, 4))]
        out.append({"id": str(i), "review": " ".join(rng.permutation(words)), "animal": label})
    return out


def _csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def _bench(tmp_path: Path, cfg: dict[str, Any], out: str) -> Any:
    (tmp_path / f"{out}.yaml").write_text(yaml.safe_dump(cfg))
    return CliRunner().invoke(
        app, ["bench", "--config", str(tmp_path / f"{out}.yaml"), "--output", str(tmp_path / out)]
    )


def test_csv_with_three_string_classes_through_the_whole_bench(
    tmp_path: Path, tiny_model_dir: Path, make_config: Callable
) -> None:
    data = _csv(tmp_path / "animals.csv", _rows(500, 0))
    cfg = make_config(tiny_model_dir, tmp_path)
    cfg["task"] = {"data": str(data), "text_fields": ["review"], "label_field": "animal"}
    cfg["compression"]["variants_to_test"] = ["uniform_median", "truncate_median"]
    res = _bench(tmp_path, cfg, "o")
    assert res.exit_code in (0, 1), res.output
    rep = json.loads((tmp_path / "o" / "bench.json").read_text())
    assert rep["task"]["labels"] == ["cat", "dog", "fish"] and rep["task"]["metric"] == "accuracy"
    assert rep["task"]["name"] == str(data)
    ev = json.loads((tmp_path / "o" / "seed_7" / "probe_r8" / "eval.json").read_text())["splits"]["eval"]
    # the ids are the sorted class names' positions, and every outcome is prediction == label
    source = {int(r["id"]): r["animal"] for r in _rows(500, 0)}
    assert [["cat", "dog", "fish"][y] for y in ev["labels"]] == [source[i] for i in ev["rows"]]
    assert ev["outcomes"] == [float(p == y) for p, y in zip(ev["preds"], ev["labels"], strict=True)]
    assert set(ev["preds"]) <= {0, 1, 2} and ev["value"] == pytest.approx(np.mean(ev["outcomes"]))
    for name in ("uniform_median", "truncate_median"):
        assert rep["compressed"][name]["status"] == "ok"
    md = (tmp_path / "o" / "bench.md").read_text()
    assert "class order ['cat', 'dog', 'fish']" in md


def test_jsonl_with_other_field_names_and_sentence_pairs(
    tmp_path: Path, tiny_model_dir: Path, make_config: Callable
) -> None:
    rows = _rows(460, 1)
    folder = tmp_path / "data"  # the output folder must not sit inside the data it reads
    folder.mkdir()
    with (folder / "train.jsonl").open("w") as f:
        for r in rows:
            f.write(
                json.dumps(
                    {"premise": r["review"], "hypothesis": r["animal"], "gold": int(r["animal"] == "dog")}
                )
                + "\n"
            )
    with (folder / "dev.jsonl").open("w") as f:
        for r in _rows(50, 2):
            f.write(
                json.dumps({"premise": r["review"], "hypothesis": "dog", "gold": int(r["animal"] == "dog")})
                + "\n"
            )
    task = TaskConfig(data=str(folder), text_fields=["premise", "hypothesis"], label_field="gold")
    data = load_task_data(str(tiny_model_dir), task, 200, 100, smoke=False, selection=False)
    assert data.num_labels == 2 and data.beside is not None and len(data.beside) == 50
    assert (
        "token_type_ids" in data.eval.features and max(data.eval.features["token_type_ids"][0]) == 1
    )  # a pair
    cfg = make_config(tiny_model_dir, tmp_path)
    cfg["task"] = task.model_dump(exclude_defaults=True)
    cfg["compression"]["variants_to_test"] = ["truncate_median"]
    res = _bench(tmp_path, cfg, "o2")
    assert res.exit_code in (0, 1), res.output
    assert (
        json.loads((tmp_path / "o2" / "bench.json").read_text())["compressed"]["truncate_median"]["status"]
        == "ok"
    )


@pytest.mark.parametrize(
    "task, needle",
    [
        ({"type": "regression"}, "'task.type'"),
        ({"label_field": "nope"}, "no column(s) ['nope']"),
        (
            {"labels": ["cat", "dog"]},
            "label 'fish' in column 'animal' is not in the label list ['cat', 'dog']",
        ),
        ({"answer_regex": "(unclosed"}, "does not compile"),
        ({"data": "animals.xlsx"}, "file type '.xlsx' is not one of"),
        ({"data": "empty.csv"}, "has no rows"),
        ({"metric": "exact_match"}, "is not one of ['accuracy'] for task.type 'classification'"),
    ],
)
def test_bad_task_config_is_one_line_exit_2(
    tmp_path: Path, tiny_model_dir: Path, make_config: Callable, task: dict[str, Any], needle: str
) -> None:
    _csv(tmp_path / "animals.csv", _rows(500, 0))
    (tmp_path / "empty.csv").write_text("review,animal\n")
    (tmp_path / "animals.xlsx").write_bytes(b"PK\x03\x04")
    cfg = make_config(tiny_model_dir, tmp_path)
    cfg["task"] = {"data": str(tmp_path / "animals.csv"), "text_fields": ["review"], "label_field": "animal"}
    cfg["task"].update({k: str(tmp_path / v) if k == "data" else v for k, v in task.items()})
    res = _bench(tmp_path, cfg, "bad")
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1, res.stderr
    assert needle in res.stderr, res.stderr
    assert not (tmp_path / "bad").exists()
