"""Bad local data is one line and exit 2, before any training (regressions from the #10 review)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gradience.cli import app


def _tsv(folder: Path, rows: list[str]) -> Path:
    folder.mkdir()
    text = "sentence\tlabel\n" + "\n".join(rows) + "\n"
    (folder / "train.tsv").write_text(text)
    (folder / "dev.tsv").write_text(text)
    return folder


@pytest.mark.parametrize(
    "rows, needle",
    [
        ([f"text {i}\t{i % 2}" for i in range(300)] + ["ragged\t1\textra"] + [f"t {i}\t0" for i in range(300)],
         "the same number of columns in every row"),
        ([f"text {i}\t{i % 2 + 0.5}" for i in range(600)], "or class names"),
    ],
)  # fmt: skip
def test_bad_tsv_is_one_line_exit_2(
    tmp_path: Path, tiny_model_dir: Path, make_config: Callable, rows: list[str], needle: str
) -> None:
    data = _tsv(tmp_path / "data", rows)
    cfg = make_config(tiny_model_dir, data)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(
        app, ["bench", "--config", str(tmp_path / "c.yaml"), "--output", str(tmp_path / "o")]
    )
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1 and needle in res.stderr
    assert not (tmp_path / "o").exists()
