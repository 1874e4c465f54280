"""Table-driven: every SPEC §4 rule fires on a config made for it and stays silent on its neighbour."""

from __future__ import annotations

from typing import Any

import pytest

from gradience.check import CheckConfig, evaluate_config, finalize, rec, run_rules

HR = {"task_profile": "hard_reasoning", "lr": 5e-5, "r": 8, "alpha": 16, "weight_decay": 0.0}
HR_T = {**HR, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}
EC = {
    "task_profile": "easy_classification",
    "lr": 1e-4,
    "r": 8,
    "alpha": 16,
    "target_modules": ["query", "value"],
}

# (action, severity, confidence, config that fires it, its neighbour that must not)
TABLE: list[tuple[str, str, float, dict[str, Any], dict[str, Any]]] = [
    ("set_lr", "warning", 0.8, {**HR_T, "lr": None}, HR_T),
    ("lower_lr", "warning", 0.8, {**HR_T, "lr": 1.01e-4}, {**HR_T, "lr": 1e-4}),
    ("consider_lower_lr", "info", 0.6, {**HR_T, "lr": 1e-4}, {**HR_T, "lr": 5e-5}),
    ("consider_lower_lr", "info", 0.6, {**HR_T, "lr": 5.1e-5}, {**HR_T, "lr": 2e-4}),
    ("set_target_modules", "warning", 0.7, HR, HR_T),
    ("set_target_modules", "warning", 0.7, {**HR, "target_modules": []}, HR_T),
    ("prefer_attention_only", "info", 0.7, {**HR, "target_modules": ["q_proj", "up_proj"]}, HR_T),
    (
        "include_attention_targets",
        "warning",
        0.7,
        {**HR, "target_modules": ["gate_proj", "up_proj", "down_proj"]},
        {**HR, "target_modules": ["q_proj", "up_proj"]},
    ),
    ("review_target_modules", "info", 0.4, {**HR, "target_modules": ["q_proj", "dense"]}, HR_T),
    ("set_rank", "info", 0.6, {**HR_T, "r": None}, HR_T),
    ("consider_reduce_rank", "info", 0.6, {**HR_T, "r": 32}, {**HR_T, "r": 16}),
    ("consider_reduce_rank", "info", 0.5, {**HR_T, "r": 17}, {**HR_T, "r": 16}),
    (
        "consider_lower_alpha_over_r",
        "info",
        0.5,
        {**HR_T, "lr": 2e-4, "alpha": 16, "r": 16},
        {**HR_T, "lr": 2e-4, "alpha": 8, "r": 16},
    ),
    (
        "consider_lower_alpha_over_r",
        "info",
        0.5,
        {**HR_T, "lr": 2e-4, "alpha": 16, "r": 16},
        {**HR_T, "lr": 1e-4, "alpha": 16, "r": 16},
    ),
    ("fix_weight_decay", "error", 0.9, {**HR_T, "weight_decay": -0.01}, HR_T),
    ("fix_weight_decay", "error", 0.9, {**EC, "weight_decay": -1.0}, {**EC, "weight_decay": 0.0}),
    ("reduce_rank_for_efficiency", "info", 0.6, {**EC, "r": 17}, {**EC, "r": 16}),
    (
        "prefer_attention_only_for_efficiency",
        "info",
        0.5,
        {**EC, "target_modules": ["query", "intermediate.dense"]},
        EC,
    ),
    ("lower_lr", "warning", 0.7, {**EC, "lr": 6e-4}, {**EC, "lr": 5e-4}),
    ("calibration_probe", "info", 0.5, {**EC, "task_profile": "unknown"}, EC),
    ("calibration_probe", "info", 0.5, {**EC, "task_profile": "generation"}, HR_T),
    ("config_ok", "info", 0.5, EC, {**EC, "r": 32}),
    ("config_ok", "info", 0.5, HR_T, {**HR_T, "lr": None}),
]


def _fired(values: dict[str, Any]) -> dict[str, Any]:
    cfg = CheckConfig(**{k: v for k, v in values.items() if v is not None})
    return {r.action: r for r in run_rules(cfg, cfg.task_profile or "unknown")}


@pytest.mark.parametrize(("action", "severity", "confidence", "fires", "silent"), TABLE)
def test_rule_fires_and_neighbour_is_silent(action, severity, confidence, fires, silent) -> None:
    fired = _fired(fires)
    assert action in fired, sorted(fired)
    assert fired[action].severity.value == severity and fired[action].confidence == confidence
    assert fired[action].message and fired[action].why
    assert action not in _fired(silent)


def test_every_spec_action_is_covered() -> None:
    spec_actions = {
        "set_lr",
        "lower_lr",
        "consider_lower_lr",
        "set_target_modules",
        "prefer_attention_only",
        "include_attention_targets",
        "review_target_modules",
        "set_rank",
        "consider_reduce_rank",
        "consider_lower_alpha_over_r",
        "fix_weight_decay",
        "reduce_rank_for_efficiency",
        "prefer_attention_only_for_efficiency",
        "calibration_probe",
        "config_ok",
    }
    assert {row[0] for row in TABLE} == spec_actions


def test_suggestions_carry_values() -> None:
    fired = _fired({**HR, "lr": None})
    assert fired["set_lr"].suggested == {"lr": 5e-5}
    assert fired["set_target_modules"].suggested["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert _fired({**HR_T, "r": None})["set_rank"].suggested == {"r": 8}
    assert _fired({**EC, "lr": 1e-3})["lower_lr"].suggested == {"lr": 1e-4}


def test_all_linear_counts_as_attention_and_mlp() -> None:
    fired = _fired({**HR, "target_modules": ["all-linear"]})
    assert "prefer_attention_only" in fired and "include_attention_targets" not in fired


def test_bert_paths_use_the_audit_classifier() -> None:
    # `attention.output.dense` is attention, the FFN's `output.dense` is MLP: one classifier decides
    fired = _fired({**HR, "target_modules": ["query", "attention.output.dense"]})
    assert "prefer_attention_only" not in fired and "review_target_modules" not in fired
    assert "prefer_attention_only" in _fired({**HR, "target_modules": ["query", "output.dense"]})


def test_inferred_profile_is_announced_and_config_ok_kept() -> None:
    result = evaluate_config(CheckConfig(dataset_name="glue/sst2", lr=1e-4, r=8, target_modules=["query"]))
    actions = [r.action for r in result.recommendations]
    assert result.task_profile == "easy_classification" and result.profile_source == "inferred"
    assert actions == ["config_ok", "set_task_profile"]
    explicit = evaluate_config(CheckConfig(dataset_name="glue/sst2", task_profile="hard_reasoning"))
    assert explicit.profile_source == "explicit"
    assert "set_task_profile" not in [r.action for r in explicit.recommendations]
    assert evaluate_config(CheckConfig()).task_profile == "unknown"


def test_finalize_dedupes_by_action_keeping_highest_severity_and_sorts() -> None:
    recs = [
        rec("info", "zeta", "m", "w", 0.5),
        rec("info", "lower_lr", "m", "w", 0.9),
        rec("warning", "lower_lr", "m", "w", 0.7),
        rec("error", "fix_weight_decay", "m", "w", 0.9),
        rec("info", "config_ok", "m", "w", 0.5),
        rec("info", "alpha", "m", "w", 0.5),
    ]
    out = finalize(recs)
    assert [(r.severity.value, r.action) for r in out] == [
        ("error", "fix_weight_decay"),
        ("warning", "lower_lr"),
        ("info", "alpha"),
        ("info", "zeta"),
    ]
    assert [r.action for r in finalize([rec("info", "config_ok", "m", "w", 0.5)])] == ["config_ok"]


def test_exit_code_is_one_only_with_an_error_finding() -> None:
    assert evaluate_config(CheckConfig(**{**EC, "weight_decay": -0.1})).exit_code == 1
    assert evaluate_config(CheckConfig(**{**EC, "lr": 1e-3})).exit_code == 0
