"""`gradience report RUN.jsonl` (upstream v0.3.1's command) on an upstream-layout run file."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from gradience.cli import app

RUN = Path(__file__).parent / "upstream_runs" / "run.jsonl"


def _lines() -> list[dict]:
    out = []
    for line in RUN.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def test_report_json_matches_the_file_read_independently() -> None:
    res = CliRunner().invoke(app, ["report", str(RUN), "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    lines = _lines()
    assert rep["n_events"] == len(lines) and rep["n_bad_lines"] == 1
    counts: dict[str, int] = {}
    for e in lines:
        counts[e["event"]] = counts.get(e["event"], 0) + 1
    assert rep["events"] == counts
    val = [e["metrics"]["accuracy"] for e in lines if e["event"] == "eval" and e["split"] == "val"]
    (row,) = [s for s in rep["evals"] if s["split"] == "val"]
    assert (row["final_accuracy"], row["best_accuracy"], row["n_evals"]) == (val[-1], max(val), len(val))
    assert rep["final_train_loss"] == [e["loss"] for e in lines if e["event"] == "train_step"][-1]
    assert [a["code"] for a in rep["alerts"]] == ["memorization_gap"]


def test_report_text_and_monitor_read_the_same_file() -> None:
    text = CliRunner().invoke(app, ["report", str(RUN)])
    assert text.exit_code == 0 and "final accuracy" in text.stdout and "85.0%" in text.stdout
    mon = CliRunner().invoke(app, ["monitor", str(RUN), "--json"])
    assert mon.exit_code in (0, 1), mon.output
    assert json.loads(mon.stdout)


def test_report_on_a_missing_file_is_one_line_exit_2(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["report", str(tmp_path / "nope.jsonl")])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1


def test_lora_audit_events_carry_and_read_upstreams_key_names(tmp_path: Path) -> None:
    from gradience.telemetry.schema import LoraAuditMetrics
    from tiny_models import make_adapter

    upstream = next(e for e in _lines() if e.get("kind") == "lora_audit")["metrics"]
    read = LoraAuditMetrics.lenient(upstream)  # upstream's names only
    assert (read.suggested_r_median, read.suggested_r_p90) == (4, 8)
    adapter = tmp_path / "adapter"
    make_adapter(adapter, arch="llama")
    run = tmp_path / "run.jsonl"
    res = CliRunner().invoke(app, ["audit", "--peft-dir", str(adapter), "--append", str(run), "--json"])
    assert res.exit_code == 0, res.output
    metrics = json.loads(run.read_text().splitlines()[-1])["metrics"]
    assert metrics["suggested_r_global_median"] == metrics["suggested_r_median"]
    assert metrics["suggested_r_global_90"] == metrics["suggested_r_p90"]


def test_report_and_monitor_read_a_real_v031_run_file() -> None:
    """A telemetry file upstream v0.3.1 wrote in a real run (committed in its repository)."""
    real = Path(__file__).parent / "upstream_0_3_1" / "run.jsonl"
    lines = [json.loads(line) for line in real.read_text().splitlines() if line.strip()]
    rep = json.loads(CliRunner().invoke(app, ["report", str(real), "--json"]).stdout)
    assert rep["n_events"] == len(lines) and rep["n_bad_lines"] == 0
    assert rep["events"]["train_step"] == sum(e["event"] == "train_step" for e in lines)
    mon = CliRunner().invoke(app, ["monitor", str(real), "--json"])
    assert mon.exit_code in (0, 1), mon.output
    assert json.loads(mon.stdout)["summary"]["n_events"] == len(lines)
