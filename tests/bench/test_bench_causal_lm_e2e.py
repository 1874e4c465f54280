"""A causal-LM bench end to end on the pre-trained tiny Llama: exact match (binary verdicts) and
per-item NLL (continuous verdicts), with reports that name the metric."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from causal_fixtures import op_rows, write_jsonl
from typer.testing import CliRunner

from gradience.cli import app

TARGETS = ["q_proj", "v_proj"]


def _config(model: Path, data: Path, **task: Any) -> dict[str, Any]:
    return {
        "bench_version": "0.2",
        "model": {"name": str(model)},
        "task": {"type": "causal_lm", "data": str(data), "prompt_template": "{op}: {x} =",
                 "response_field": "y", "max_new_tokens": 6, **task},
        "train": {"max_steps": 60, "lr": 5e-3, "per_device_train_batch_size": 32, "train_samples": 500,
                  "eval_samples": 100, "per_device_eval_batch_size": 50},
        "lora": {"probe_r": 8, "alpha": 16, "dropout": 0.0, "target_modules": TARGETS},
        "compression": {"seeds": [1], "probe_gate": 0.0, "allowed_ranks": [1, 2, 4, 8],
                        "variants_to_test": ["uniform_median", "truncate_median"]},
    }  # fmt: skip


@pytest.mark.parametrize("metric", ["exact_match", "nll"])
def test_causal_lm_bench_end_to_end(causal_lm_dir: Path, tmp_path: Path, metric: str) -> None:
    data = write_jsonl(tmp_path / "dec.jsonl", op_rows(["dec"], 700, seed=8))  # an op the base never saw
    cfg = _config(causal_lm_dir, data, metric=metric)
    if metric == "nll":
        cfg["compression"]["acc_tolerance"] = 0.05  # nats
        cfg["compression"]["probe_gate"] = 5.0  # NLL gates from above
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(
        app, ["bench", "--config", str(tmp_path / "c.yaml"), "--output", str(tmp_path / "o")]
    )
    assert res.exit_code in (0, 1), res.output
    rep = json.loads((tmp_path / "o" / "bench.json").read_text())
    assert rep["task"]["type"] == "causal_lm" and rep["task"]["metric"] == metric
    ev = json.loads((tmp_path / "o" / "seed_1" / "probe_r8" / "eval.json").read_text())["splits"]["eval"]
    assert ev["metric"] == metric and ev["n"] == 100 and ev["value"] == pytest.approx(np.mean(ev["outcomes"]))
    if metric == "exact_match":
        assert ev["value"] >= 0.9 and set(ev["outcomes"]) <= {0.0, 1.0}  # the probe learned "dec"
        assert len(ev["texts"]) == 100
    else:
        assert ev["value"] < 0.5 and rep["task"]["higher_is_better"] is False
    for name in ("uniform_median", "truncate_median"):
        v = rep["compressed"][name]
        assert v["status"] == "ok" and v["ci"] is not None
    md = (tmp_path / "o" / "bench.md").read_text()
    title = "exact match" if metric == "exact_match" else "NLL"
    assert f"| seed | {title} |" in md and "| accuracy |" not in md
    if metric == "nll":
        assert "nats" in md and "lower is better" in md
