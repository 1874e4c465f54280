"""certify end to end on a tiny BERT and a LoRA really trained on SST-2 rows.

Everything is checked against references computed here, independently of certify's code:
a fresh PEFT load of the folders it wrote, the test's own tokenisation and one item at a time
(no padding), and the paired statistics recomputed from the saved predictions.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gradience.bench.certify import CertifyOptions, certify
from gradience.verdicts import compare_seed

MARGIN = 0.015  # the tiny adapter's 50% budget passes at it, its 25% budget does not: all three states occur


def _texts_labels(tsv: Path) -> tuple[list[str], list[int]]:
    with open(tsv, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["sentence"] for r in rows], [int(r["label"]) for r in rows]


def fresh_predictions(model_dir: Path, adapter_dir: Path, texts: list[str]) -> list[int]:
    """The ordinary way: base model + PeftModel.from_pretrained, unmerged LoRA, one item at a time."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    base = AutoModelForSequenceClassification.from_pretrained(str(model_dir), num_labels=2)
    model = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    out = []
    with torch.inference_mode():
        for text in texts:
            enc = tok(text, truncation=True, max_length=128, return_tensors="pt")
            out.append(int(model(**enc).logits.argmax(-1)))
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, trained_adapter: Path, eval_tsv: Path) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("certify") / "out"
    logs: list[str] = []
    outcome = certify(
        CertifyOptions(peft_dir=trained_adapter, data=str(eval_tsv), out=out, margin=MARGIN), log=logs.append
    )
    return {
        "outcome": outcome,
        "out": out,
        "logs": logs,
        "report": json.loads((out / "certify.json").read_text()),
    }


def _preds(out: Path, name: str) -> dict[str, Any]:
    return json.loads((out / "predictions" / f"{name}.json").read_text())


def test_outputs_and_exit_code(run: dict[str, Any]) -> None:
    rep, out = run["report"], run["out"]
    assert {p.name for p in out.iterdir()} >= {"certify.json", "certify.md", "certify.png", "predictions"}
    assert rep["certify_version"] == "1" and rep["data"]["n_items"] == 300
    assert (out / "certify.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "certify.md").read_text()
    assert md.splitlines()[2] == f"**{rep['answer']}**"  # the plain-language answer comes first
    assert "population the 300 evaluation items were drawn from" in md
    assert any(line.startswith("resolution: 300 items") for line in run["logs"])  # printed before candidates
    assert run["logs"].index(next(x for x in run["logs"] if x.startswith("resolution"))) < next(
        i for i, x in enumerate(run["logs"]) if x.startswith(rep["candidates"][0]["name"])
    )
    statuses = [c["status"] for c in rep["candidates"]]
    assert rep["exit_code"] == run["outcome"].exit_code == (0 if rep["certified"] else 1)
    assert [c["lora_params"] for c in rep["candidates"]] == sorted((c["lora_params"] for c in rep["candidates"]),
                                                                    reverse=True)  # fmt: skip
    passes = 0
    for s in statuses:
        if s != "PASS":
            break
        passes += 1
    assert all(s == "NOT_TESTED" for s in statuses[passes + 1 :])
    if rep["certified"]:
        assert rep["certified"] == rep["candidates"][passes - 1]["name"]
        assert (out / "certified" / "adapter_model.safetensors").is_file()
    else:
        assert not (out / "certified").exists()


def test_every_reported_number_recomputes_from_the_saved_predictions(
    run: dict[str, Any], eval_tsv: Path
) -> None:
    rep, out = run["report"], run["out"]
    _, labels = _texts_labels(eval_tsv)
    orig = _preds(out, "original")["eval"]
    assert orig["rows"] == list(range(300)) and orig["labels"] == labels
    orig_ok = np.asarray(orig["preds"]) == np.asarray(labels)
    assert rep["original"]["metric_value"] == pytest.approx(orig_ok.mean(), abs=1e-12)
    for c in rep["candidates"]:
        if c["status"] == "NOT_TESTED":
            assert c["predictions"] is None and not (out / "predictions" / f"{c['name']}.json").exists()
            continue
        ev = _preds(out, c["name"])["eval"]
        rows = ev["rows"]
        ok = np.asarray(ev["preds"]) == np.asarray([labels[r] for r in rows])
        assert c["metric_value"] == pytest.approx(ok.mean(), abs=1e-12)
        assert c["n_evaluated"] == len(rows) == (len(labels) if not c["stopped_early"] else len(rows))
        ref = compare_seed(orig_ok[rows], ok, margin=rep["margin"], confidence=rep["confidence"])
        assert (c["delta"], c["ci_low"], c["ci_high"]) == pytest.approx(
            (ref.delta, ref.ci_low, ref.ci_high), abs=1e-12
        )
        if not c["stopped_early"]:
            assert c["status"] == ref.noninferiority


def test_original_predictions_match_a_fresh_peft_evaluation(run: dict[str, Any], tiny_dir: Path,
                                                            trained_adapter: Path, eval_tsv: Path) -> None:  # fmt: skip
    texts, _ = _texts_labels(eval_tsv)
    assert _preds(run["out"], "original")["eval"]["preds"] == fresh_predictions(
        tiny_dir, trained_adapter, texts
    )


def test_certified_folder_loads_and_reproduces_its_predictions(run: dict[str, Any], tiny_dir: Path,
                                                              eval_tsv: Path) -> None:  # fmt: skip
    rep, out = run["report"], run["out"]
    assert rep["certified"], "the tiny adapter certifies its 50% budget at a 1.5-point margin"
    texts, _ = _texts_labels(eval_tsv)
    saved = _preds(out, rep["certified"])["eval"]
    assert saved["preds"] == fresh_predictions(tiny_dir, out / "certified", texts)
    cert = next(c for c in rep["candidates"] if c["name"] == rep["certified"])
    written = json.loads((out / "certified" / "compression_report.json").read_text())
    assert {row["name"]: row["new_rank"] for row in written["layers"]} == cert["ranks"]
    assert written["totals"]["lora_params_after"] == cert["lora_params"]
    assert written["carried_keys"]  # the classifier head travels unchanged


def test_resume_reuses_every_prediction_and_agrees(
    run: dict[str, Any], trained_adapter: Path, eval_tsv: Path
) -> None:
    out = run["out"]
    again = certify(CertifyOptions(peft_dir=trained_adapter, data=str(eval_tsv), out=out, margin=MARGIN, resume=True),
                    log=lambda m: None)  # fmt: skip
    first = run["report"]
    evaluated = ["original", *(c["name"] for c in first["candidates"] if c["status"] != "NOT_TESTED")]
    assert sorted(again.report.resumed) == sorted(evaluated)
    assert [c.status for c in again.report.candidates] == [c["status"] for c in first["candidates"]]
    assert again.report.certified == first["certified"]


def test_the_sequence_stopped_at_its_first_failure(run: dict[str, Any]) -> None:
    statuses = [c["status"] for c in run["report"]["candidates"]]
    assert statuses[0] == "PASS" and statuses[1] in ("FAIL", "INCONCLUSIVE", "STOPPED")
    assert statuses[2:] == ["NOT_TESTED"] * (len(statuses) - 2) and len(statuses) >= 3
    assert (
        run["outcome"].exit_code == 0 and run["report"]["certified"] == run["report"]["candidates"][0]["name"]
    )
