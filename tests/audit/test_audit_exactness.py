"""The audit against an independent reference: dense SVD of PEFT's own get_delta_weight()."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradience.audit import audit_adapter
from tiny_models import make_adapter, peft_delta_weights

CASES = {
    "bert": dict(arch="bert"),
    "bert_patterns": dict(
        arch="bert",
        r=8,
        rank_pattern={"value": 4, "layer.1.attention.self.query": 2, "intermediate.dense": 6},
        alpha_pattern={"key": 3.0, "output.dense": 40.0},
    ),
    "bert_rslora": dict(arch="bert", r=16, lora_alpha=8, use_rslora=True),
    "bert_dora": dict(arch="bert", use_dora=True, target_modules=["query", "value", "intermediate.dense"]),
    "bert_embedding": dict(arch="bert", target_modules=["word_embeddings", "query"]),
    "distilbert": dict(arch="distilbert"),
    "gpt2_conv1d": dict(arch="gpt2"),
    "llama": dict(arch="llama", r=4),
}


def _energy_rank_bounds(sigma: np.ndarray, t: float, slack: float = 1e-9) -> tuple[int, int]:
    e = sigma**2
    cum, total = np.cumsum(e), e.sum()
    lo = int(np.argmax(cum >= (t - slack) * total)) + 1
    hi = int(np.argmax(cum >= min(1.0, t + slack) * total * (1 - 1e-15))) + 1
    return lo, hi


@pytest.mark.parametrize("case", list(CASES))
def test_spectrum_matches_dense_svd_of_peft_delta(tmp_path, case):
    kw = dict(CASES[case])
    peft_model = make_adapter(tmp_path, **kw)
    report = audit_adapter(tmp_path)
    deltas = peft_delta_weights(peft_model)
    assert {la.name for la in report.layers} == set(deltas)
    lora_modules = {
        p.removeprefix("base_model.model."): m for p, m in peft_model.named_modules() if hasattr(m, "r")
    }
    for la in report.layers:
        ref = torch.linalg.svdvals(deltas[la.name]).numpy()
        mod = lora_modules[la.name]
        assert la.r == mod.r["default"]
        assert la.scale == pytest.approx(mod.scaling["default"], rel=1e-12)
        ours = la.sigma
        assert len(ours) == la.r
        np.testing.assert_allclose(ours, ref[: la.r], rtol=0, atol=1e-6 * ref[0])
        assert np.all(ref[la.r :] <= 1e-5 * ref[0])  # B·A has rank ≤ r
        ref_sr = float((ref**2).sum() / ref[0] ** 2)
        assert la.stable_rank == pytest.approx(ref_sr, rel=1e-6)
        assert la.sigma_max_scaled == pytest.approx(ref[0], rel=1e-6)
        assert la.frob_norm_scaled == pytest.approx(float(np.sqrt((ref**2).sum())), rel=1e-6)
        for t, got in ((0.90, la.energy_rank_90), (0.95, la.energy_rank_95), (0.99, la.energy_rank_99)):
            lo, hi = _energy_rank_bounds(ref[: la.r], t)
            assert lo <= got <= hi, (la.name, t, got, lo, hi)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert report.summary.total_trainable_params == trainable
    if kw.get("use_dora"):
        assert all(la.dora_magnitude is not None and la.dora_magnitude["norm"] > 0 for la in report.layers)


def test_rank_and_alpha_pattern_resolution_matches_peft(tmp_path):
    """`value` hits every …value module; the first matching key in dict order wins; scale follows."""
    peft_model = make_adapter(
        tmp_path,
        arch="bert",
        r=8,
        lora_alpha=16,
        rank_pattern={"value": 2, "self.q": 3, "layer.0.attention.self.query": 4},
        alpha_pattern={"query": 5.0},
    )
    report = {la.name: la for la in audit_adapter(tmp_path).layers}
    for path, mod in peft_model.named_modules():
        if hasattr(mod, "r") and isinstance(mod.r, dict):
            name = path.removeprefix("base_model.model.")
            assert report[name].r == mod.r["default"]
            assert report[name].scale == pytest.approx(mod.scaling["default"])
    assert report["bert.encoder.layer.0.attention.self.value"].r == 2
    assert report["bert.encoder.layer.0.attention.self.query"].r == 4  # "self.q" matches none of …self.query
    assert report["bert.encoder.layer.1.attention.self.query"].r == 8


def test_fp16_adapter_is_audited_in_float64(tmp_path):
    peft_model = make_adapter(tmp_path, arch="llama", save_dtype=torch.float16)
    report = audit_adapter(tmp_path)
    for la in report.layers:
        mod = dict(peft_model.named_modules())["base_model.model." + la.name]
        a = mod.lora_A["default"].weight.detach().double()
        b = mod.lora_B["default"].weight.detach().double()
        ref = torch.linalg.svdvals(b @ a).numpy() * mod.scaling["default"]
        np.testing.assert_allclose(la.sigma, ref[: la.r], rtol=0, atol=1e-9 * ref[0])


def test_live_model_audit_equals_file_audit(tmp_path):
    from gradience.audit import audit_model

    peft_model = make_adapter(tmp_path, arch="distilbert")
    a, b = audit_adapter(tmp_path), audit_model(peft_model)
    by_name = {la.name: la for la in b.layers}
    for la in a.layers:
        lb = by_name[la.name]
        assert (la.r, la.params, la.energy_rank_90) == (lb.r, lb.params, lb.energy_rank_90)
        np.testing.assert_allclose(la.sigma, lb.sigma, rtol=1e-12)
    assert a.summary.total_trainable_params == b.summary.total_trainable_params
    assert a.summary.stable_rank_mean == pytest.approx(b.summary.stable_rank_mean, rel=1e-12)
    assert a.suggestions == b.suggestions
