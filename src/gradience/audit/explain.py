"""One layer of a saved audit, explained: its spectrum, every rule's rank and why, and how the
per-layer suggestion follows from the chosen rule (rank × margin, snapped up to an allowed rank,
capped at the layer's r — the one snapping rule)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

from gradience.audit.errors import AdapterError
from gradience.audit.report import LayerAudit
from gradience.audit.rules import REPORTED_RULES, knee, median, omega, parse_rule
from gradience.audit.suggest import snap_rank


class RuleExplanation(BaseModel):
    rule: str
    rank: int
    why: str


class LayerExplanation(BaseModel):
    layer: LayerAudit
    spectrum: list[float] | None  # σ of s·B·A, complete (length r) or None
    energy_cumulative: list[float] | None
    rules: list[RuleExplanation]
    rank_rule: str
    suggested_rank: int | None
    suggestion_why: str

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def _why(rule: str, s: np.ndarray) -> str:
    k = parse_rule(rule)(s)
    if rule.startswith("energy@"):
        t = float(rule.split("@")[1])
        cum = np.cumsum(s**2) / (s**2).sum()
        return f"the top {k} keep {cum[k - 1]:.2%} of ‖ΔW‖²_F (≥ {t:.2%}); {k - 1} keep {cum[k - 2] if k > 1 else 0:.2%}"
    if rule == "knee":
        unit = np.append(s / s[0], 0.0)
        return f"largest drop of σ/σ₁ is after σ_{knee(s)}: {unit[k - 1]:.3f} → {unit[k]:.3f}"
    if rule == "erank":
        p = s[s > 0] / s.sum()
        return f"effective rank exp(H(σ/Σσ)) = {math.exp(-(p * np.log(p)).sum()):.3f}, rounded half up"
    tau = omega(1.0) * float(median(s))
    above = int((s > tau).sum())
    floor = "" if above else " (none: a rank is at least 1)"
    return f"{above} of {s.size} σ exceed τ = ω(1)·median(σ) = {omega(1.0):.4f} × {median(s):.4g} = {tau:.4g}{floor}"


def explain_layer(audit: dict[str, Any], name: str) -> LayerExplanation:
    """`audit`: the JSON of `gradience audit --json --layers` (with `--top-singular-values R` for
    the spectrum and every rule's reason)."""
    rows = audit.get("layers") if isinstance(audit, dict) else None
    if not isinstance(rows, list):
        raise AdapterError("the audit JSON has no layers: save it with `gradience audit --json --layers`")
    found = [row for row in rows if isinstance(row, dict) and row.get("name") == name]
    if not found:
        close = [row.get("name") for row in rows if isinstance(row, dict) and name in str(row.get("name"))]
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise AdapterError(f"layer {name!r} is not in the audit JSON{hint}")
    try:
        layer = LayerAudit.model_validate(found[0])
    except ValidationError as exc:
        raise AdapterError(
            f"layer {name!r} in the audit JSON is malformed: {exc.errors()[0]['msg']}"
        ) from None
    sv = layer.top_singular_values
    full = sv is not None and len(sv) >= layer.r and sum(sv) > 0
    s = np.asarray(sv[: layer.r], dtype=np.float64) if full else None
    ranks = layer.rule_ranks or {}
    rules = []
    for rule in REPORTED_RULES:
        if s is not None:
            rules.append(
                RuleExplanation(rule=rule, rank=min(parse_rule(rule)(s), layer.r), why=_why(rule, s))
            )
        elif rule in ranks:
            rules.append(
                RuleExplanation(rule=rule, rank=ranks[rule], why="as recorded (no full spectrum saved)")
            )
    sg = audit.get("suggestions") or {}
    rank_rule = str(sg.get("rank_rule", "energy@0.90"))
    suggested = ((sg.get("per_layer") or {}).get("rank_pattern") or {}).get(name)
    allowed = sg.get("allowed_ranks") or []
    margin = float(sg.get("per_layer_margin", 1.0))
    base = next((r.rank for r in rules if r.rule == parse_rule(rank_rule).name), None)
    if base is None:
        base = layer.energy_rank_90
    why = f"{rank_rule} gives {base}; × margin {margin:g} = {base * margin:g}; "
    why += f"snapped up to the next allowed rank of {allowed} and capped at r={layer.r}: "
    why += f"{snap_rank(base * margin, allowed, layer.r) if allowed else min(base, layer.r)}"
    if not full:
        why += " (rerun the audit with --top-singular-values R to see the spectrum)"
    return LayerExplanation(
        layer=layer,
        spectrum=None if s is None else [float(x) for x in s],
        energy_cumulative=None if s is None else [float(x) for x in np.cumsum(s**2) / (s**2).sum()],
        rules=rules,
        rank_rule=rank_rule,
        suggested_rank=suggested,
        suggestion_why=why,
    )
