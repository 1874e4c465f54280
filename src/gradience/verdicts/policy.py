"""Verdict policies: validated YAML files stating margin, seed quorum, floor and confidence.

The quorum is an exact fraction (``"2/3"``) so it cannot round wrong: upstream's
``pass_rate >= 0.67`` compared 2/3 = 0.667 with 0.67 and so demanded 3 of 3 seeds.
Per-seed comparisons against the margin and the floor are exact too: Δ is a count
difference over n items, and the thresholds are read as the decimals the user wrote.
"""

from __future__ import annotations

import math
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from gradience.files import MalformedInput, describe_validation_error, loads_yaml, read_text
from gradience.verdicts.errors import PolicyError

_POLICY_DIR = "policies"


def parse_fraction(value: object, what: str = "min_pass_fraction") -> Fraction:
    """Read ``"2/3"``, ``"0.5"``, ``1`` or ``0.5`` exactly (a float is read as the decimal it prints as)."""
    if isinstance(value, Fraction):
        frac = value
    elif isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f'{what} must be a fraction like "2/3", got {value!r}')
    else:
        text = str(value).replace(" ", "")
        try:
            frac = Fraction(text)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f'{what} must be a fraction like "2/3", got {value!r}') from None
    if not 0 < frac <= 1:
        raise ValueError(f"{what} must be in (0, 1], got {value!r}")
    return frac


def exact(value: float) -> Fraction:
    """The decimal a threshold was written as (0.025 → 1/40), so boundaries compare exactly."""
    return Fraction(repr(float(value)))


def min_count(threshold: float, n_items: int) -> int:
    """Smallest integer count difference d with d / n_items ≥ threshold, computed exactly."""
    return math.ceil(exact(threshold) * n_items)


class Policy(BaseModel):
    """A verdict policy. ``passed`` = quorum and floor met (and non-inferiority when required)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    name: str = Field(min_length=1)
    version: str = "1"
    scope: str = Field(min_length=1, description="Plain-language statement of what the policy means.")
    margin: float = Field(gt=0, lt=1, description="A seed passes when Δ ≥ −margin (accuracy, 0..1).")
    min_pass_fraction: Fraction | None = Field(default=None, description='Exact quorum fraction, e.g. "2/3".')
    min_pass_seeds: int | None = Field(default=None, ge=1, description="Quorum as a fixed number of seeds.")
    worst_seed_floor: float | None = Field(
        default=None, ge=-1, le=1, description="Worst seed needs Δ ≥ this."
    )
    confidence: float = Field(default=0.95, gt=0.5, lt=1, description="Two-sided confidence level of CIs.")
    require_noninferiority: bool = False

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

    @field_validator("min_pass_fraction", mode="before")
    @classmethod
    def _fraction(cls, value: object) -> Fraction | None:
        return None if value is None else parse_fraction(value)

    @field_serializer("min_pass_fraction")
    def _fraction_text(self, value: Fraction | None) -> str | None:
        return None if value is None else str(value)

    @model_validator(mode="after")
    def _one_quorum(self) -> Policy:
        if (self.min_pass_fraction is None) == (self.min_pass_seeds is None):
            raise ValueError("state the seed quorum with exactly one of min_pass_fraction or min_pass_seeds")
        return self

    def required_passes(self, n_seeds: int) -> int:
        """k = ⌈fraction·n⌉ in exact arithmetic (2 of 3, 4 of 5, 4 of 6), or the fixed count."""
        if n_seeds < 1:
            raise PolicyError(f"need at least one seed, got {n_seeds}")
        if self.min_pass_seeds is not None:
            return self.min_pass_seeds
        assert self.min_pass_fraction is not None
        return math.ceil(self.min_pass_fraction * n_seeds)

    def quorum_text(self) -> str:
        if self.min_pass_seeds is not None:
            return f"{self.min_pass_seeds} seeds"
        return f"⌈{self.min_pass_fraction}·n⌉ seeds"

    def with_margin(self, margin: float) -> Policy:
        """The same policy with another margin (a bench config's ``acc_tolerance`` overrides it)."""
        try:
            return Policy.model_validate({**self.model_dump(), "margin": margin})
        except ValidationError as exc:
            raise PolicyError(f"policy {self.name}: {describe_validation_error(exc, 'policy')}") from None

    def point_verdict(self, diff_counts: np.ndarray, n_items: int) -> dict[str, np.ndarray]:
        """The upstream-compatible rule on point estimates, vectorised over leading axes.

        ``diff_counts[..., s]`` = (variant correct − probe correct) counts for seed s over
        the same ``n_items`` items, so Δ_s = diff/n_items and thresholds compare exactly.
        """
        diff = np.asarray(diff_counts, dtype=np.int64)
        floor = (
            None
            if self.worst_seed_floor is None
            else diff.min(axis=-1) >= min_count(self.worst_seed_floor, n_items)
        )
        return self._quorum(diff >= min_count(-self.margin, n_items), floor)

    def metric_floor(self, margin: float) -> float | None:
        """The worst-seed floor for a margin in another metric's units: the policy's floor read as a
        multiple of its own margin (safe_uniform's −1 × margin: every seed within the margin)."""
        return None if self.worst_seed_floor is None else self.worst_seed_floor / self.margin * margin

    def point_verdict_values(self, deltas: np.ndarray, margin: float) -> dict[str, np.ndarray]:
        """The same rule on real-valued per-seed Δ (a continuous metric, ``margin`` in its units)."""
        d = np.asarray(deltas, dtype=np.float64)
        floor = self.metric_floor(margin)
        return self._quorum(d >= -margin, None if floor is None else d.min(axis=-1) >= floor)

    def _quorum(self, seed_ok: np.ndarray, floor_ok: np.ndarray | None) -> dict[str, np.ndarray]:
        """k of n seeds within the margin and the worst seed above the floor: the one quorum rule."""
        k_passed = seed_ok.sum(axis=-1)
        quorum_met = k_passed >= self.required_passes(seed_ok.shape[-1])
        floor_met = np.ones_like(quorum_met) if floor_ok is None else floor_ok
        return {
            "k_passed": k_passed,
            "quorum_met": quorum_met,
            "floor_met": floor_met,
            "passed": quorum_met & floor_met,
        }


def policy_from_dict(data: Any, source: str = "policy") -> Policy:
    """Validate a parsed policy mapping; any problem is a one-line ``PolicyError``."""
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: a policy must be a YAML mapping, got {type(data).__name__}")
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(f"{source}: {describe_validation_error(exc, 'policy')}") from None


def builtin_policies() -> list[str]:
    """Names of the policies shipped in ``gradience/verdicts/policies``."""
    folder = resources.files("gradience.verdicts") / _POLICY_DIR
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_policy(name_or_path: str | Path) -> Policy:
    """A built-in policy by name (``safe_uniform``) or a policy YAML file by path."""
    text_ref = str(name_or_path)
    looks_like_path = (
        isinstance(name_or_path, Path)
        or text_ref.endswith((".yaml", ".yml"))
        or "/" in text_ref
        or "\\" in text_ref
    )
    if looks_like_path or Path(text_ref).is_file():
        path = Path(text_ref)
        try:
            text = read_text(path, "policy file")
        except FileNotFoundError:
            raise PolicyError(f"policy file not found: {path}") from None
        except MalformedInput as exc:
            raise PolicyError(str(exc)) from None
        except OSError as exc:
            raise PolicyError(f"cannot read policy file {path}: {exc.strerror or exc}") from None
        source, default_name = str(path), path.stem
    else:
        if text_ref not in builtin_policies():
            known = ", ".join(builtin_policies())
            raise PolicyError(
                f"unknown policy {text_ref!r}: built-in policies are {known}, or give a YAML path"
            )
        text = (resources.files("gradience.verdicts") / _POLICY_DIR / f"{text_ref}.yaml").read_text("utf-8")
        source, default_name = f"policy {text_ref}", text_ref
    try:
        data = loads_yaml(text, source)
    except MalformedInput as exc:
        raise PolicyError(str(exc)) from None
    if isinstance(data, dict):
        data.setdefault("name", default_name)
    return policy_from_dict(data, source)
