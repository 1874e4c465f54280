"""Which variants a probe calls for (SPEC §5 step 4): pure functions of the config and its audit.

Per-layer variants name every layer's rank explicitly (nothing falls back to the probe's
rank, upstream's bug), and a variant whose ranks equal the probe's is a skipped control.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from gradience.audit import AuditReport
from gradience.bench.config import BenchConfig
from gradience.bench.registry import VARIANTS
from gradience.bench.runs import RunResult, RunSpec, scaled_alpha

GateStatus = Literal["PASSED", "UNDERTRAINED", "UNDERTRAINED_SMOKE"]


def probe_spec(cfg: BenchConfig, seed: int) -> RunSpec:
    r = cfg.lora.probe_r
    return RunSpec(name=f"probe_r{r}", variant="probe", seed=seed, method="train", r=r, alpha=cfg.lora.alpha)


def _uniform(cfg: BenchConfig, seed: int, variant: str, rank: int, method: str, source: str) -> RunSpec:
    probe_r = cfg.lora.probe_r
    skip = rank == probe_r
    return RunSpec(
        name=f"{variant}_r{rank}", variant=variant, seed=seed, method="skip" if skip else method,  # type: ignore[arg-type]
        r=rank, alpha=scaled_alpha(cfg, rank), source=source if method == "truncate" else None,
        note="control: the suggested rank equals the probe's, so this variant is the probe" if skip else "",
    )  # fmt: skip


def _pattern(
    cfg: BenchConfig, seed: int, variant: str, pattern: dict[str, int], method: str, source: str
) -> RunSpec:
    skip = all(k == cfg.lora.probe_r for k in pattern.values())
    return RunSpec(
        name=variant, variant=variant, seed=seed, method="skip" if skip else method,  # type: ignore[arg-type]
        r=max(pattern.values()), alpha=scaled_alpha(cfg, max(pattern.values())),
        rank_pattern=dict(pattern), alpha_pattern={m: scaled_alpha(cfg, k) for m, k in pattern.items()},
        source=source if method == "truncate" else None,
        note="control: every suggested rank equals the probe's, so this variant is the probe" if skip else "",
    )  # fmt: skip


def shuffle_within_type(pattern: dict[str, int], types: dict[str, str], seed: int) -> dict[str, int]:
    """Permute ranks among layers of the same module type: same budget, uninformed placement."""
    rng = np.random.default_rng([seed, 7])
    out = dict(pattern)
    for t in sorted(set(types.values())):
        names = sorted(m for m in pattern if types[m] == t)
        ranks = [pattern[m] for m in names]
        out.update(zip(names, (ranks[i] for i in rng.permutation(len(ranks))), strict=True))
    return out


def variant_specs(cfg: BenchConfig, seed: int, audit: AuditReport) -> list[RunSpec]:
    """The variants of ``compression.variants_to_test``, from the probe's audit, in config order."""
    sugg = audit.suggestions
    suggested = sugg.per_layer.rank_pattern or {}
    missing = [la.name for la in audit.layers if la.name not in suggested]
    if missing:
        raise RuntimeError(f"audit's per_layer suggestion does not name every layer: {missing[:3]}")
    pattern = {la.name: int(suggested[la.name]) for la in audit.layers}
    types = {la.name: la.module_type for la in audit.layers}
    source = probe_spec(cfg, seed).name
    patterns = {"per_layer": pattern, "per_layer_shuffled": shuffle_within_type(pattern, types, seed)}
    specs = []
    for name in cfg.compression.variants_to_test:
        v = VARIANTS[name]
        if v.uniform:
            rank = getattr(sugg, v.ranks).rank
            assert rank is not None  # uniform suggestions always carry a rank
            specs.append(_uniform(cfg, seed, name, rank, v.method, source))
        else:
            specs.append(_pattern(cfg, seed, name, patterns[v.ranks], v.method, source))
    return specs


def gate_passes(cfg: BenchConfig, value: float) -> bool:
    """The probe must reach compression.probe_gate in the task metric's own direction (NLL: at most)."""
    from gradience.bench.tasks import task_metric

    gate = cfg.compression.probe_gate
    return value >= gate if task_metric(cfg.task).higher_is_better else value <= gate


def gate_status(cfg: BenchConfig, probe: RunResult, smoke: bool) -> GateStatus:
    if gate_passes(cfg, probe.eval["eval"].value):
        return "PASSED"
    return "UNDERTRAINED_SMOKE" if smoke else "UNDERTRAINED"
