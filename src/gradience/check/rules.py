"""The config rule set (SPEC §4): one function per rule, each returning typed recommendations.

Every rule of the v0.3.1 release exists exactly once here; `monitor` reuses them on a
run's ConfigSnapshot and adds its own on top, then both finish with `finalize()`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel, Field

from gradience.telemetry import Severity

from .sources import CheckConfig

ATTENTION_SUGGESTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
#: actions that report rather than ask for a change: they do not suppress `config_ok`
NON_ACTIONABLE = {"config_ok", "set_task_profile"}


class Recommendation(BaseModel):
    severity: Severity
    action: str
    message: str
    why: str
    confidence: float = Field(ge=0.0, le=1.0)
    suggested: dict[str, Any] = Field(default_factory=dict)
    source: str = "check"

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def rec(
    severity: str,
    action: str,
    message: str,
    why: str,
    confidence: float,
    source: str = "check",
    **suggested: Any,
) -> Recommendation:
    return Recommendation(
        severity=Severity(severity),
        action=action,
        message=message,
        why=why,
        confidence=confidence,
        suggested=suggested,
        source=source,
    )


def target_types(targets: list[str] | None) -> dict[str, list[str]]:
    """Targets grouped by the audit package's one classifier; `all-linear` counts as both."""
    from gradience.audit import module_type  # the single classifier (reads whole module paths)

    groups: dict[str, list[str]] = {"attn": [], "mlp": [], "other": []}
    for t in targets or []:
        if t.lower() == "all-linear":
            groups["attn"].append(t)
            groups["mlp"].append(t)
        else:
            groups[module_type(t)].append(t)
    return groups


Rule = Callable[[CheckConfig, str], Iterable[Recommendation]]

# --- hard_reasoning -------------------------------------------------------------------------


def hr_lr(cfg: CheckConfig, profile: str) -> Iterable[Recommendation]:
    if profile != "hard_reasoning":
        return
    if cfg.lr is None:
        yield rec(
            "warning",
            "set_lr",
            "No learning rate given; start at 5e-5.",
            "Reasoning tasks are sensitive to lr; LoRA runs on them diverge or memorise above ~1e-4.",
            0.8,
            lr=5e-5,
        )
    elif cfg.lr > 1e-4:
        yield rec(
            "warning",
            "lower_lr",
            f"lr={cfg.lr:g} is high for a reasoning task; lower it to about 5e-5.",
            "Above 1e-4, LoRA on reasoning data tends to memorise the training set (a large train/test gap).",
            0.8,
            lr=5e-5,
        )
    elif cfg.lr > 5e-5:
        yield rec(
            "info",
            "consider_lower_lr",
            f"lr={cfg.lr:g} is workable; 5e-5 is the safer default for reasoning tasks.",
            "Between 5e-5 and 1e-4 runs usually train, but generalise less reliably than at 5e-5.",
            0.6,
            lr=5e-5,
        )


def hr_targets(cfg: CheckConfig, profile: str) -> Iterable[Recommendation]:
    if profile != "hard_reasoning":
        return
    if not cfg.target_modules:
        yield rec(
            "warning",
            "set_target_modules",
            "No target modules given; target the attention projections (q/k/v/o_proj).",
            "Attention-only LoRA is the tested default for reasoning; library defaults vary by model.",
            0.7,
            target_modules=ATTENTION_SUGGESTION,
        )
        return
    groups = target_types(cfg.target_modules)
    if groups["mlp"]:
        yield rec(
            "info",
            "prefer_attention_only",
            f"MLP targets ({', '.join(groups['mlp'])}) add many parameters; try attention-only first.",
            "On reasoning tasks MLP adapters mostly add capacity to memorise; attention-only matches them at a fraction of the size.",
            0.7,
        )
        if not groups["attn"]:
            yield rec(
                "warning",
                "include_attention_targets",
                "Only MLP modules are targeted; include the attention projections.",
                "Without attention targets the adapter cannot change what tokens attend to, which reasoning needs.",
                0.7,
                target_modules=ATTENTION_SUGGESTION,
            )
    if groups["other"]:
        yield rec(
            "info",
            "review_target_modules",
            f"Targets not recognised as attention or MLP: {', '.join(groups['other'])}.",
            "Unrecognised names may match nothing, or more than intended (e.g. every `dense`); check what they adapt.",
            0.4,
        )


def hr_rank(cfg: CheckConfig, profile: str) -> Iterable[Recommendation]:
    if profile != "hard_reasoning":
        return
    if cfg.r is None:
        yield rec(
            "info",
            "set_rank",
            "No LoRA rank given; start at r=8.",
            "r=8 is enough for most reasoning fine-tunes; measure utilisation before going higher.",
            0.6,
            r=8,
        )
    elif cfg.r > 16:
        conf = 0.6 if cfg.r >= 32 else 0.5
        yield rec(
            "info",
            "consider_reduce_rank",
            f"r={cfg.r} is likely more than needed; try 8-16.",
            "Audits of reasoning adapters rarely find more than 8-16 useful directions per layer.",
            conf,
            r_min=8,
            r_max=16,
        )


def hr_alpha(cfg: CheckConfig, profile: str) -> Iterable[Recommendation]:
    ratio = cfg.update_scale
    if profile != "hard_reasoning" or cfg.lr is None or ratio is None:
        return
    if cfg.lr > 1e-4 and ratio >= 1:
        yield rec(
            "info",
            "consider_lower_alpha_over_r",
            f"{'alpha/sqrt(r)' if cfg.use_rslora else 'alpha/r'}={ratio:g} with lr={cfg.lr:g}: lower the "
            "scale to 0.25-0.5 (or lower lr).",
            "The update scale is lr x alpha/r (alpha/sqrt(r) with rsLoRA); both high multiplies the step size.",
            0.5,
            alpha_over_r_min=0.25,
            alpha_over_r_max=0.5,
        )


# --- any profile ----------------------------------------------------------------------------


def any_weight_decay(cfg: CheckConfig, profile: str) -> Iterable[Recommendation]:
    if cfg.weight_decay is not None and cfg.weight_decay < 0:
        yield rec(
            "error",
            "fix_weight_decay",
            f"weight_decay={cfg.weight_decay:g} is negative; use 0 to 0.1.",
            "Negative weight decay pushes weights away from zero every step: it is a bug, not a setting.",
            0.9,
            weight_decay=0.0,
        )


# --- easy_classification --------------------------------------------------------------------


def ec_rank(cfg: CheckConfig, profile: str) -> Iterable[Recommendation]:
    if profile == "easy_classification" and cfg.r is not None and cfg.r > 16:
        yield rec(
            "info",
            "reduce_rank_for_efficiency",
            f"r={cfg.r} is more than easy classification needs; try 4-8.",
            "Classification adapters typically use a handful of directions; higher r only costs memory.",
            0.6,
            r_min=4,
            r_max=8,
        )


def ec_targets(cfg: CheckConfig, profile: str) -> Iterable[Recommendation]:
    if profile != "easy_classification" or not cfg.target_modules:
        return
    groups = target_types(cfg.target_modules)
    if groups["mlp"]:
        yield rec(
            "info",
            "prefer_attention_only_for_efficiency",
            f"MLP targets ({', '.join(groups['mlp'])}) are rarely needed for classification.",
            "Attention-only adapters reach the same accuracy on easy classification with fewer parameters.",
            0.5,
        )


def ec_lr(cfg: CheckConfig, profile: str) -> Iterable[Recommendation]:
    if profile == "easy_classification" and cfg.lr is not None and cfg.lr > 5e-4:
        yield rec(
            "warning",
            "lower_lr",
            f"lr={cfg.lr:g} is high even for classification; lower it to about 1e-4.",
            "Above 5e-4 LoRA classification runs often oscillate or collapse to one class.",
            0.7,
            lr=1e-4,
        )


# --- unknown / generation -------------------------------------------------------------------


def calibration(cfg: CheckConfig, profile: str) -> Iterable[Recommendation]:
    if profile in ("unknown", "generation"):
        yield rec(
            "info",
            "calibration_probe",
            "No tested defaults for this profile: run a short calibration probe (attention-only, r=8, lr=5e-5) and audit it.",
            "Without a known task profile, a cheap probe plus `gradience audit` measures what rank the task needs.",
            0.5,
            target_modules="attention-only",
            r=8,
            lr=5e-5,
        )


RULES: tuple[Rule, ...] = (
    hr_lr,
    hr_targets,
    hr_rank,
    hr_alpha,
    any_weight_decay,
    ec_rank,
    ec_targets,
    ec_lr,
    calibration,
)


def config_ok() -> Recommendation:
    return rec(
        "info",
        "config_ok",
        "No rule fired: the configuration matches the tested defaults for its profile.",
        "Every rule of the profile was evaluated and none found a problem.",
        0.5,
    )


def run_rules(cfg: CheckConfig, profile: str) -> list[Recommendation]:
    """Every rule on the config; `config_ok` when nothing else fired."""
    found = [r for rule in RULES for r in rule(cfg, profile)]
    if not [r for r in found if r.action not in NON_ACTIONABLE]:
        found.append(config_ok())
    return found


def finalize(recs: Iterable[Recommendation]) -> list[Recommendation]:
    """Drop config_ok when anything actionable exists, keep the most severe per action, sort."""
    recs = list(recs)
    if any(r.action not in NON_ACTIONABLE for r in recs):
        recs = [r for r in recs if r.action != "config_ok"]
    best: dict[str, Recommendation] = {}
    for r in recs:
        cur = best.get(r.action)
        if cur is None or (Severity(r.severity).rank, r.confidence) > (
            Severity(cur.severity).rank,
            cur.confidence,
        ):
            best[r.action] = r
    return sorted(best.values(), key=lambda r: (-Severity(r.severity).rank, r.action))
