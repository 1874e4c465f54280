"""End to end on a tiny random BERT and a slice of the real SST-2: every variant trains and is judged."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from safetensors import safe_open
from typer.testing import CliRunner

from gradience.bench.config import ALL_VARIANTS
from gradience.bench.report import BenchReport
from gradience.bench.run_bench import REPORT_FILES
from gradience.cli import app
from gradience.telemetry import read_telemetry


def _tensors(adapter: Path, needle: str = "") -> dict[str, Any]:
    with safe_open(str(adapter / "adapter_model.safetensors"), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys() if needle in k}


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, ["bench", *map(str, args)])


@pytest.fixture(scope="module")
def finished(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, sst2_dir: Path, make_config: Callable
) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("bench_e2e")
    cfg_path = root / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(make_config(tiny_model_dir, sst2_dir)))
    out = root / "out"
    res = invoke("--config", cfg_path, "--output", out, "--json")
    assert res.exit_code == 0, res.output
    return {"cfg": cfg_path, "out": out, "json": json.loads(res.stdout), "root": root}


def test_every_report_file_and_valid_bench_json(finished: dict[str, Any]) -> None:
    out = finished["out"]
    for name in REPORT_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    rep = BenchReport.model_validate(json.loads((out / "bench.json").read_text()))
    assert finished["json"]["summary"] == rep.summary.model_dump(mode="json")
    assert rep.task["eval_split"] == "heldout" and rep.task["eval_items"] == 120
    assert rep.probe.gate["by_seed"] == {"7": "PASSED"}
    k, n = map(int, rep.summary.validated.split("/"))
    assert n == 5 and 0 <= k <= n  # every compression candidate (the shuffled control excluded) judged
    md = (out / "bench.md").read_text()
    assert "**Recommendation.**" in md and "accuracy_vs_params.png" in md and "probe_energy_rank.png" in md
    assert (out / "bench_aggregate.md").read_text().count("| ") > 10


def test_concentration_in_bench_json_and_md_recomputed_from_the_probe_audit(finished: dict[str, Any]) -> None:
    out = finished["out"]
    audit = json.loads((out / "seed_7" / "probe_r8" / "audit.json").read_text())
    energy = {la["name"]: la["frob_norm_scaled"] ** 2 for la in audit["layers"]}
    shares = {k: e / sum(energy.values()) for k, e in energy.items()}
    hhi = sum(p * p for p in shares.values())
    conc = json.loads((out / "bench.json").read_text())["probe"]["concentration"]["7"]
    assert conc["hhi"] == pytest.approx(hhi, rel=1e-9)
    assert conc["effective_layers"] == pytest.approx(1 / hhi, rel=1e-9)
    top = max(shares, key=shares.__getitem__)
    assert next(iter(conc["top_layers"])) == top
    md = (out / "bench.md").read_text()
    assert "### Where the update lives" in md
    assert (
        f"| 7 | {1 / hhi:.1f} of {len(energy)} | {hhi:.3f} |" in md
        and f"`{top}` {100 * shares[top]:.1f}%" in md
    )


def test_each_variant_ran_with_its_eval_and_accuracies_match_predictions(finished: dict[str, Any]) -> None:
    out, rep = finished["out"], finished["json"]
    probe_eval = json.loads((out / "seed_7" / "probe_r8" / "eval.json").read_text())["splits"]
    for variant in ALL_VARIANTS:
        v = rep["compressed"][variant]
        assert v["status"] == "ok", (variant, v["note"])  # probe_gate 0: nothing skipped by the gate
        (seed_run,) = v["per_seed"]
        run_dir = out / "seed_7" / seed_run["run"]
        for name in ("run.jsonl", "eval.json", "audit.json", "result.json", "adapter/adapter_config.json"):
            assert (run_dir / name).is_file(), (variant, name)
        splits = json.loads((run_dir / "eval.json").read_text())["splits"]
        ev = splits["eval"]
        acc = float(np.mean(np.asarray(ev["preds"]) == np.asarray(ev["labels"])))
        assert acc == pytest.approx(seed_run["accuracy"]) == pytest.approx(v["accuracy"])
        assert ev["rows"] == probe_eval["eval"]["rows"]  # the same items as the probe
        assert splits["beside"]["split"] == "validation" and splits["beside"]["n"] == 872
        delta = acc - float(np.mean(np.asarray(probe_eval["eval"]["preds"]) == np.asarray(ev["labels"])))
        assert v["delta_vs_probe"] == pytest.approx(delta)
        assert (
            v["verdict"]["point"] in {"PASS", "FAIL"}
            and v["ci"]["low"] <= v["delta_vs_probe"] <= v["ci"]["high"]
        )
        log = read_telemetry(run_dir / "run.jsonl")
        events = [e.event for e in log.events]
        assert events[0] == "run_start" and events[-1] == "run_end" and events.count("eval") == 2
        assert "metrics" in events and not log.issues


def test_per_layer_adapter_ranks_equal_its_pattern_and_keep_the_scale(finished: dict[str, Any]) -> None:
    out, rep = finished["out"], finished["json"]
    for variant in ("per_layer", "per_layer_shuffled", "truncate_per_layer"):
        adapter = out / "seed_7" / variant / "adapter"
        pattern = rep["compressed"][variant]["rank_pattern"]
        audit = json.loads((out / "seed_7" / "probe_r8" / "audit.json").read_text())
        assert set(pattern) == {la["name"] for la in audit["layers"]}  # every layer named explicitly
        saved = {
            k.split(".lora_A")[0].removeprefix("base_model.model."): t.shape[0]
            for k, t in _tensors(adapter, ".lora_A").items()
        }
        assert saved == pattern, variant
        for layer in json.loads((out / "seed_7" / variant / "audit.json").read_text())["layers"]:
            assert layer["scale"] == pytest.approx(16 / 8), (variant, layer["name"])  # probe's α/r kept


def test_truncated_variant_carries_the_probes_classifier_head(finished: dict[str, Any]) -> None:
    out = finished["out"]
    probe_head = _tensors(out / "seed_7" / "probe_r8" / "adapter", "classifier")
    assert probe_head, "the probe adapter saved no classifier head"
    for variant in ("truncate_median_r2", "truncate_per_layer"):
        run = next((out / "seed_7").glob(variant.split("_r")[0] + "*"))
        head = _tensors(run / "adapter", "classifier")
        assert head.keys() == probe_head.keys()
        assert all(np.array_equal(head[k].numpy(), probe_head[k].numpy()) for k in head)


def test_ci_exit_2_when_the_probe_is_undertrained(finished: dict[str, Any], tmp_path: Path) -> None:
    cfg = yaml.safe_load(finished["cfg"].read_text())
    cfg["compression"]["probe_gate"] = 0.99
    path = tmp_path / "gated.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    shutil.copytree(finished["out"] / "seed_7" / "probe_r8", out / "seed_7" / "probe_r8")  # reuse the probe
    res = invoke("--config", path, "--output", out, "--ci", "--resume")
    assert res.exit_code == 2, res.output
    rep = json.loads((out / "bench.json").read_text())
    assert rep["summary"]["undertrained_seeds"] == [7]
    assert all(v["status"] == "not_run" for v in rep["compressed"].values())
    assert sorted(p.name for p in (out / "seed_7").iterdir()) == ["probe_r8"]  # gate BEFORE any variant
    assert "quality gate" in rep["summary"]["recommendation"]


def test_smoke_marks_undertrained_but_runs_variants(finished: dict[str, Any], tmp_path: Path) -> None:
    cfg = yaml.safe_load(finished["cfg"].read_text())
    cfg["compression"].update(probe_gate=0.99, variants_to_test=["uniform_median", "truncate_median"])
    cfg["train"]["eval_steps"] = 5  # monitoring on the separate selection slice, never used to pick
    cfg["runtime"]["keep_adapters"] = False
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = invoke("--config", path, "--output", tmp_path / "out", "--smoke", "--ci")
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert rep["probe"]["gate"]["by_seed"] == {"7": "UNDERTRAINED_SMOKE"} and rep["summary"]["smoke"]
    assert rep["protocol"]["max_steps"] == 10 and rep["task"]["eval_items"] == 64
    assert {v["status"] for v in rep["compressed"].values()} <= {"ok", "skipped_control"}
    assert "Smoke run" in rep["summary"]["recommendation"]
    probe = tmp_path / "out" / "seed_7" / "probe_r8"
    evals = [e for e in read_telemetry(probe / "run.jsonl").events if e.event == "eval"]
    assert [(e.step, e.payload["split"]) for e in evals] == [(5, "selection"), (10, "test"), (10, "val")]
    assert (probe / "adapter").is_dir()  # probes stay for truncation and --resume
    for v in rep["compressed"].values():
        run = v["per_seed"][0]["run"]
        if v["status"] == "ok":
            assert not (tmp_path / "out" / "seed_7" / run / "adapter").exists()
