"""`audit --json --format v0.3`: exactly v0.3.1's keys, each value equal to what upstream wrote
for the same adapter (0.11.0's output, recorded in tests/compat/upstream_audit/; for these keys its
to_summary_dict/to_dict read as v0.3.1's do, and 0.11 is what the package index offers)."""

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
# The keys of v0.3.1's LoRAAuditResult.to_summary_dict and LoRALayerAudit.to_dict (tag v0.3.1,
# gradience/vnext/audit/lora_audit.py), for an adapter without issues, top singular values or extras.
V031_SUMMARY = {
    "total_lora_params", "n_layers", "stable_rank_mean", "stable_rank_median", "stable_rank_weighted_mean",
    "effective_rank_mean", "utilization_mean", "energy_rank_90_p50", "energy_rank_90_p90", "by_type",
    "peft_dir", "adapter_config_path", "adapter_weights_path", "layer_data", "suggested_r_global_median",
    "suggested_r_global_90", "delta_sigma_max_scaled_mean", "delta_sigma_max_scaled_p50",
    "delta_sigma_max_scaled_p90", "delta_frob_norm_scaled_mean", "delta_frob_norm_scaled_p50",
    "delta_frob_norm_scaled_p90",
}  # fmt: skip
V031_ROW = {
    "name", "module_type", "r", "alpha", "a_key", "b_key", "a_shape", "b_shape", "params", "stable_rank",
    "effective_rank", "utilization", "sigma_max", "frob_sq", "energy_rank_90", "energy_rank_95",
    "energy_rank_99", "adapter_scale", "frob_norm", "sigma_max_scaled", "frob_norm_scaled",
}  # fmt: skip


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
    assert set(ours) == V031_SUMMARY  # exactly v0.3.1's keys
    assert all(set(row) == V031_ROW for row in ours["layer_data"]["layer_rows"])
    assert ours["peft_dir"] == str(FIXTURE) and ours["adapter_weights_path"].endswith(
        "adapter_model.safetensors"
    )
    rows = {r["name"]: r for r in ours.pop("layer_data")["layer_rows"]}
    theirs = {r["name"]: r for r in UPSTREAM["layer_data"]["layer_rows"]}
    assert set(rows) == set(theirs) and len(rows) == 14
    for name, row in rows.items():
        _same(row, theirs[name], name)
    _same({k: v for k, v in ours.items() if k not in PATHS}, UPSTREAM, "audit")


def test_v03_without_layers_and_a_bad_format() -> None:
    res = CliRunner().invoke(app, ["audit", "--peft-dir", str(FIXTURE), "--json", "--format", "v0.3"])
    assert res.exit_code == 0 and "layer_data" not in json.loads(res.stdout)
    bad = CliRunner().invoke(app, ["audit", "--peft-dir", str(FIXTURE), "--json", "--format", "v9"])
    assert bad.exit_code == 2 and "--format" in bad.output and len(bad.output.strip().splitlines()) == 1
    default = json.loads(CliRunner().invoke(app, ["audit", "--peft-dir", str(FIXTURE), "--json"]).stdout)
    assert default["schema"].startswith("gradience.audit/")  # our versioned layout stays the default
