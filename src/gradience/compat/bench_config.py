"""Upstream bench configs (``bench_version: "0.1"``, the v0.3.1 and 0.11 layout) → ours.

Every upstream key is either mapped (``MAPPED``: to which of our keys) or, where it has no
meaning here, accepted with one ``note:`` line naming it and why (``NO_EFFECT``); keys that
would need behaviour we do not have (causal-LM task profiles, gradient accumulation) are
refused with one line instead of being run differently from upstream. Keys upstream leaves
out get upstream's defaults (its HF Trainer arguments), not ours, so a translated config
trains as upstream's would. Deliberate differences: the eval items are a fixed random slice
of the validation split rather than its first N, and no checkpoint is ever chosen on them.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

log = logging.getLogger("gradience.compat")


class UpstreamConfigError(ValueError):
    """An upstream config this version cannot run as upstream would."""


MAPPED = {  # upstream key → our key
    "seed": "train.seed",
    "train.learning_rate": "train.lr",
    "model.device": "runtime.device",
    "runtime.keep_adapter_weights": "runtime.keep_adapters",
}
NO_EFFECT = {  # upstream key → why it changes nothing here
    "run_type": "a label for upstream's result folders",
    "train.eval_steps": "the final model is evaluated once; nothing is chosen on the eval items",
    "train.save_steps": "no intermediate checkpoints are written",
    "train.save_strategy": "no intermediate checkpoints are written",
    "runtime.keep_checkpoints": "no intermediate checkpoints are written",
    "train.logging_steps": "telemetry is logged at fixed points of every run",
    "train.report_to": "no HF Trainer integrations are used",
    "compression.fast_mode": "there is one (exact) compression path",
    "model.gradient_checkpointing": "memory option of upstream's Trainer, no effect on results",
    "model.use_cache": "generation cache, no effect on classification",
    "model.torch_dtype": "training is fp32 (as upstream's on CPU)",
    "audit.base_model": "base-relative magnitude is not computed by the bench",
    "audit.compute_udr": "base-relative magnitude is not computed by the bench",
}
REFUSED = {  # upstream key → why it cannot run as upstream's would
    "model.type": "causal-LM models",
    "task.profile": "task profiles other than GLUE classification",
    "task.generation": "generation-based evaluation",
    "task.eval_max_samples": "generation-based evaluation",
    "task.probe_gate": "probe gates on metrics other than accuracy",
}
# Upstream's defaults for what a config leaves out (its HF TrainingArguments, upstream 0.11).
UPSTREAM_TRAIN_DEFAULTS = {
    "max_steps": 500, "per_device_train_batch_size": 8, "per_device_eval_batch_size": 32,
    "lr": 5e-5, "weight_decay": 0.01, "warmup_ratio": 0.1, "seed": 42,
}  # fmt: skip
UPSTREAM_ONLY = set(MAPPED) | set(NO_EFFECT) | set(REFUSED) | {"train.gradient_accumulation_steps"}


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key not in ("task.generation", "task.probe_gate"):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def is_upstream_config(data: Any) -> bool:
    """Upstream's layout: ``bench_version: "0.1"``, or no version and an upstream-only key."""
    if not isinstance(data, dict):
        return False
    if str(data.get("bench_version")) == "0.1":
        return True
    return "bench_version" not in data and bool(UPSTREAM_ONLY & set(_flatten(data)))


def _resolve_device(value: str) -> str:
    if value != "auto":
        return value
    try:
        import torch
    except ImportError:
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if torch.backends.mps.is_available() else "cpu"


def translate_bench_config(data: dict[str, Any], source: str) -> dict[str, Any]:
    """Our config dict for an upstream one; one note per key that has no effect here."""
    flat = _flatten(data)
    for key, why in REFUSED.items():
        if any(k == key or k.startswith(key + ".") for k in flat):
            raise UpstreamConfigError(
                f"{source}: upstream key {key} needs {why}, which this version does not run"
            )
    if flat.get("train.gradient_accumulation_steps", 1) != 1:
        raise UpstreamConfigError(f"{source}: train.gradient_accumulation_steps > 1 is not supported")
    out: dict[str, Any] = copy.deepcopy(
        {k: v for k, v in data.items() if k not in ("seed", "run_type", "audit")}
    )
    out["bench_version"] = "0.2"
    for section in ("model", "task", "train", "lora", "compression", "runtime"):
        out.setdefault(section, {})
    out["train"].pop("gradient_accumulation_steps", None)
    for key, target in MAPPED.items():
        if key not in flat:
            continue
        src_section, _, src_leaf = key.rpartition(".")
        if src_section:
            out[src_section].pop(src_leaf, None)
        dst_section, dst_leaf = target.split(".")
        out[dst_section][dst_leaf] = flat[key]
    for key, why in NO_EFFECT.items():
        if key in flat:
            section, _, leaf = key.rpartition(".")
            if section in out and isinstance(out[section], dict):
                out[section].pop(leaf, None)
            log.info("%s: upstream key %s has no effect here (%s)", source, key, why)
    for key, value in UPSTREAM_TRAIN_DEFAULTS.items():
        out["train"].setdefault(key, value)
    out["task"].setdefault("eval_split", "validation")  # upstream judged on the validation split
    ranks, probe_r = out["compression"].get("allowed_ranks"), out["lora"].get("probe_r")
    if isinstance(ranks, list) and probe_r is not None and probe_r not in ranks:
        out["compression"]["allowed_ranks"] = sorted({*ranks, probe_r})
        log.info(
            "%s: compression.allowed_ranks gains the probe's rank %s (required here; per-layer variants "
            "may then keep a layer at it)", source, probe_r,
        )  # fmt: skip
    if "device" in out["runtime"]:
        out["runtime"]["device"] = _resolve_device(str(out["runtime"]["device"]))
    for section in [s for s, v in out.items() if v == {}]:
        del out[section]
    return out
