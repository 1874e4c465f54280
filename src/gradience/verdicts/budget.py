"""The few keys of a bench config the planner needs, read tolerantly (the bench validates the rest)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from gradience.verdicts.errors import PolicyError


@dataclass(frozen=True)
class BenchBudget:
    """What a bench config fixes: seeds, eval items, margin override and policy (None = unset)."""

    source: str
    n_seeds: int | None = None
    eval_items: int | None = None
    acc_tolerance: float | None = None
    policy: str | None = None


def _config_text(ref: str | Path) -> tuple[str, Path | None]:
    path = Path(ref)
    if path.is_file():
        return path.read_text(encoding="utf-8"), path
    builtin = resources.files("gradience") / "bench" / "configs" / f"{ref}.yaml"
    if not str(ref).endswith((".yaml", ".yml")) and builtin.is_file():
        return builtin.read_text(encoding="utf-8"), None
    raise PolicyError(f"bench config not found: {ref}")


def _section(data: dict[str, Any], name: str, source: str) -> dict[str, Any]:
    value = data.get(name) or {}
    if not isinstance(value, dict):
        raise PolicyError(f"{source}: '{name}' must be a mapping")
    return value


def read_bench_budget(ref: str | Path) -> BenchBudget:
    """``compression.seeds``, ``task.eval_samples``, ``compression.acc_tolerance``, ``compression.policy``."""
    try:
        text, path = _config_text(ref)
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise PolicyError(f"{ref}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read bench config {ref}: {exc}") from None
    source = str(ref)
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: a bench config must be a YAML mapping")
    task, comp = _section(data, "task", source), _section(data, "compression", source)

    seeds = comp.get("seeds")
    if isinstance(seeds, list) and seeds:
        n_seeds: int | None = len(set(map(str, seeds)))
    elif isinstance(seeds, int) and not isinstance(seeds, bool) and seeds >= 1:
        n_seeds = seeds
    elif seeds is None:
        n_seeds = None
    else:
        raise PolicyError(f"{source}: compression.seeds must be a list of seeds, got {seeds!r}")

    items = task.get("eval_samples")
    if items is not None and (isinstance(items, bool) or not isinstance(items, int) or items < 2):
        raise PolicyError(f"{source}: task.eval_samples must be an integer ≥ 2, got {items!r}")

    tol = comp.get("acc_tolerance")
    if tol is not None and (isinstance(tol, bool) or not isinstance(tol, int | float)):
        raise PolicyError(f"{source}: compression.acc_tolerance must be a number, got {tol!r}")

    policy = comp.get("policy")
    if policy is not None:
        if not isinstance(policy, str):
            raise PolicyError(f"{source}: compression.policy must be a policy name or path, got {policy!r}")
        if path is not None and not Path(policy).is_file() and (path.parent / policy).is_file():
            policy = str(path.parent / policy)
    return BenchBudget(source, n_seeds, items, None if tol is None else float(tol), policy)
