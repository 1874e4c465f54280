"""Rank decisions of every strategy, checked against dense SVDs of PEFT's deltas, and the
output config's exact-scale / pattern-key rules checked against PEFT's own resolver."""

from __future__ import annotations

import math

import pytest
import torch
from compress_helpers import lora_modules

from gradience.audit import alpha_for_scale as exact_alpha
from gradience.audit import audit_adapter
from gradience.audit import lora_scale as peft_scale
from gradience.compress import CompressError, CompressionPlan, compress_adapter
from gradience.compress.peft_config import pattern_keys
from tiny_models import make_adapter, peft_delta_weights


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    path = tmp_path_factory.mktemp("bert")
    model = make_adapter(path, arch="bert", r=8)
    sigma = {n: torch.linalg.svdvals(d).numpy()[:8] for n, d in peft_delta_weights(model).items()}
    return path, sigma


def _ranks(report) -> dict[str, int]:
    return {la.name: la.new_rank for la in report.layers}


def test_energy_is_smallest_rank_keeping_fraction(bert, tmp_path):
    path, sigma = bert
    report = compress_adapter(path, tmp_path / "o", CompressionPlan(energy=0.8))
    for name, k in _ranks(report).items():
        e = sigma[name] ** 2
        assert e[:k].sum() >= 0.8 * e.sum() * (1 - 1e-9)
        assert k == 1 or e[: k - 1].sum() < 0.8 * e.sum()
    row = report.layers[0]
    e = sigma[row.name] ** 2
    assert row.retained_energy == pytest.approx(e[: row.new_rank].sum() / e.sum(), rel=1e-6)
    assert row.frob_error == pytest.approx(math.sqrt(e[row.new_rank :].sum()), rel=1e-6)


def test_energy_with_allowed_ranks_rounds_up(bert, tmp_path):
    path, sigma = bert
    plain = _ranks(compress_adapter(path, tmp_path / "a", CompressionPlan(energy=0.8)))
    snapped = _ranks(
        compress_adapter(path, tmp_path / "b", CompressionPlan(energy=0.8, allowed_ranks=[2, 4]))
    )
    for name, k in plain.items():
        assert snapped[name] == (2 if k <= 2 else 4 if k <= 4 else 8)  # no allowed rank ≥ k → cap at r


def test_budget_params_is_met_and_filled(bert, tmp_path):
    path, _ = bert
    report = compress_adapter(path, tmp_path / "o", CompressionPlan(budget_ratio=0.4))
    t = report.totals
    assert t.lora_params_after <= int(0.4 * t.lora_params_before)
    widest = max(la.old_params // la.old_rank for la in report.layers)  # in + out of the widest layer
    assert t.lora_params_after > int(0.4 * t.lora_params_before) - widest
    same = compress_adapter(path, tmp_path / "p", CompressionPlan(budget_params=t.lora_params_after))
    assert _ranks(same) == _ranks(report)


def test_budget_keeps_the_largest_singular_values_globally(bert, tmp_path):
    path, sigma = bert
    report = compress_adapter(path, tmp_path / "o", CompressionPlan(budget_ratio=0.5))
    ranks = _ranks(report)
    cost = {la.name: la.old_params // la.old_rank for la in report.layers}  # in + out
    budget = int(0.5 * report.totals.lora_params_before)
    # reference from the dense spectra: every layer keeps σ_1, then the globally largest σ² are
    # taken in order while they fit; the allocator must keep at least this prefix
    used = sum(cost.values())
    must = {name: 1 for name in sigma}
    for _, name, i in sorted((-(sigma[n][i] ** 2), n, i) for n in sigma for i in range(1, 8)):
        if used + cost[name] > budget:
            break
        used += cost[name]
        must[name] = i + 1
    assert all(ranks[n] >= must[n] for n in sigma)
    kept = sum(float((sigma[n][: ranks[n]] ** 2).sum()) for n in sigma)
    total = sum(float((sigma[n] ** 2).sum()) for n in sigma)
    assert report.totals.retained_energy == pytest.approx(kept / total, rel=1e-6)


def test_budget_with_allowed_ranks_uses_only_those_ranks(bert, tmp_path):
    path, _ = bert
    report = compress_adapter(path, tmp_path / "o", CompressionPlan(budget_ratio=0.45, allowed_ranks=[2, 4]))
    assert set(_ranks(report).values()) <= {2, 4, 8}
    assert report.totals.lora_params_after <= int(0.45 * report.totals.lora_params_before)


def test_budget_below_the_smallest_adapter_is_refused(bert, tmp_path):
    path, _ = bert
    with pytest.raises(CompressError, match="below the smallest possible adapter"):
        compress_adapter(path, tmp_path / "o", CompressionPlan(budget_params=10))
    assert not (tmp_path / "o").exists()


def test_from_audit_is_the_audits_per_layer_suggestion(bert, tmp_path):
    path, _ = bert
    for allowed in (None, [1, 3, 5]):
        report = compress_adapter(
            path, tmp_path / f"o{allowed}", CompressionPlan(from_audit=True, allowed_ranks=allowed)
        )
        assert _ranks(report) == audit_adapter(path, allowed_ranks=allowed).suggestions.per_layer.rank_pattern


def test_explicit_rank_pattern_resolves_like_peft(bert, tmp_path):
    path, _ = bert
    plan = CompressionPlan(
        rank_pattern={"bert.encoder.layer.1.attention.self.value": 1, "value": 3, "key": 2}
    )
    ranks = _ranks(compress_adapter(path, tmp_path / "o", plan))
    assert ranks["bert.encoder.layer.1.attention.self.value"] == 1
    assert ranks["bert.encoder.layer.0.attention.self.value"] == 3
    assert ranks["bert.encoder.layer.0.attention.self.key"] == 2
    assert ranks["bert.encoder.layer.0.attention.self.query"] == 8  # unlisted: keeps its rank
    with pytest.raises(CompressError, match="matches no LoRA layer"):
        compress_adapter(path, tmp_path / "x", CompressionPlan(rank_pattern={"q_proj": 2}))
    with pytest.raises(CompressError, match="above its current r"):
        compress_adapter(path, tmp_path / "y", CompressionPlan(rank_pattern={"value": 9}))


@pytest.mark.parametrize(
    "plan, msg",
    [
        (CompressionPlan(), "exactly one strategy"),
        (CompressionPlan(rank=2, energy=0.5), "exactly one strategy"),
        (CompressionPlan(rank=0), "rank must be"),
        (CompressionPlan(energy=1.5), "energy must be"),
        (CompressionPlan(budget_ratio=0.0), "budget_ratio must be"),
        (CompressionPlan(rank=3, allowed_ranks=[2, 4]), "not in allowed_ranks"),
    ],
)
def test_bad_plans_are_compress_errors(bert, tmp_path, plan, msg):
    path, _ = bert
    with pytest.raises(CompressError, match=msg):
        compress_adapter(path, tmp_path / "o", plan)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("rslora", [False, True])
def test_exact_alpha_gives_back_the_scale(rslora):
    """PEFT recomputes alpha'/k (or alpha'/√k): bit-exact when some float alpha' allows it (always
    when alpha' can be an integer), within one ulp of the old scale otherwise."""
    exact = total = 0
    for alpha in (1, 3, 7.3, 8, 16, 32, 0.1, 64):
        for r in (1, 4, 8, 16, 32, 64, 128):
            scale = peft_scale(alpha, r, rslora)
            for k in range(1, r + 1):
                got = peft_scale(exact_alpha(scale, k, rslora), k, rslora)
                assert abs(got - scale) <= math.ulp(scale), (alpha, r, k)
                exact += got == scale
                total += 1
    assert peft_scale(exact_alpha(2.0, 5, False), 5, False) == 2.0 and exact_alpha(2.0, 5, False) == 10
    assert exact / total > 0.9


def test_pattern_keys_capture_only_their_own_module():
    from peft.utils.other import get_pattern_key

    names = ["model.layers.0.q_proj", "vision.model.layers.0.q_proj", "model.layers.10.q_proj"]
    keys = pattern_keys(names)
    assert keys["model.layers.0.q_proj"].startswith("^")  # it is the dotted tail of the vision path
    for order in (list(keys.values()), list(reversed(keys.values()))):
        for name in names:
            assert get_pattern_key(order, name) == keys[name]
    # without the anchor the shorter path's key would also capture the vision module
    assert get_pattern_key(["model\\.layers\\.0\\.q_proj"], "vision.model.layers.0.q_proj") != (
        "vision.model.layers.0.q_proj"
    )


class _Nested(torch.nn.Module):
    """`model.lin` is the dotted tail of `vision.model.lin`: the case unanchored keys get wrong."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.model = torch.nn.ModuleDict({"lin": torch.nn.Linear(16, 16)})
        self.vision = torch.nn.ModuleDict({"model": torch.nn.ModuleDict({"lin": torch.nn.Linear(16, 16)})})
        self.other = torch.nn.ModuleDict({"lin": torch.nn.Linear(16, 16)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model["lin"](x) + self.vision["model"]["lin"](x) + self.other["lin"](x)


def test_suffix_module_names_keep_their_scales_through_peft(tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    cfg = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["lin"],
        alpha_pattern={"vision.model.lin": 4, "other.lin": 4},
        init_lora_weights=False,
    )
    torch.manual_seed(1)
    get_peft_model(_Nested(), cfg).save_pretrained(str(tmp_path / "in"))
    report = compress_adapter(tmp_path / "in", tmp_path / "out", CompressionPlan(rank=4))
    assert any(k.startswith("^") for k in report.config["alpha_pattern"])
    orig = lora_modules(PeftModel.from_pretrained(_Nested(), str(tmp_path / "in")))
    new = lora_modules(PeftModel.from_pretrained(_Nested(), str(tmp_path / "out")))
    assert set(orig) == set(new) == {"model.lin", "vision.model.lin", "other.lin"}
    for name in orig:
        assert new[name].r["default"] == 4
        assert abs(new[name].scaling["default"] - orig[name].scaling["default"]) <= math.ulp(
            orig[name].scaling["default"]
        )
