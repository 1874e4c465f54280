"""The ladder against a dense reference: SVD of the formed B·A (in the test only), budgets, order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gradience.audit import open_adapter
from gradience.bench import BenchInputError
from gradience.bench.certify import ladder


@pytest.fixture(scope="module")
def adapter_layers(trained_adapter: Path) -> tuple:
    adapter = open_adapter(trained_adapter)
    return adapter, ladder.scan(adapter)


def _dense_sigma(adapter, spec) -> np.ndarray:  # type: ignore[no-untyped-def]
    a, b = adapter.factors(spec)
    return np.linalg.svd(spec.scale * (b.astype(np.float64) @ a.astype(np.float64)), compute_uv=False)[
        : spec.r
    ]


def test_spectra_match_a_dense_svd(adapter_layers: tuple) -> None:
    adapter, layers = adapter_layers
    for la in layers:
        assert np.allclose(la.sigma, _dense_sigma(adapter, la.spec), rtol=1e-9, atol=1e-12)


def test_budget_ladder_respects_each_budget_largest_first(adapter_layers: tuple) -> None:
    adapter, layers = adapter_layers
    cands, notes = ladder.build(layers, ladder.default_plans(layers, "budget", None), "budget")
    full = adapter.lora_params
    assert [c.name for c in cands] == ["budget_50", "budget_25", "budget_12.5"]
    for c in cands:
        assert c.lora_params <= c.step * full
        assert c.lora_params == sum(ranks * (la.spec.in_features + la.spec.out_features)
                                    for la in layers for ranks in [c.ranks[la.spec.name]])  # fmt: skip
    assert [c.lora_params for c in cands] == sorted((c.lora_params for c in cands), reverse=True)
    assert len(notes) == 2 and all("skipped" in n for n in notes)  # r=8: below 12.5% nothing fits


def test_rank_ladder_halves_down_to_one(adapter_layers: tuple) -> None:
    _, layers = adapter_layers
    cands, _ = ladder.build(layers, ladder.default_plans(layers, "rank", None), "rank")
    assert [c.name for c in cands] == ["rank_4", "rank_2", "rank_1"]
    assert all(set(c.ranks.values()) == {int(c.name.split("_")[1])} for c in cands)
    assert [c.rank_equivalent for c in cands] == [4.0, 2.0, 1.0]


def test_energy_ladder_and_retained_energy_against_the_dense_spectrum(adapter_layers: tuple) -> None:
    adapter, layers = adapter_layers
    cands, _ = ladder.build(layers, ladder.default_plans(layers, "energy", ladder.parse_steps("0.99,0.9,0.6", "energy")),
                            "energy")  # fmt: skip
    for c in cands:
        kept = total = 0.0
        for la in layers:
            e = _dense_sigma(adapter, la.spec) ** 2
            need = int(np.searchsorted(np.cumsum(e) / e.sum(), c.step - 1e-12) + 1)
            assert c.ranks[la.spec.name] == min(need, la.spec.r)
            kept, total = kept + e[: c.ranks[la.spec.name]].sum(), total + e.sum()
        assert c.retained_energy == pytest.approx(kept / total, rel=1e-9)


@pytest.mark.parametrize(
    ("text", "kind"), [("0.5,x", "budget"), ("", "budget"), ("1.5", "energy"), ("0", "rank")]
)
def test_bad_steps(text: str, kind: str) -> None:
    with pytest.raises(BenchInputError, match="--steps"):
        ladder.parse_steps(text, kind)
