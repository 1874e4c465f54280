"""Base-relative magnitude equals a dense computation from the full model (tiny BERT, GPT-2,
Llama): ‖W‖₂ and ‖W‖_F from the loaded module weights by torch.linalg, ‖ΔW‖ from PEFT's own
get_delta_weight; streamed from single, sharded, bf16 and wrapper-less checkpoints; cached."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gradience.audit import AdapterError, audit_adapter
from gradience.audit import base_norms as bn
from gradience.cli import app
from tiny_models import make_adapter, peft_delta_weights, tiny_model


@pytest.fixture(scope="module", params=["bert", "gpt2", "llama"])
def setup(request, tmp_path_factory):
    arch = request.param
    root = tmp_path_factory.mktemp(f"base_{arch}")
    peft_model = make_adapter(root / "adapter", arch, seed=0)
    base = tiny_model(arch, 0)
    base.save_pretrained(str(root / "base"))
    return arch, root, base, peft_delta_weights(peft_model)  # fp32 products: references good to ~1e-7


def _dense(base, deltas):
    out = {}
    for name, d in deltas.items():
        w = base.get_submodule(name).weight.detach().to(torch.float64)
        out[name] = (
            float(torch.linalg.matrix_norm(d, 2) / torch.linalg.matrix_norm(w, 2)),
            float(torch.linalg.matrix_norm(d) / torch.linalg.matrix_norm(w)),
        )
    return out


def _check(report, ref, rtol):
    assert {la.name for la in report.layers} == set(ref)
    for la in report.layers:
        br = la.base_relative
        assert br.spectral_ratio == pytest.approx(ref[la.name][0], rel=rtol), la.name
        assert br.frob_ratio == pytest.approx(ref[la.name][1], rel=1e-6), la.name


def test_equals_dense_full_model(setup, tmp_path):
    arch, root, base, deltas = setup
    report = audit_adapter(root / "adapter")
    bn.attach_base_norms(report, root / "base", cache_dir=tmp_path)
    _check(report, _dense(base, deltas), 1e-6)
    assert all(la.base_relative.method == "exact" for la in report.layers)
    assert (
        report.base_model.top_layers[0]
        == max(report.layers, key=lambda la: la.base_relative.spectral_ratio).name
    )


def test_power_iteration_path(setup, tmp_path):
    arch, root, base, deltas = setup
    report = audit_adapter(root / "adapter")
    bn.attach_base_norms(report, root / "base", cache_dir=tmp_path, exact_max_dim=0)
    assert all(la.base_relative.method == "power" for la in report.layers)
    _check(report, _dense(base, deltas), 1e-3)  # a lower bound within the stated step tolerance


def test_sharded_bf16_and_unwrapped(setup, tmp_path):
    arch, root, base, deltas = setup
    low = tiny_model(arch, 0).to(torch.bfloat16)
    low.save_pretrained(str(tmp_path / "sharded"), max_shard_size="20KB")
    assert json.loads((tmp_path / "sharded" / "model.safetensors.index.json").read_text())["weight_map"]
    report = audit_adapter(root / "adapter")
    bn.attach_base_norms(report, tmp_path / "sharded", cache_dir=tmp_path)
    _check(report, _dense(low, deltas), 1e-6)
    if arch == "bert":  # BertModel saved alone: keys lack the task wrapper's `bert.` prefix
        base.bert.save_pretrained(str(tmp_path / "bare"))
        report = audit_adapter(root / "adapter")
        bn.attach_base_norms(report, tmp_path / "bare", cache_dir=tmp_path)
        _check(report, _dense(base, deltas), 1e-6)


def test_cache_hit_reads_nothing(setup, tmp_path, monkeypatch):
    _, root, base, deltas = setup
    report = audit_adapter(root / "adapter")
    bn.attach_base_norms(report, root / "base", cache_dir=tmp_path)
    assert len(list((tmp_path / "base_norms").glob("*.json"))) == 1

    def refuse(self, key):
        raise AssertionError(f"read {key} despite the cache")

    monkeypatch.setattr(bn.BaseWeights, "read", refuse)
    again = audit_adapter(root / "adapter")
    bn.attach_base_norms(again, root / "base", cache_dir=tmp_path)
    _check(again, _dense(base, deltas), 1e-6)


def test_wrong_base_is_refused(setup, tmp_path):
    arch, root, _, _ = setup
    other = "llama" if arch != "llama" else "bert"
    tiny_model(other, 0).save_pretrained(str(tmp_path / "other"))
    with pytest.raises(AdapterError, match="no weight for adapted module|not this adapter's base"):
        bn.attach_base_norms(audit_adapter(root / "adapter"), tmp_path / "other", cache_dir=tmp_path)


def test_cli_base_model(setup, tmp_path, monkeypatch):
    _, root, base, deltas = setup
    monkeypatch.setenv("GRADIENCE_CACHE_DIR", str(tmp_path))
    runner = CliRunner()
    res = runner.invoke(app, ["audit", "--peft-dir", str(root / "adapter"), "--base-model", str(root / "base"), "--json", "--layers"])  # fmt: skip
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    ref = _dense(base, deltas)
    for la in out["layers"]:
        assert np.isclose(la["base_relative"]["spectral_ratio"], ref[la["name"]][0], rtol=1e-6)
    assert out["base_model"]["spectral_ratio_max"] == pytest.approx(max(v[0] for v in ref.values()))
    res = runner.invoke(
        app, ["audit", "--peft-dir", str(root / "adapter"), "--base-model", str(tmp_path / "none")]
    )
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "--base-model" in res.stderr
    res = runner.invoke(
        app, ["audit", "--peft-dir", str(root / "adapter"), "--base-model", str(root / "base")]
    )
    assert res.exit_code == 0 and "‖ΔW‖₂/‖W‖₂" in res.stdout
