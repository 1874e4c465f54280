"""Rank rules against independent implementations on known spectra: OHT against the published
formula's worked values (ω(1) ≈ 2.858, λ*(1) = 4/√3, the cubic fit) with the Marchenko–Pastur
median from scipy's quadrature, and a planted-rank + Gaussian-noise matrix whose rank OHT recovers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, optimize

from gradience.audit import AdapterError
from gradience.audit.rules import (
    energy,
    erank,
    knee,
    marchenko_pastur_median,
    oht,
    omega,
    omega_approx,
    optimal_lambda,
    parse_rule,
)


def mp_median_scipy(beta: float) -> float:
    a, b = (1 - beta**0.5) ** 2, (1 + beta**0.5) ** 2

    def cdf(x: float) -> float:
        return integrate.quad(
            lambda t: math.sqrt(max((b - t) * (t - a), 0.0)) / (2 * math.pi * beta * t), a, x
        )[0]

    return optimize.brentq(lambda x: cdf(x) - 0.5, a + 1e-12, b)


@pytest.mark.parametrize("beta", [0.05, 0.1, 0.3, 0.5, 0.8, 1.0])
def test_mp_median_and_omega(beta):
    assert marchenko_pastur_median(beta) == pytest.approx(mp_median_scipy(beta), abs=1e-7)
    assert omega(beta) == pytest.approx(omega_approx(beta), abs=0.01)  # the paper's cubic fit


def test_published_values():
    assert optimal_lambda(1.0) == pytest.approx(4 / math.sqrt(3), rel=1e-15)  # the paper's title
    assert omega(1.0) == pytest.approx(2.858, abs=5e-4)  # Gavish–Donoho, Table IV, β = 1
    assert omega_approx(1.0) == pytest.approx(2.86)


@pytest.mark.parametrize(("m", "n", "rank"), [(200, 300, 5), (150, 150, 3), (400, 100, 7)])
def test_oht_recovers_planted_rank(m, n, rank):
    rng = np.random.default_rng(rank)
    u, _ = np.linalg.qr(rng.standard_normal((m, rank)))
    v, _ = np.linalg.qr(rng.standard_normal((n, rank)))
    noise = 1.0 / math.sqrt(max(m, n))  # bulk edge at (1 + √β)·√max·noise ≈ 2
    signal = np.linspace(6, 3, rank) * (1 + math.sqrt(min(m, n) / max(m, n)))
    x = (u * signal) @ v.T + noise * rng.standard_normal((m, n))
    s = np.linalg.svd(x, compute_uv=False)
    assert oht(s, (m, n)) == rank
    tau = omega(min(m, n) / max(m, n)) * np.median(s)  # the rule written out
    assert int((s > tau).sum()) == rank


def test_oht_on_a_core_is_square():
    s = np.array([10.0, 9.0, 1.0, 1.0, 0.9, 0.8, 0.8, 0.7])
    tau = 2.8583624 * np.median(s)
    assert oht(s) == int((s > tau).sum()) == 2


def test_energy_knee_erank_on_known_spectra():
    s = np.array([4.0, 2.0, 1.0, 0.5])
    e = s**2 / (s**2).sum()  # 0.7529, 0.1882, 0.0471, 0.0118
    assert [energy(s, t) for t in (0.5, 0.9, 0.95, 0.99, 1.0)] == [1, 2, 3, 4, 4]
    assert np.cumsum(e)[1] < 0.95 < np.cumsum(e)[2]
    assert knee(s) == 1  # gaps 0.5, 0.25, 0.125 and 0.125 to zero
    assert knee(np.array([1.0, 0.98, 0.97, 0.2, 0.1])) == 3
    assert knee(np.array([1.0, 1.0, 1.0])) == 3  # no drop: keep everything
    p = s / s.sum()
    assert erank(s) == round(math.exp(-(p * np.log(p)).sum())) == 3  # exp(H) = 2.80
    assert erank(np.ones(6)) == 6
    assert [f(np.zeros(4)) for f in (knee, erank, oht)] == [1, 1, 1]


def test_parse_rule_names_and_errors():
    assert parse_rule("energy@0.9").name == "energy@0.90"
    assert parse_rule("ENERGY@0.995").name == "energy@0.995"
    assert parse_rule("oht")(np.array([5.0, 1, 1, 1])) == 1
    for bad in ("energy@1.5", "energy@x", "elbow"):
        with pytest.raises(AdapterError):
            parse_rule(bad)


def test_audit_json_and_compress_use_the_rules(tmp_path):
    import json

    from typer.testing import CliRunner

    from gradience.cli import app
    from tiny_models import make_adapter, peft_delta_weights, spread_spectra

    src = tmp_path / "a"
    model = make_adapter(src, "llama", r=8)
    spread_spectra(model)
    model.save_pretrained(str(src))
    dense = {k: np.linalg.svd(v.numpy(), compute_uv=False)[:8] for k, v in peft_delta_weights(model).items()}
    runner = CliRunner()
    res = runner.invoke(app, ["audit", "--peft-dir", str(src), "--json", "--layers", "--rank-rule", "knee"])
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["suggestions"]["rank_rule"] == "knee"
    for la in out["layers"]:
        s = dense[la["name"]]
        expect = {"energy@0.90": energy(s, 0.9), "knee": knee(s), "erank": erank(s), "oht": oht(s)}
        assert {k: la["rule_ranks"][k] for k in expect} == expect, la["name"]
        assert out["suggestions"]["rank_rules"]["oht"]["rank_pattern"][la["name"]] == expect["oht"]
        assert out["suggestions"]["per_layer"]["rank_pattern"][la["name"]] >= expect["knee"]
    res = runner.invoke(app, ["compress", "--peft-dir", str(src), "--out", str(tmp_path / "c"), "--rank-rule", "erank", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.stderr
    rows = {r["name"]: r["new_rank"] for r in json.loads(res.stdout)["layers"]}
    assert rows == {la["name"]: la["rule_ranks"]["erank"] for la in out["layers"]}
    bad = runner.invoke(app, ["audit", "--peft-dir", str(src), "--rank-rule", "elbow"])
    assert bad.exit_code == 2 and bad.stderr.count("\n") == 1 and "unknown rank rule" in bad.stderr
