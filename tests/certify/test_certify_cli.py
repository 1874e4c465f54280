"""`gradience certify` through the CLI: bad input is one line on stderr, exit 2, nothing written."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from certify_data import _sst2_rows, write_tsv
from typer.testing import CliRunner

from gradience.cli import app


def _run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, ["certify", *args])
    return res.exit_code, res.stdout, res.stderr


def _args(adapter: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["--peft-dir", str(adapter), "--data", str(data), "--out", str(out), *extra]


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda a, d, o: _args(a.parent / "missing", d, o), "adapter directory not found"),
        (
            lambda a, d, o: _args(a, d, o, "--base-model", "/no/such/model"),
            "cannot load a tokenizer for model",
        ),
        (lambda a, d, o: _args(a, d, o, "--text-field", "review"), "has no column(s) ['review']"),
        (lambda a, d, o: _args(a, d, o, "--label-field", "stars"), "has no column(s) ['stars']"),
        (lambda a, d, o: _args(a, d, o, "--margin", "0"), "--margin must be in (0, 1)"),
        (lambda a, d, o: _args(a, d, o, "--margin", "1"), "--margin must be in (0, 1)"),
        (lambda a, d, o: _args(a, d, o, "--margin", "-0.1"), "--margin must be in (0, 1)"),
        (lambda a, d, o: _args(a, d, o, "--confidence", "1.2"), "--confidence must be in (0.5, 1)"),
        (
            lambda a, d, o: _args(a, d, o, "--ladder", "octave"),
            "--ladder must be one of budget, rank, energy",
        ),
        (lambda a, d, o: _args(a, d, o, "--steps", "0.5,lots"), "--steps must be numbers"),
        (lambda a, d, o: _args(a, d, o, "--eval-samples", "12"), "12 eval items"),
        (lambda a, d, o: _args(a, d.parent / "nothing.tsv", o), "does not exist"),
        (lambda a, d, o: _args(a, d, o, "--task", "regression"), "invalid task settings"),
        (lambda a, d, o: _args(a, d, o, "--device", "cuda"), "cuda"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(
    tmp_path: Path, trained_adapter: Path, eval_tsv: Path, edit: Callable, needle: str
) -> None:
    out = tmp_path / "out"
    code, _, err = _run(*edit(trained_adapter, eval_tsv, out))
    assert code == 2, err
    assert needle in err and err.count("\n") == 1 and err.startswith("error: "), err
    assert not out.exists()


def test_too_few_items_in_the_file(tmp_path: Path, trained_adapter: Path) -> None:
    small = write_tsv(tmp_path / "small.tsv", _sst2_rows(range(10)))
    code, _, err = _run(*_args(trained_adapter, small, tmp_path / "out"))
    assert code == 2 and "10 eval items" in err and "at least 20" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_out_that_is_a_file_or_a_foreign_non_empty_folder(tmp_path: Path, trained_adapter: Path,
                                                          eval_tsv: Path) -> None:  # fmt: skip
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    code, _, err = _run(*_args(trained_adapter, eval_tsv, afile))
    assert code == 2 and "not a directory" in err and afile.read_text() == "keep me"
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    code, _, err = _run(*_args(trained_adapter, eval_tsv, full))
    assert code == 2 and "not empty" in err and "--resume" in err and err.count("\n") == 1
    code, _, err = _run(*_args(trained_adapter, eval_tsv, full, "--resume"))
    assert code == 2 and "not written by Gradience" in err
    assert sorted(p.name for p in full.iterdir()) == ["notes.txt"]


def test_a_head_that_does_not_fit_is_bad_input(tmp_path: Path, trained_adapter: Path, eval_tsv: Path) -> None:
    code, _, err = _run(*_args(trained_adapter, eval_tsv, tmp_path / "out", "--labels", "0,1,2"))
    assert code == 2 and "--labels" in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_json_run_and_exit_code(tmp_path: Path, trained_adapter: Path, eval_tsv: Path) -> None:
    code, out, _ = _run(*_args(trained_adapter, eval_tsv, tmp_path / "out", "--ladder", "rank", "--margin", "0.2",
                               "--json"))  # fmt: skip
    report = json.loads(out)
    assert code == report["exit_code"] == 0 and report["certified"] == "rank_1"
    assert report == json.loads((tmp_path / "out" / "certify.json").read_text())
    code, _, err = _run(*_args(trained_adapter, eval_tsv, tmp_path / "out", "--ladder", "rank"))
    assert code == 2 and "not empty" in err  # a second run needs --resume


def test_help_lists_the_flags() -> None:
    res = CliRunner().invoke(app, ["certify", "--help"])
    flags = ["--peft-dir", "--data", "--out", "--base-model", "--task", "--metric", "--text-field", "--label-field",
             "--labels", "--task-config", "--eval-samples", "--margin", "--confidence", "--ladder", "--steps",
             "--device", "--batch-size", "--resume", "--json"]  # fmt: skip
    assert res.exit_code == 0 and all(f in res.output for f in flags)


def test_an_adapter_head_that_does_not_fit_the_data_is_bad_input(tmp_path: Path, tiny_dir: Path,
                                                                  trained_adapter: Path, eval_tsv: Path) -> None:  # fmt: skip
    """A base without a head (like MiniLM) gets one of the data's size; the adapter's 2-class head
    cannot be loaded into a 3-class one."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    encoder = tmp_path / "encoder_only"
    BertForSequenceClassification.from_pretrained(str(tiny_dir)).bert.save_pretrained(str(encoder))
    AutoTokenizer.from_pretrained(str(tiny_dir)).save_pretrained(str(encoder))
    args = _args(
        trained_adapter, eval_tsv, tmp_path / "out", "--base-model", str(encoder), "--labels", "0,1,2"
    )
    code, _, err = _run(*args)
    assert (
        code == 2 and "does not fit the base model" in err and "--labels" in err and err.count("\n") == 1
    ), err
    assert not (tmp_path / "out").exists()


def test_rules_ladder_end_to_end(tmp_path: Path, trained_adapter: Path, eval_tsv: Path) -> None:
    from gradience.compress import CompressionPlan, compress_adapter

    code, out, err = _run(*_args(trained_adapter, eval_tsv, tmp_path / "out", "--ladder", "rules", "--steps",
                               "energy@0.99,knee", "--margin", "0.2", "--json"))  # fmt: skip
    assert code in (0, 1), err
    report = json.loads(out)
    assert code in (0, 1) and {c["kind"] for c in report["candidates"]} == {"rules"}
    for c in report["candidates"]:  # each candidate's ranks are what `compress --rank-rule` chooses
        plan = CompressionPlan(rank_rule=c["step"])
        ref = compress_adapter(trained_adapter, tmp_path / f"c_{c['step']}", plan)
        assert c["ranks"] == {la.name: la.new_rank for la in ref.layers}
