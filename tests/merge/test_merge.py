"""merge outputs load with PeftModel.from_pretrained and their deltas equal dense references:
the weighted sum (linear), its best rank-k approximation (svd), and loop re-implementations of
TIES and DARE with the same seed; heads and bad input are refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from merge_helpers import best_rank_k, dare_reference, dense_deltas, make_pair, rel, ties_reference
from typer.testing import CliRunner

from gradience.cli import app
from tiny_models import make_adapter

runner = CliRunner()


@pytest.fixture(scope="module", params=["bert", "gpt2", "llama"])
def pair(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"merge_{request.param}")
    a, b = make_pair(root, request.param)
    return request.param, a, b, dense_deltas(request.param, a), dense_deltas(request.param, b)


def merge(*args: str):
    return runner.invoke(app, ["merge", *map(str, args)])


def _weighted(da, db, wa, wb) -> dict[str, np.ndarray]:
    names = list(dict.fromkeys([*da, *db]))
    zero = {n: np.zeros_like(da.get(n, db.get(n))) for n in names}
    return {n: wa * da.get(n, zero[n]) + wb * db.get(n, zero[n]) for n in names}


def test_linear_is_the_weighted_sum(pair, tmp_path):
    arch, a, b, da, db = pair
    res = merge(
        a, b, "--out", tmp_path / "m", "--method", "linear", "--weights", "0.7,0.4", "--allow-missing"
    )
    assert res.exit_code == 0, res.stderr
    got = dense_deltas(arch, tmp_path / "m")
    ref = _weighted(da, db, 0.7, 0.4)
    assert set(got) == set(ref)
    for name, d in ref.items():
        assert rel(got[name], d) <= 1e-5, name
    cfg = json.loads((tmp_path / "m" / "adapter_config.json").read_text())
    assert cfg["use_rslora"] is False and (cfg["rank_pattern"] or cfg["r"] == 12)


def test_svd_is_the_best_rank_k_of_the_sum(pair, tmp_path):
    arch, a, b, da, db = pair
    res = merge(a, b, "--out", tmp_path / "m", "--method", "svd", "--rank", "5", "--allow-missing", "--json")
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    got = dense_deltas(arch, tmp_path / "m")
    for name, d in _weighted(da, db, 0.5, 0.5).items():
        ref = best_rank_k(d, 5)
        assert rel(got[name], ref) <= 1e-5, name
        s = np.linalg.svd(d, compute_uv=False)
        row = next(la for la in report["layers"] if la["name"] == name)
        assert row["rank"] == 5
        assert row["retained_energy"] == pytest.approx(float((s[:5] ** 2).sum() / (s**2).sum()), rel=1e-9)


def test_svd_energy_picks_the_dense_energy_rank(pair, tmp_path):
    arch, a, b, da, db = pair
    res = merge(
        a, b, "--out", tmp_path / "m", "--method", "svd", "--energy", "0.8", "--allow-missing", "--json"
    )
    assert res.exit_code == 0, res.stderr
    got = dense_deltas(arch, tmp_path / "m")
    for name, d in _weighted(da, db, 0.5, 0.5).items():
        s = np.linalg.svd(d, compute_uv=False)
        k = int(np.searchsorted(np.cumsum(s**2) / (s**2).sum(), 0.8)) + 1
        assert rel(got[name], best_rank_k(d, k)) <= 1e-5, name


@pytest.mark.parametrize("method", ["ties", "dare"])
def test_ties_and_dare_match_dense_reimplementation(pair, tmp_path, method):
    arch, a, b, da, db = pair
    res = merge(a, b, "--out", tmp_path / "m", "--method", method, "--weights", "0.6,0.9", "--density", "0.3",
                "--seed", "11", "--allow-missing", "--json")  # fmt: skip
    assert res.exit_code == 0, res.stderr
    order = [la["name"] for la in json.loads(res.stdout)["layers"]]
    got = dense_deltas(arch, tmp_path / "m")
    for j, name in enumerate(order):
        present = [(i, w, d[name]) for i, (w, d) in enumerate([(0.6, da), (0.9, db)]) if name in d]
        if method == "ties":
            ref = ties_reference([d for _, _, d in present], [w for _, w, _ in present], 0.3)
        else:  # missing inputs draw no mask but keep their stream ids
            full = [d for _, _, d in present] if len(present) == 2 else None
            if full is None:
                i, w, d = present[0]
                ref = w * d * (np.random.default_rng([11, j, i]).random(d.shape) < 0.3) / 0.3
            else:
                ref = dare_reference(full, [0.6, 0.9], 0.3, 11, j)
        assert rel(got[name], ref) <= 1e-5, (method, name)


def test_three_inputs_and_weights_as_given(pair, tmp_path):
    arch, a, _, da, _ = pair
    res = merge(a, a, a, "--out", tmp_path / "m", "--method", "svd", "--weights", "1,1,-1")
    assert res.exit_code == 0, res.stderr
    got = dense_deltas(arch, tmp_path / "m")
    for name, d in da.items():
        assert rel(got[name], d) <= 1e-5, name  # 1 + 1 − 1 = the update itself, at its own rank


def test_heads_conflict_unless_head_from(tmp_path):
    from safetensors.torch import load_file

    a, b = tmp_path / "a", tmp_path / "b"
    make_adapter(a, "bert", seed=0)
    make_adapter(b, "bert", seed=3)  # another classifier head
    res = merge(a, b, "--out", tmp_path / "m", "--method", "linear")
    _bad(res, "differs between", "--head-from")
    res = merge(a, b, "--out", tmp_path / "m", "--method", "linear", "--head-from", "B")
    assert res.exit_code == 0, res.stderr
    got = load_file(str(tmp_path / "m" / "adapter_model.safetensors"))
    want = load_file(str(b / "adapter_model.safetensors"))
    for key in ("base_model.model.classifier.weight", "base_model.model.classifier.bias"):
        assert np.array_equal(got[key].numpy(), want[key].numpy())


def _bad(res, *fragments: str) -> None:
    assert res.exit_code == 2, (res.exit_code, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.stderr
    for frag in fragments:
        assert frag in lines[0], lines[0]


def test_bad_input_is_one_line(pair, tmp_path):
    _, a, b, _, _ = pair
    out = tmp_path / "m"
    _bad(merge(a, b, "--out", out, "--method", "svd"), "is not adapted by", "--allow-missing")
    _bad(merge(a, a, "--out", out, "--method", "mean"), "unknown merge method")
    _bad(merge(a, a, "--out", out, "--method", "svd", "--weights", "0.5,-0.5"), "positive sum")
    _bad(merge(a, a, "--out", out, "--method", "svd", "--weights", "0.5"), "2 adapters")
    _bad(merge(a, a, "--out", out, "--method", "svd", "--weights", "a,b"), "numbers")
    _bad(merge(a, a, "--out", out, "--method", "linear", "--rank", "4"), "without loss")
    _bad(merge(a, a, "--out", out, "--method", "svd", "--rank", "4", "--energy", "0.9"), "at most one")
    _bad(merge(a, a, "--out", out, "--method", "svd", "--density", "0.5"), "ties and dare")
    _bad(merge(a, "--out", out, "--method", "svd"), "at least two")
    _bad(merge(a, a, "--out", out, "--method", "svd", "--head-from", "Z"), "names none")
    _bad(merge(a, a, "--out", a, "--method", "svd"), str(a))
    cfg = json.loads((b / "adapter_config.json").read_text())
    other = tmp_path / "other"
    other.mkdir()
    (other / "adapter_model.safetensors").write_bytes((b / "adapter_model.safetensors").read_bytes())
    (other / "adapter_config.json").write_text(json.dumps(cfg | {"base_model_name_or_path": "x/y"}))
    named = tmp_path / "named"
    named.mkdir()
    (named / "adapter_model.safetensors").write_bytes((a / "adapter_model.safetensors").read_bytes())
    (named / "adapter_config.json").write_text(json.dumps(cfg | {"base_model_name_or_path": "x/z"} | {
        k: v for k, v in json.loads((a / "adapter_config.json").read_text()).items() if k != "base_model_name_or_path"
    }))  # fmt: skip
    _bad(merge(named, other, "--out", out, "--method", "svd", "--allow-missing"), "different base models")
    assert not out.exists()
