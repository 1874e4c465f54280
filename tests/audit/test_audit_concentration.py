"""Concentration (energy shares, HHI, 1/HHI overall and by module type, top layers) against the
same quantities computed from PEFT's dense get_delta_weight."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from gradience.audit import audit_adapter, module_type
from gradience.cli import app
from tiny_models import make_adapter, peft_delta_weights, spread_spectra


def test_concentration_equals_dense(tmp_path):
    model = make_adapter(tmp_path / "a", "llama")
    spread_spectra(model)
    model.save_pretrained(str(tmp_path / "a"))
    energy = {k: float((v**2).sum()) for k, v in peft_delta_weights(model).items()}
    total = sum(energy.values())
    share = {k: e / total for k, e in energy.items()}
    report = audit_adapter(tmp_path / "a")
    c = report.concentration
    hhi = sum(p * p for p in share.values())
    assert c.hhi == pytest.approx(hhi, rel=1e-6)
    assert c.effective_layers == pytest.approx(1 / hhi, rel=1e-6)
    for la in report.layers:
        assert la.energy_share == pytest.approx(share[la.name], rel=1e-6)
    for kind, tc in c.by_type.items():
        members = {k: e for k, e in energy.items() if module_type(k) == kind}
        within = sum((e / sum(members.values())) ** 2 for e in members.values())
        assert tc.hhi == pytest.approx(within, rel=1e-6)
        assert tc.energy_share == pytest.approx(sum(members.values()) / total, rel=1e-6)
    top = sorted(share, key=lambda k: -share[k])[:5]
    assert list(c.top_layers) == top
    assert np.isclose(sum(la.energy_share for la in report.layers), 1.0)
    res = CliRunner().invoke(app, ["audit", "--peft-dir", str(tmp_path / "a"), "--json"])
    assert json.loads(res.stdout)["concentration"]["hhi"] == pytest.approx(hhi, rel=1e-6)
