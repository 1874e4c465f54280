"""Audit acceptance points checked through the CLI against independent references: PEFT's own
loading and get_delta_weight, dense numpy SVDs, and aggregates recomputed with numpy.

Covers: --adapter-config / --weights elsewhere, rank_deficient / NaN / zero-B issues with and
without --strict, adapters saved under a non-default adapter name, aggregate values and the
snap-up rank suggestions (incl. --per-layer-margin), and `gradience --version`."""

from __future__ import annotations

import importlib.metadata
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from gradience.cli import app
from tiny_models import make_adapter, peft_delta_weights, spread_spectra, tiny_model

runner = CliRunner()
R = 8


def audit(*args: str):
    return runner.invoke(app, ["audit", *args])


def audit_json(*args: str) -> dict:
    res = audit(*args, "--json")
    assert res.exit_code == 0, (res.exit_code, res.stdout, res.stderr)
    return json.loads(res.stdout)


def dense_spectra(peft_model, adapter: str = "default") -> dict[str, np.ndarray]:
    """σ of PEFT's own get_delta_weight (s·B·A), float64, by a dense SVD."""
    return {n: torch.linalg.svdvals(d).numpy() for n, d in peft_delta_weights(peft_model, adapter).items()}


def assert_spectra_match(out: dict, ref: dict[str, np.ndarray]) -> None:
    rows = {la["name"]: la for la in out["layers"]}
    assert set(rows) == set(ref)
    for name, s in ref.items():
        got = np.asarray(rows[name]["top_singular_values"])
        r = rows[name]["r"]
        assert len(got) == r
        np.testing.assert_allclose(got, s[:r], rtol=0, atol=1e-6 * s[0], err_msg=name)
        assert rows[name]["stable_rank"] == pytest.approx(float((s**2).sum() / s[0] ** 2), rel=1e-6)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# --- 1. --adapter-config and --weights in other places / names ---------------------------------


@pytest.fixture(scope="module")
def two_adapters(tmp_path_factory):
    """Adapter A (seed 0, alpha 16) in its own folder with default names; adapter B (seed 3,
    alpha 32, same shapes) whose config and weights are moved to other folders and names."""
    root = tmp_path_factory.mktemp("elsewhere")
    model_a = make_adapter(root / "a", arch="bert", seed=0, r=R, lora_alpha=16)
    model_b = make_adapter(root / "b_saved", arch="bert", seed=3, r=R, lora_alpha=32)
    (root / "cfgs").mkdir()
    (root / "w").mkdir()
    shutil.move(root / "b_saved" / "adapter_config.json", root / "cfgs" / "my_lora.json")
    shutil.move(root / "b_saved" / "adapter_model.safetensors", root / "w" / "finetuned.safetensors")
    torch.save(load_file(root / "w" / "finetuned.safetensors"), root / "w" / "finetuned_weights.bin")
    return root, model_a, model_b


def test_adapter_config_and_weights_elsewhere_are_the_ones_audited(two_adapters):
    root, model_a, model_b = two_adapters
    cfg, w = root / "cfgs" / "my_lora.json", root / "w" / "finetuned.safetensors"
    args = ("--layers", "--top-singular-values", str(R))
    # the folder holds adapter A's default files: the explicit paths must win over them
    out = audit_json("--peft-dir", str(root / "a"), "--adapter-config", str(cfg), "--weights", str(w), *args)
    assert_spectra_match(out, dense_spectra(model_b))
    assert all(la["scale"] == pytest.approx(32 / R) for la in out["layers"])
    assert out["adapter"]["lora_alpha"] == 32 and out["adapter"]["weights"] == "finetuned.safetensors"
    # a folder with no files of its own works as well
    (root / "empty").mkdir(exist_ok=True)
    out2 = audit_json(
        "--peft-dir", str(root / "empty"), "--adapter-config", str(cfg), "--weights", str(w), *args
    )
    assert out2["summary"] == out["summary"]
    # a .bin under another name is read through the same path
    out3 = audit_json(
        "--peft-dir", str(root / "empty"), "--adapter-config", str(cfg),
        "--weights", str(root / "w" / "finetuned_weights.bin"), *args,
    )  # fmt: skip
    assert_spectra_match(out3, dense_spectra(model_b))
    # without the flags the folder's own adapter A is audited
    assert_spectra_match(audit_json("--peft-dir", str(root / "a"), *args), dense_spectra(model_a))


def test_weights_flag_alone_uses_the_folder_config(two_adapters, tmp_path):
    """B's weights with A's config (alpha 16): PEFT itself, loading that combination, is the reference."""
    from peft import PeftModel

    root, _, _ = two_adapters
    w = root / "w" / "finetuned.safetensors"
    out = audit_json(
        "--peft-dir", str(root / "a"), "--weights", str(w), "--layers", "--top-singular-values", "8"
    )
    combo = tmp_path / "combo"
    combo.mkdir()
    shutil.copy(root / "a" / "adapter_config.json", combo / "adapter_config.json")
    shutil.copy(w, combo / "adapter_model.safetensors")
    ref = PeftModel.from_pretrained(tiny_model("bert", 0), str(combo)).double()
    assert_spectra_match(out, dense_spectra(ref))
    assert all(la["scale"] == pytest.approx(16 / R) for la in out["layers"])


def test_adapter_config_flag_alone_with_default_weights(two_adapters, tmp_path):
    root, _, model_b = two_adapters
    d = tmp_path / "weights_only"
    d.mkdir()
    shutil.copy(root / "w" / "finetuned.safetensors", d / "adapter_model.safetensors")
    cfg = root / "cfgs" / "my_lora.json"
    out = audit_json(
        "--peft-dir", str(d), "--adapter-config", str(cfg), "--layers", "--top-singular-values", "8"
    )
    assert_spectra_match(out, dense_spectra(model_b))
    # and the folder alone has no config: one line, exit 2
    res = audit("--peft-dir", str(d))
    assert res.exit_code == 2 and "adapter_config.json" in res.stderr
    res = audit("--peft-dir", str(d), "--adapter-config", str(tmp_path / "nope.json"))
    assert res.exit_code == 2 and "nope.json" in res.stderr and "Traceback" not in res.stderr


# --- 2. issues: rank deficiency, NaN alone, all-zero B alone ------------------------------------


@pytest.fixture(scope="module")
def plain_adapter(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("plain")
    make_adapter(d, arch="bert", r=R)
    return d


def _edit(src: Path, dst: Path, fn) -> tuple[Path, str]:
    """Copy the adapter and apply fn to the first layer's (A, B); returns the layer name."""
    d = _copy(src, dst)
    sd = load_file(d / "adapter_model.safetensors")
    a_key = sorted(k for k in sd if k.endswith("lora_A.weight"))[0]
    b_key = a_key.replace("lora_A", "lora_B")
    sd[a_key], sd[b_key] = fn(sd[a_key].clone(), sd[b_key].clone())
    save_file(sd, str(d / "adapter_model.safetensors"))
    name = a_key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
    return d, name


def _codes(out: dict) -> set[tuple[str, str]]:
    return {(i["code"], i["layer"]) for i in out["issues"]}


def test_plain_adapter_has_no_issues(plain_adapter):
    assert audit_json("--peft-dir", str(plain_adapter))["issues"] == []
    assert audit("--peft-dir", str(plain_adapter), "--strict").exit_code == 0


def test_rank_deficient_is_an_issue_exit_0_and_1_with_strict(plain_adapter, tmp_path):
    def dup_rows(a, b):
        a[R // 2 :] = a[: R // 2]  # A has rank r/2; B stays random and non-zero
        return a, b

    d, name = _edit(plain_adapter, tmp_path / "rd", dup_rows)
    sd = load_file(d / "adapter_model.safetensors")
    key = f"base_model.model.{name}"
    a = sd[f"{key}.lora_A.weight"].double().numpy()
    b = sd[f"{key}.lora_B.weight"].double().numpy()
    assert np.abs(b).max() > 0
    dense = b @ a
    s = np.linalg.svd(dense, compute_uv=False)
    ref_rank = int(np.linalg.matrix_rank(dense, tol=1e-5 * s[0]))
    assert ref_rank == R // 2
    out = audit_json("--peft-dir", str(d), "--layers")
    assert _codes(out) == {("rank_deficient", name)}
    row = next(la for la in out["layers"] if la["name"] == name)
    assert row["numerical_rank"] == ref_rank
    assert row["energy_rank_99"] <= ref_rank
    res = audit("--peft-dir", str(d))
    assert res.exit_code == 0, res.stderr
    assert audit("--peft-dir", str(d), "--strict").exit_code == 1


def test_nan_alone_exit_1_with_strict(plain_adapter, tmp_path):
    def nan(a, b):
        a[1, 2] = float("nan")
        return a, b

    d, name = _edit(plain_adapter, tmp_path / "nan", nan)
    out = audit_json("--peft-dir", str(d))
    assert _codes(out) == {("non_finite", name)}
    assert audit("--peft-dir", str(d)).exit_code == 0
    assert audit("--peft-dir", str(d), "--strict").exit_code == 1


def test_zero_b_alone_exit_1_with_strict(plain_adapter, tmp_path):
    d, name = _edit(plain_adapter, tmp_path / "zero_b", lambda a, b: (a, torch.zeros_like(b)))
    out = audit_json("--peft-dir", str(d), "--layers")
    assert _codes(out) == {("untrained_lora_B", name)}  # not also rank_deficient
    row = next(la for la in out["layers"] if la["name"] == name)
    assert row["stable_rank"] == 0 and row["utilization"] == 0 and row["energy_rank_90"] == 0
    assert audit("--peft-dir", str(d)).exit_code == 0
    assert audit("--peft-dir", str(d), "--strict").exit_code == 1


# --- 3. an adapter saved under a non-default adapter name ---------------------------------------


@pytest.fixture(scope="module")
def named(tmp_path_factory):
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("named")
    torch.manual_seed(11)
    cfg = LoraConfig(
        r=4, lora_alpha=12, target_modules=["query", "value", "intermediate.dense"],
        init_lora_weights=False, task_type="SEQ_CLS",
    )  # fmt: skip
    pm = get_peft_model(tiny_model("bert", 0), cfg, adapter_name="other")
    pm.save_pretrained(str(root))
    return root, pm


def test_named_adapter_as_peft_saves_it(named):
    """PEFT writes a non-default adapter to <dir>/<name>/ with the name stripped from the keys."""
    root, pm = named
    sub = root / "other"
    assert (sub / "adapter_config.json").is_file() and (sub / "adapter_model.safetensors").is_file()
    assert not (root / "adapter_config.json").exists()
    keys = list(load_file(sub / "adapter_model.safetensors"))
    assert keys and not any(".other." in k for k in keys)
    out = audit_json("--peft-dir", str(sub), "--layers", "--top-singular-values", "4")
    assert_spectra_match(out, dense_spectra(pm, "other"))
    assert out["summary"]["n_layers"] == 6
    # the parent folder is not an adapter folder: exit 2, one line
    res = audit("--peft-dir", str(root))
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1
    assert f"pass --peft-dir {sub}" in res.stderr  # the error points at the subfolder PEFT wrote


def test_named_adapter_keys_with_the_name_in_them(named, tmp_path):
    """Keys `…lora_A.other.weight` (the live model's state_dict) are paired like PEFT's files."""
    root, pm = named
    sd = {k: v.detach().clone() for k, v in pm.state_dict().items() if ".lora_" in k}
    assert sd and all(".other.weight" in k for k in sd)
    save_file(sd, str(tmp_path / "live_state.safetensors"))
    out = audit_json(
        "--peft-dir", str(root / "other"), "--weights", str(tmp_path / "live_state.safetensors"),
        "--layers", "--top-singular-values", "4",
    )  # fmt: skip
    assert_spectra_match(out, dense_spectra(pm, "other"))


# --- 4. aggregate values and the rank suggestions -----------------------------------------------

PATTERN = {"value": 4, "intermediate.dense": 6}


@pytest.fixture(scope="module")
def varied(tmp_path_factory):
    """A BERT adapter with mixed ranks and spectra decaying at a different rate in every layer,
    so energy_rank_90 spreads over several values. The in-memory PEFT model is the reference."""
    d = tmp_path_factory.mktemp("varied")
    pm = make_adapter(d, arch="bert", r=R, rank_pattern=PATTERN)
    spread_spectra(pm)
    pm.save_pretrained(str(d))
    return d, pm


def snap(value: float, allowed: list[int], cap: int) -> int:
    """SPEC's one rule: round up to the next allowed rank (≥ value), then cap at r."""
    need = max(1, math.ceil(value))
    return min(next((a for a in sorted(allowed) if a >= need), cap), cap)


def _ref_layer(s: np.ndarray, r: int) -> dict[str, float]:
    s = s[:r]
    e = s**2
    p = s / s.sum()
    return {
        "stable_rank": float(e.sum() / e[0]),
        "effective_rank": float(np.exp(-(p * np.log(p)).sum())),
        "utilization": float(e.sum() / e[0] / r),
        "energy_rank_90": int(np.argmax(np.cumsum(e) >= 0.9 * e.sum())) + 1,
    }


def _bert_type(name: str) -> str:
    return "attn" if ".attention." in name else "mlp"


def test_per_layer_rows_match_dense_svd(varied):
    d, pm = varied
    out = audit_json("--peft-dir", str(d), "--layers")
    ref = dense_spectra(pm)
    sd = load_file(d / "adapter_model.safetensors")
    ers = set()
    for la in out["layers"]:
        exp = _ref_layer(ref[la["name"]], la["r"])
        for key in ("stable_rank", "effective_rank", "utilization"):
            assert la[key] == pytest.approx(exp[key], rel=1e-6), (la["name"], key)
        assert la["energy_rank_90"] == exp["energy_rank_90"]
        key = f"base_model.model.{la['name']}"
        assert la["params"] == sd[f"{key}.lora_A.weight"].numel() + sd[f"{key}.lora_B.weight"].numel()
        assert la["module_type"] == _bert_type(la["name"])
        ers.add(la["energy_rank_90"])
    assert len(ers) >= 3  # the fixture really spreads energy ranks


def _aggregates(rows: list[dict]) -> dict[str, float]:
    sr = np.array([la["stable_rank"] for la in rows])
    params = np.array([la["params"] for la in rows], dtype=float)
    er90 = np.array([la["energy_rank_90"] for la in rows], dtype=float)
    return {
        "n_layers": len(rows),
        "stable_rank_mean": float(np.mean(sr)),
        "effective_rank_mean": float(np.mean([la["effective_rank"] for la in rows])),
        "utilization_mean": float(np.mean([la["utilization"] for la in rows])),
        "energy_rank_90_p50": float(np.percentile(er90, 50)),
        "energy_rank_90_p90": float(np.percentile(er90, 90)),
        "stable_rank_median": float(np.median(sr)),
        "stable_rank_weighted_mean": float((sr * params).sum() / params.sum()),
        "lora_params": int(params.sum()),
    }


def test_aggregates_equal_numpy_over_the_rows(varied):
    d, _ = varied
    out = audit_json("--peft-dir", str(d), "--layers")
    rows, summary = out["layers"], out["summary"]
    exp = _aggregates(rows)
    assert summary["n_layers"] == exp["n_layers"] == 12
    assert summary["total_lora_params"] == exp["lora_params"]
    for key in ("stable_rank_mean", "stable_rank_median", "stable_rank_weighted_mean", "effective_rank_mean",
                "utilization_mean", "energy_rank_90_p50", "energy_rank_90_p90"):  # fmt: skip
        assert summary[key] == pytest.approx(exp[key], rel=1e-12, abs=1e-12), key
    assert summary["stable_rank_weighted_mean"] != pytest.approx(summary["stable_rank_mean"], rel=1e-6)
    by_type = summary["by_type"]
    assert set(by_type) == {"attn", "mlp"}
    for kind, ts in by_type.items():
        members = [la for la in rows if _bert_type(la["name"]) == kind]
        te = _aggregates(members)
        assert ts["n_layers"] == te["n_layers"] == (8 if kind == "attn" else 4)
        assert ts["lora_params"] == te["lora_params"]
        for key in ("stable_rank_mean", "effective_rank_mean", "utilization_mean", "energy_rank_90_p50",
                    "energy_rank_90_p90"):  # fmt: skip
            assert ts[key] == pytest.approx(te[key], rel=1e-12, abs=1e-12), (kind, key)


def _uniform_params(rows: list[dict], k: int) -> int:
    return sum(min(k, la["r"]) * (la["in_features"] + la["out_features"]) for la in rows)


@pytest.mark.parametrize("allowed", [None, [3, 5]])
def test_uniform_suggestions_snap_up_the_percentiles(varied, allowed):
    d, _ = varied
    extra = ("--allowed-ranks", ",".join(map(str, allowed))) if allowed else ()
    out = audit_json("--peft-dir", str(d), "--layers", *extra)
    rows, sg = out["layers"], out["suggestions"]
    er90 = np.array([la["energy_rank_90"] for la in rows], dtype=float)
    cap = max(la["r"] for la in rows)
    allowed_ref = allowed or [1, 2, 4, 8]
    assert sg["allowed_ranks"] == allowed_ref
    for rule, q in (("uniform_median", 50), ("uniform_p90", 90)):
        k = snap(float(np.percentile(er90, q)), allowed_ref, cap)
        assert sg[rule]["rank"] == k, (rule, float(np.percentile(er90, q)))
        params = _uniform_params(rows, k)
        assert sg[rule]["lora_params"] == params
        total = sum(la["params"] for la in rows)
        assert sg[rule]["lora_reduction"] == pytest.approx(1 - params / total, rel=1e-12)
    pattern = sg["per_layer"]["rank_pattern"]
    assert pattern == {la["name"]: snap(la["energy_rank_90"], allowed_ref, la["r"]) for la in rows}


def test_per_layer_margin_scales_energy_rank_before_snapping(varied):
    d, _ = varied
    base = audit_json("--peft-dir", str(d), "--layers")
    out = audit_json("--peft-dir", str(d), "--layers", "--per-layer-margin", "1.5")
    rows = out["layers"]
    pattern = out["suggestions"]["per_layer"]["rank_pattern"]
    exp = {la["name"]: snap(la["energy_rank_90"] * 1.5, [1, 2, 4, 8], la["r"]) for la in rows}
    assert pattern == exp
    assert out["suggestions"]["per_layer_margin"] == 1.5
    assert pattern != base["suggestions"]["per_layer"]["rank_pattern"]  # the margin had an effect
    assert out["suggestions"]["per_layer"]["lora_params"] == sum(
        exp[la["name"]] * (la["in_features"] + la["out_features"]) for la in rows
    )
    # the uniform suggestions do not depend on the margin
    for rule in ("uniform_median", "uniform_p90"):
        assert out["suggestions"][rule]["rank"] == base["suggestions"][rule]["rank"]


# --- 5. version --------------------------------------------------------------------------------


def test_version_flag_is_the_installed_distribution_version(tmp_path):
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == importlib.metadata.version("gradience")
    make_adapter(tmp_path, arch="bert", r=2, target_modules=["query"])
    assert audit_json("--peft-dir", str(tmp_path))["gradience_version"] == importlib.metadata.version(
        "gradience"
    )
