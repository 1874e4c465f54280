"""`gradience check`: merge sources, settle the task profile, run the rules."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from gradience.telemetry import Severity

from .profiles import infer_task_profile
from .rules import Recommendation, finalize, rec, run_rules
from .sources import CheckConfig, merge_sources


class CheckResult(BaseModel):
    config: CheckConfig
    task_profile: str
    profile_source: str  # "explicit" | "inferred" | "default"
    recommendations: list[Recommendation] = Field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """1 when any finding is error or worse (the config would fail), else 0."""
        return int(any(Severity(r.severity).rank >= Severity.ERROR.rank for r in self.recommendations))

    def to_json(self) -> dict[str, Any]:
        return {
            "task_profile": self.task_profile,
            "profile_source": self.profile_source,
            "config": self.config.model_dump(mode="json", exclude={"sources"}, exclude_none=True),
            "sources": self.config.sources,
            "recommendations": [r.to_json() for r in self.recommendations],
            "exit_code": self.exit_code,
        }


def resolve_profile(cfg: CheckConfig) -> tuple[str, str, list[Recommendation]]:
    """Explicit profile wins; else inferred from the dataset (announced); else `unknown`."""
    if cfg.task_profile:
        return cfg.task_profile, "explicit", []
    inferred = infer_task_profile(cfg.dataset_label)
    if inferred is None:
        return "unknown", "default", []
    note = rec(
        "info",
        "set_task_profile",
        f"Task profile inferred as {inferred} from dataset {cfg.dataset_label!r}; set --task-profile to confirm.",
        "Rules differ by profile; an inferred profile is a guess from the dataset name.",
        0.6,
        task_profile=inferred,
    )
    return inferred, "inferred", [note]


def evaluate_config(cfg: CheckConfig, source: str = "check") -> CheckResult:
    """Run the rule set on an already merged config (monitor calls this on a run's snapshot)."""
    profile, how, notes = resolve_profile(cfg)
    recs = notes + run_rules(cfg, profile)
    for r in recs:
        r.source = source
    return CheckResult(config=cfg, task_profile=profile, profile_source=how, recommendations=finalize(recs))


def run_check(
    config: Path | None = None,
    *,
    peft: Path | None = None,
    training: Path | None = None,
    peft_dir: Path | None = None,
    training_dir: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> CheckResult:
    """Merge every source (CONFIG < PEFT < training < overrides) and check the result."""
    cfg = merge_sources(config, peft, training, peft_dir, training_dir, overrides)
    return evaluate_config(cfg)
