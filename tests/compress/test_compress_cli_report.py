"""`gradience compress` through the CLI: the on-disk compression_report.json against dense SVDs
of PEFT's get_delta_weight and parameter counts taken from the saved tensors; and the --energy,
--budget-ratio and --from-audit rules checked on what PEFT loads back from the output folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from compress_helpers import check_truncation, load_peft, lora_modules
from safetensors.torch import load_file
from typer.testing import CliRunner

from gradience.cli import app
from tiny_models import make_adapter, peft_delta_weights, spread_spectra

runner = CliRunner()
R = 8
PATTERN = {"value": 4, "intermediate.dense": 6}


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    """A BERT adapter (head in modules_to_save, mixed ranks) whose spectra decay at a different
    rate in every layer, so energy and budget rules give different ranks per layer.
    Returns (folder, σ of every layer's s·B·A by a dense SVD of PEFT's own delta)."""
    d = tmp_path_factory.mktemp("src")
    pm = make_adapter(d, arch="bert", r=R, rank_pattern=PATTERN)
    spread_spectra(pm)
    pm.save_pretrained(str(d))
    sigma = {
        n: torch.linalg.svdvals(delta).numpy()
        for n, delta in peft_delta_weights(load_peft("bert", d)).items()
    }
    return d, sigma


def compress(src_dir: Path, out: Path, *args: str) -> dict:
    res = runner.invoke(app, ["compress", "--peft-dir", str(src_dir), "--out", str(out), *args])
    assert res.exit_code == 0, (res.exit_code, res.stdout, res.stderr)
    return json.loads((out / "compression_report.json").read_text())


def saved_ranks_and_params(folder: Path) -> tuple[dict[str, int], int]:
    """Per-layer rank (rows of lora_A) and the LoRA parameter count, read from the saved tensors."""
    sd = load_file(str(folder / "adapter_model.safetensors"))
    ranks, params = {}, 0
    for key, t in sd.items():
        if key.endswith(("lora_A.weight", "lora_B.weight")):
            params += t.numel()
        if key.endswith("lora_A.weight"):
            ranks[key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")] = t.shape[0]
    return ranks, params


def kept_energy(s: np.ndarray, k: int) -> float:
    e = s.astype(np.float64) ** 2
    return float(e[:k].sum() / e.sum())


def snap(value: float, allowed: list[int], cap: int) -> int:
    """SPEC's one rule: round up to the next allowed rank (≥ value), then cap at r."""
    need = max(1, math.ceil(value))
    return min(next((a for a in sorted(allowed) if a >= need), cap), cap)


def loads_back(src_dir: Path, out: Path) -> dict[str, int]:
    """PEFT loads OUT; it is the truncation of the original; returns the ranks PEFT resolved."""
    orig, new = load_peft("bert", src_dir), load_peft("bert", out)
    check_truncation(orig, new, torch.float32)
    return {name: m.r["default"] for name, m in lora_modules(new).items()}


def test_rank_report_on_disk_matches_dense_svd_and_saved_tensors(src, tmp_path):
    d, sigma = src
    out = tmp_path / "k3"
    rep = compress(d, out, "--rank", "3")
    old_ranks, old_params = saved_ranks_and_params(d)
    new_ranks, new_params = saved_ranks_and_params(out)
    assert new_ranks == {n: min(3, r) for n, r in old_ranks.items()}
    rows = {la["name"]: la for la in rep["layers"]}
    assert set(rows) == set(sigma) == set(old_ranks)
    for name, s in sigma.items():
        row = rows[name]
        assert row["old_rank"] == old_ranks[name] and row["new_rank"] == new_ranks[name]
        assert row["retained_energy"] == pytest.approx(kept_energy(s, new_ranks[name]), rel=1e-9)
        assert row["frob_norm"] == pytest.approx(float(np.sqrt((s**2).sum())), rel=1e-9)
        assert row["frob_error"] == pytest.approx(float(np.sqrt((s[new_ranks[name] :] ** 2).sum())), rel=1e-6)
        assert row["truncated"] == (new_ranks[name] < old_ranks[name])
    t = rep["totals"]
    assert t["lora_params_before"] == old_params and t["lora_params_after"] == new_params
    assert t["lora_reduction"] == pytest.approx(1 - new_params / old_params, rel=1e-12)
    kept = sum(float((s[: new_ranks[n]] ** 2).sum()) for n, s in sigma.items())
    assert t["retained_energy"] == pytest.approx(
        kept / sum(float((s**2).sum()) for s in sigma.values()), rel=1e-9
    )
    assert t["min_layer_retained_energy"] == pytest.approx(
        min(kept_energy(s, new_ranks[n]) for n, s in sigma.items()), rel=1e-9
    )
    # total-trainable reduction counts the carried head too (everything that is not a LoRA factor)
    other = sum(
        v.numel() for k, v in load_file(str(out / "adapter_model.safetensors")).items()
        if not k.endswith(("lora_A.weight", "lora_B.weight"))
    )  # fmt: skip
    assert other > 0 and t["other_params"] == other
    assert t["total_reduction"] == pytest.approx(1 - (new_params + other) / (old_params + other), rel=1e-12)
    assert loads_back(d, out) == new_ranks


def test_energy_rule_keeps_at_least_t_and_one_fewer_would_not(src, tmp_path):
    d, sigma = src
    out = tmp_path / "e90"
    compress(d, out, "--energy", "0.9")
    ranks, _ = saved_ranks_and_params(out)
    assert loads_back(d, out) == ranks
    for name, s in sigma.items():
        k = ranks[name]
        assert kept_energy(s, k) >= 0.9 - 1e-12, name
        assert k == 1 or kept_energy(s, k - 1) < 0.9, name
    assert len(set(ranks.values())) >= 3  # the rule really differs per layer


def test_energy_rule_with_allowed_ranks_snaps_up(src, tmp_path):
    d, sigma = src
    out = tmp_path / "e90s"
    compress(d, out, "--energy", "0.9", "--allowed-ranks", "2,4")
    ranks, _ = saved_ranks_and_params(out)
    old, _ = saved_ranks_and_params(d)
    assert loads_back(d, out) == ranks
    for name, s in sigma.items():
        need = next(k for k in range(1, len(s) + 1) if kept_energy(s, k) >= 0.9)
        assert ranks[name] == snap(need, [2, 4], old[name]), name
        assert kept_energy(s, ranks[name]) >= 0.9 - 1e-12


def test_budget_ratio_half(src, tmp_path):
    d, sigma = src
    out = tmp_path / "b50"
    rep = compress(d, out, "--budget-ratio", "0.5")
    ranks, new_params = saved_ranks_and_params(out)
    old, old_params = saved_ranks_and_params(d)
    assert new_params <= 0.5 * old_params
    assert rep["totals"]["lora_params_after"] == new_params
    assert loads_back(d, out) == ranks
    assert all(1 <= ranks[n] <= old[n] for n in old) and ranks != old


def test_from_audit_is_snapped_energy_rank_90(src, tmp_path):
    d, sigma = src
    out = tmp_path / "fa"
    compress(d, out, "--from-audit")
    ranks, _ = saved_ranks_and_params(out)
    old, _ = saved_ranks_and_params(d)
    assert loads_back(d, out) == ranks
    for name, s in sigma.items():
        er90 = next(k for k in range(1, old[name] + 1) if kept_energy(s, k) >= 0.9)
        assert ranks[name] == snap(er90, [1, 2, 4, 8], old[name]), name
