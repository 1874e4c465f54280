"""``gradience audit --json --format v0.3``: upstream's flat audit layout, built from our report.

Upstream writes the summary keys at the top level, ``by_type`` with float counts, the two
snapped global suggestions, the input paths, mean/p50/p90 of the layers' scaled σ_max and
Frobenius norms, and with ``--layers`` a ``layer_data`` block of ``layer_rows`` keyed by the
state-dict module path — the keys of v0.3.1's ``LoRAAuditResult.to_summary_dict``. Values are ours (exact r×r-core maths;
they agree with upstream's to ~1e-12 on ordinary adapters); the suggestions use our snapping
rule, which equals upstream's {1, 2, 4, …, 32} rule for r ≤ 32. Upstream 0.11's later additions
(rank policies, gain and composition analyses, UDR fields) are not written; nor are the rows'
optional ``top_singular_values``/``extras``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

PREFIX = "base_model.model."
_SUMMARY = ("total_lora_params", "n_layers", "stable_rank_mean", "stable_rank_median", "stable_rank_weighted_mean",
            "effective_rank_mean", "utilization_mean", "energy_rank_90_p50", "energy_rank_90_p90")  # fmt: skip


def _row(layer: dict[str, Any]) -> dict[str, Any]:
    scale = float(layer["scale"])
    r, n_in, n_out = int(layer["r"]), int(layer["in_features"]), int(layer["out_features"])
    tag = (
        ("lora_embedding_A", "lora_embedding_B") if layer.get("kind") == "embedding" else ("lora_A", "lora_B")
    )
    sigma = layer["sigma_max_scaled"] / scale if scale else 0.0
    frob = layer["frob_norm_scaled"] / scale if scale else 0.0
    return {
        "name": PREFIX + layer["name"],
        "module_type": layer["module_type"],
        "r": r,
        "alpha": float(layer["alpha"]),
        "a_key": f"{PREFIX}{layer['name']}.{tag[0]}"
        + ("" if tag[0].startswith("lora_embedding") else ".weight"),
        "b_key": f"{PREFIX}{layer['name']}.{tag[1]}"
        + ("" if tag[1].startswith("lora_embedding") else ".weight"),
        "a_shape": [r, n_in],
        "b_shape": [n_out, r],
        "params": int(layer["params"]),
        "stable_rank": layer["stable_rank"],
        "effective_rank": layer["effective_rank"],
        "utilization": layer["utilization"],
        "sigma_max": sigma,
        "frob_sq": frob * frob,
        "energy_rank_90": layer["energy_rank_90"],
        "energy_rank_95": layer["energy_rank_95"],
        "energy_rank_99": layer["energy_rank_99"],
        "adapter_scale": scale,
        "frob_norm": math.sqrt(max(frob * frob, 0.0)),
        "sigma_max_scaled": layer["sigma_max_scaled"],
        "frob_norm_scaled": layer["frob_norm_scaled"],
    }


def audit_v03(
    report: dict[str, Any],
    all_layers: list[dict[str, Any]],
    *,
    config_path: Path | None,
    weights_path: Path | None,
) -> dict[str, Any]:
    """Upstream's layout of ``report`` (our ``gradience.audit/v1`` JSON, with ``layers`` when the
    rows are wanted); ``all_layers`` are every layer's rows, for the summary of scaled norms."""
    s = report["summary"]
    out: dict[str, Any] = {k: s[k] for k in _SUMMARY}
    out["by_type"] = {
        t: {"n_layers": float(v["n_layers"]), "params": float(v["lora_params"]), "stable_rank_mean": v["stable_rank_mean"],
            "utilization_mean": v["utilization_mean"], "energy_rank_90_p50": v["energy_rank_90_p50"],
            "energy_rank_90_p90": v["energy_rank_90_p90"]}
        for t, v in s["by_type"].items()
    }  # fmt: skip
    out["peft_dir"] = report.get("source")
    if config_path is not None:
        out["adapter_config_path"] = str(config_path)
    if weights_path is not None:
        out["adapter_weights_path"] = str(weights_path)
    if report.get("issues"):
        out["issues"] = [
            i["message"] if isinstance(i, dict) and "message" in i else str(i) for i in report["issues"]
        ]
    if report.get("layers"):
        out["layer_data"] = {
            "layer_rows_schema": "v1",
            "layer_rows": [_row(layer) for layer in report["layers"]],
        }
    out["suggested_r_global_median"] = report["suggestions"]["uniform_median"]["rank"]
    out["suggested_r_global_90"] = report["suggestions"]["uniform_p90"]["rank"]
    for key, field in (
        ("delta_sigma_max_scaled", "sigma_max_scaled"),
        ("delta_frob_norm_scaled", "frob_norm_scaled"),
    ):
        values = sorted(float(layer[field]) for layer in all_layers)
        if values:  # upstream's percentile: the sorted value at round((n − 1)·q)
            out[f"{key}_mean"] = sum(values) / len(values)
            out[f"{key}_p50"] = values[int(round((len(values) - 1) * 0.5))]
            out[f"{key}_p90"] = values[int(round((len(values) - 1) * 0.9))]
    return out
