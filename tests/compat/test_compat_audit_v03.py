"""`audit --json --format v0.3`: upstream's flat layout, every key we write equal to what upstream
0.11 wrote for the same adapter (recorded in tests/compat/upstream_audit/)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from gradience.cli import app

FIXTURE = Path(__file__).parent / "upstream_audit"
UPSTREAM = json.loads((FIXTURE / "upstream_0_11_audit_layers.json").read_text())
PATHS = ("peft_dir", "adapter_config_path", "adapter_weights_path")


def _same(ours: Any, theirs: Any, where: str) -> None:
    if isinstance(ours, dict):
        for k, v in ours.items():
            assert k in theirs, f"{where}.{k} is not in upstream's output"
            _same(v, theirs[k], f"{where}.{k}")
    elif isinstance(ours, list):
        assert len(ours) == len(theirs), where
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            _same(a, b, f"{where}[{i}]")
    elif isinstance(ours, float) or isinstance(theirs, float):
        assert math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-12), (where, ours, theirs)
    else:
        assert ours == theirs, (where, ours, theirs)


def test_v03_layout_matches_upstreams_audit_key_for_key() -> None:
    res = CliRunner().invoke(
        app, ["audit", "--peft-dir", str(FIXTURE), "--json", "--format", "v0.3", "--layers"]
    )
    assert res.exit_code == 0, res.output
    ours = json.loads(res.stdout)
    assert ours["peft_dir"] == str(FIXTURE) and ours["adapter_weights_path"].endswith(
        "adapter_model.safetensors"
    )
    rows = {r["name"]: r for r in ours.pop("layer_data")["layer_rows"]}
    theirs = {r["name"]: r for r in UPSTREAM["layer_data"]["layer_rows"]}
    assert set(rows) == set(theirs) and len(rows) == 14
    for name, row in rows.items():
        _same(row, theirs[name], name)
    _same({k: v for k, v in ours.items() if k not in PATHS}, UPSTREAM, "audit")
    core = {"total_lora_params", "n_layers", "stable_rank_mean", "utilization_mean", "energy_rank_90_p50",
            "energy_rank_90_p90", "by_type", "suggested_r_global_median", "suggested_r_global_90"}  # fmt: skip
    assert core <= set(ours)


def test_v03_without_layers_and_a_bad_format() -> None:
    res = CliRunner().invoke(app, ["audit", "--peft-dir", str(FIXTURE), "--json", "--format", "v0.3"])
    assert res.exit_code == 0 and "layer_data" not in json.loads(res.stdout)
    bad = CliRunner().invoke(app, ["audit", "--peft-dir", str(FIXTURE), "--json", "--format", "v9"])
    assert bad.exit_code == 2 and "--format" in bad.output and len(bad.output.strip().splitlines()) == 1
    default = json.loads(CliRunner().invoke(app, ["audit", "--peft-dir", str(FIXTURE), "--json"]).stdout)
    assert default["schema"].startswith("gradience.audit/")  # our versioned layout stays the default
