"""`gradience check`: validate a LoRA fine-tuning config before spending compute.

Public API:
    run_check(config=None, *, peft=None, training=None, peft_dir=None, training_dir=None,
              overrides=None) -> CheckResult
    evaluate_config(cfg: CheckConfig, source="check") -> CheckResult
    merge_sources(...) -> CheckConfig;  config_from_snapshot(snapshot) -> CheckConfig
    infer_task_profile(dataset_name) -> str | None
    run_rules(cfg, profile) -> list[Recommendation];  finalize(recs) -> list[Recommendation]
"""

from .core import CheckResult, evaluate_config, resolve_profile, run_check
from .errors import CheckInputError
from .profiles import infer_task_profile
from .render import recommendation_table, render_check, render_recommendations
from .rules import NON_ACTIONABLE, RULES, Recommendation, finalize, rec, run_rules, target_types
from .sources import PROFILES, CheckConfig, config_from_snapshot, merge_sources

__all__ = [
    "NON_ACTIONABLE",
    "PROFILES",
    "RULES",
    "CheckConfig",
    "CheckInputError",
    "CheckResult",
    "Recommendation",
    "config_from_snapshot",
    "evaluate_config",
    "finalize",
    "infer_task_profile",
    "merge_sources",
    "rec",
    "recommendation_table",
    "render_check",
    "render_recommendations",
    "resolve_profile",
    "run_check",
    "run_rules",
    "target_types",
]
