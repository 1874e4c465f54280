"""merge-audit against dense references: principal angles from dense SVDs, cosines from dense
inner products of PEFT's own get_delta_weight, on tiny BERT, GPT-2 and Llama adapters that differ
in rank, scale (rsLoRA), rank_pattern and module set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from merge_helpers import dense_deltas, make_pair, principal_cosines
from typer.testing import CliRunner

from gradience.cli import app
from gradience.merge import Thresholds, merge_audit, verdict

runner = CliRunner()


@pytest.fixture(scope="module", params=["bert", "gpt2", "llama"])
def pair(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"pair_{request.param}")
    a, b = make_pair(root, request.param)
    return request.param, a, b


def test_angles_and_cosines_equal_dense(pair):
    arch, a, b = pair
    report = merge_audit(a, b, top_k=64)
    da, db = dense_deltas(arch, a), dense_deltas(arch, b)
    shared = [n for n in da if n in db]
    assert sorted(la.name for la in report.layers) == sorted(shared)
    assert sorted(report.summary.only_in_a) == sorted(n for n in da if n not in db) != []
    for la in report.layers:
        x, y = da[la.name], db[la.name]
        assert np.allclose(la.col_cosines, principal_cosines(x, y), atol=1e-6, rtol=0)
        assert np.allclose(la.row_cosines, principal_cosines(x.T, y.T), atol=1e-6, rtol=0)
        cos = float((x * y).sum() / (np.linalg.norm(x) * np.linalg.norm(y)))
        assert abs(la.cosine - cos) <= 1e-6
        assert abs(la.norm_ratio - np.linalg.norm(y) / np.linalg.norm(x)) <= 1e-6 * la.norm_ratio
        assert abs(la.inner_product - float((x * y).sum())) <= 1e-6 * np.linalg.norm(x) * np.linalg.norm(y)
    ga = sum(float((da[n] * db[n]).sum()) for n in shared)
    na = sum(float((da[n] ** 2).sum()) for n in shared) ** 0.5
    nb = sum(float((db[n] ** 2).sum()) for n in shared) ** 0.5
    assert abs(report.summary.global_cosine - ga / (na * nb)) <= 1e-6


def test_self_is_aligned_and_negation_conflicts(pair, tmp_path):
    from safetensors.torch import load_file, save_file

    _, a, _ = pair
    same = merge_audit(a, a)
    assert all(la.verdict == "aligned" and abs(la.cosine - 1) < 1e-9 for la in same.layers)
    assert all(np.allclose(la.col_cosines, 1.0, atol=1e-6) for la in same.layers)
    neg = tmp_path / "neg"
    neg.mkdir()
    (neg / "adapter_config.json").write_bytes((a / "adapter_config.json").read_bytes())
    sd = load_file(str(a / "adapter_model.safetensors"))
    save_file({k: -v if "lora_B" in k else v for k, v in sd.items()}, str(neg / "adapter_model.safetensors"))
    opposite = merge_audit(a, neg)
    assert all(la.verdict == "conflicting" for la in opposite.layers)
    assert opposite.summary.conflicting_energy_share == pytest.approx(1.0)


def test_verdict_thresholds():
    th = Thresholds(cosine=0.2)
    assert [verdict(c, th) for c in (0.2, 0.19, -0.19, -0.2, None)] == [
        "aligned", "orthogonal", "orthogonal", "conflicting", "empty"
    ]  # fmt: skip


def test_cli_writes_report_and_json(pair, tmp_path):
    _, a, b = pair
    out = tmp_path / "audit"
    res = runner.invoke(app, ["merge-audit", str(a), str(b), "--out", str(out), "--json", "--top-k", "2"])
    assert res.exit_code == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["schema"] == "gradience.merge_audit/v1"
    assert all(len(la["col_cosines"]) <= 2 for la in data["layers"])
    assert json.loads((out / "merge_audit.json").read_text()) == data
    md = (out / "merge_audit.md").read_text()
    assert md.startswith("# Merge audit") and "aligned c ≥ 0.1" in md


def _bad(res, *fragments: str) -> None:
    assert res.exit_code == 2, (res.exit_code, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.stderr
    for frag in fragments:
        assert frag in lines[0], lines[0]


def _copy(src: Path, dst: Path, **config) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((dst / "adapter_config.json").read_text()) | config
    (dst / "adapter_config.json").write_text(json.dumps(cfg))
    return dst


def test_bad_input_is_one_line(pair, tmp_path):
    arch, a, b = pair
    other = _copy(b, tmp_path / "other_base", base_model_name_or_path="some/other-model")
    named = _copy(a, tmp_path / "named", base_model_name_or_path="tiny/base")
    _bad(runner.invoke(app, ["merge-audit", str(named), str(other)]), "different base models")
    _bad(runner.invoke(app, ["merge-audit", str(a), str(tmp_path / "nope")]), "not found")
    _bad(runner.invoke(app, ["merge-audit", str(a), str(b), "--cos-threshold", "1.5"]), "thresholds")
    if arch == "bert":  # another model's shapes under the same module names
        from tiny_models import make_adapter

        wide = tmp_path / "wide"
        make_adapter(wide, "llama", seed=0)
        llama_a = tmp_path / "llama_a"
        make_adapter(llama_a, "llama", seed=0, target_modules=["q_proj", "k_proj"])
        bigger = tmp_path / "bigger"
        _reshape_copy(llama_a, bigger)
        _bad(runner.invoke(app, ["merge-audit", str(llama_a), str(bigger)]), "different base models")
        _bad(runner.invoke(app, ["merge-audit", str(a), str(wide)]), "no module in common")


def _reshape_copy(src: Path, dst: Path) -> None:
    """The same module names with other widths: an adapter of a different base model."""
    import torch
    from safetensors.torch import load_file, save_file

    dst.mkdir()
    (dst / "adapter_config.json").write_bytes((src / "adapter_config.json").read_bytes())
    sd = load_file(str(src / "adapter_model.safetensors"))
    out = {k: (torch.randn(v.shape[0], 2 * v.shape[1]) if "lora_A" in k else v) for k, v in sd.items()}
    save_file(out, str(dst / "adapter_model.safetensors"))
