"""`gradience explain` on a saved audit: every rule's rank from the spectrum agrees with the audit's
own per-layer rule ranks, the suggestion is the audit's, and bad input is one line, exit 2."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from gradience.audit.rules import energy, erank, knee, oht
from gradience.cli import app
from tiny_models import make_adapter, spread_spectra

runner = CliRunner()


def test_explain_layer(tmp_path):
    model = make_adapter(tmp_path / "a", "gpt2")
    spread_spectra(model)
    model.save_pretrained(str(tmp_path / "a"))
    res = runner.invoke(app, ["audit", "--peft-dir", str(tmp_path / "a"), "--json", "--layers", "--top-singular-values", "8", "--rank-rule", "erank"])  # fmt: skip
    assert res.exit_code == 0, res.stderr
    saved = tmp_path / "audit.json"
    saved.write_text(res.stdout)
    audit = json.loads(res.stdout)
    la = audit["layers"][3]
    res = runner.invoke(app, ["explain", "--audit-json", str(saved), "--layer", la["name"], "--json"])
    assert res.exit_code == 0, res.stderr
    ex = json.loads(res.stdout)
    s = np.array(la["top_singular_values"])
    assert np.allclose(ex["spectrum"], s)
    ranks = {r["rule"]: r["rank"] for r in ex["rules"]}
    assert ranks == la["rule_ranks"]
    assert ranks["knee"] == knee(s) and ranks["erank"] == erank(s) and ranks["oht"] == oht(s)
    assert ranks["energy@0.95"] == energy(s, 0.95)
    assert ex["rank_rule"] == "erank"
    assert ex["suggested_rank"] == audit["suggestions"]["per_layer"]["rank_pattern"][la["name"]]
    assert ex["suggestion_why"].startswith(f"erank gives {ranks['erank']}")
    text = runner.invoke(app, ["explain", "--audit-json", str(saved), "--layer", la["name"]])
    assert text.exit_code == 0 and "rank rules" in text.stdout


def test_bad_input(tmp_path):
    no_layers = tmp_path / "x.json"
    no_layers.write_text(json.dumps({"schema": "gradience.audit/v1"}))
    for path, layer, frag in [(no_layers, "q", "--layers"), (tmp_path / "none.json", "q", "none.json")]:
        res = runner.invoke(app, ["explain", "--audit-json", str(path), "--layer", layer])
        assert res.exit_code == 2 and res.stderr.count("\n") == 1 and frag in res.stderr, res.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    res = runner.invoke(app, ["explain", "--audit-json", str(bad), "--layer", "q"])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    missing = tmp_path / "m.json"
    missing.write_text(json.dumps({"layers": [{"name": "model.q_proj"}]}))
    res = runner.invoke(app, ["explain", "--audit-json", str(missing), "--layer", "q_proj"])
    assert res.exit_code == 2 and "did you mean model.q_proj" in res.stderr
