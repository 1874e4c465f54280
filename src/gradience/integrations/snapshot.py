"""ConfigSnapshot from HF `TrainingArguments` and a PEFT model, as plain JSON values.

Why a whitelist: TrainingArguments and PEFT configs carry enums, sets, dataclasses and
objects (accelerator configs, LoftQ/EVA configs). The telemetry must hold values, never
reprs, so each field is converted explicitly and a field that cannot be is dropped.
"""

from __future__ import annotations

from typing import Any

from gradience.telemetry import ConfigSnapshot, TelemetryError, to_jsonable

LORA_EXTRAS = (
    "peft_type",
    "task_type",
    "use_rslora",
    "use_dora",
    "fan_in_fan_out",
    "modules_to_save",
    "rank_pattern",
    "alpha_pattern",
    "layers_to_transform",
    "init_lora_weights",
    "exclude_modules",
)
TRAINING_EXTRAS = (
    "logging_steps",
    "eval_strategy",
    "eval_steps",
    "save_strategy",
    "save_steps",
    "lr_scheduler_type",
    "warmup_steps",
    "max_grad_norm",
    "per_device_eval_batch_size",
    "logging_nan_inf_filter",
    "label_smoothing_factor",
)


def plain(value: Any) -> Any:
    """A JSON value, or None when the object has no faithful JSON form."""
    try:
        return to_jsonable(value, allow_text=True)
    except TelemetryError:
        return None


def peft_config_of(model: Any, adapter_name: str = "default") -> Any | None:
    configs = getattr(model, "peft_config", None)
    if isinstance(configs, dict):
        return configs.get(adapter_name) or next(iter(configs.values()), None)
    return None


def lora_section(cfg: Any) -> dict[str, Any]:
    if cfg is None:
        return {}
    r = getattr(cfg, "r", None)
    alpha = getattr(cfg, "lora_alpha", None)
    targets = plain(getattr(cfg, "target_modules", None))
    if isinstance(targets, list):
        targets = sorted(str(t) for t in targets)
    extras = {k: plain(getattr(cfg, k)) for k in LORA_EXTRAS if getattr(cfg, k, None) not in (None, {}, [])}
    return {
        "r": r,
        "alpha": alpha,
        "alpha_over_r": (alpha / r) if isinstance(r, int) and r and isinstance(alpha, (int, float)) else None,
        "target_modules": targets,
        "dropout": getattr(cfg, "lora_dropout", None),
        "bias": plain(getattr(cfg, "bias", None)),
        "extras": {k: v for k, v in extras.items() if v is not None},
    }


def _dtype(args: Any, model: Any) -> str | None:
    if getattr(args, "bf16", False):
        return "bf16"
    if getattr(args, "fp16", False):
        return "fp16"
    try:
        return str(next(model.parameters()).dtype).replace("torch.", "")
    except (StopIteration, AttributeError, TypeError):
        return None


def model_name_of(model: Any) -> str | None:
    cfg = peft_config_of(model)
    name = getattr(cfg, "base_model_name_or_path", None) if cfg is not None else None
    base_cfg = getattr(model, "config", None)
    name = name or getattr(base_cfg, "_name_or_path", None) or getattr(base_cfg, "model_type", None)
    return str(name) if name else None


def build_snapshot(
    args: Any,
    model: Any,
    *,
    max_steps: int | None = None,
    model_name: str | None = None,
    dataset_name: str | None = None,
    task_profile: str | None = None,
    notes: str | None = None,
    adapter_name: str = "default",
) -> ConfigSnapshot:
    """The run's ConfigSnapshot: optimizer and training from `args`, lora from the PEFT config."""
    betas = [getattr(args, "adam_beta1", None), getattr(args, "adam_beta2", None)]
    train_extras = {k: plain(getattr(args, k)) for k in TRAINING_EXTRAS if hasattr(args, k)}
    steps = max_steps if max_steps else (args.max_steps if getattr(args, "max_steps", -1) > 0 else None)
    return ConfigSnapshot.model_validate(
        {
            "model_name": model_name or model_name_of(model),
            "dataset_name": dataset_name,
            "task_profile": task_profile,
            "optimizer": {
                "name": plain(getattr(args, "optim", None)),
                "lr": getattr(args, "learning_rate", None),
                "weight_decay": getattr(args, "weight_decay", None),
                "betas": betas if None not in betas else None,
                "eps": getattr(args, "adam_epsilon", None),
                "extras": {},
            },
            "lora": lora_section(peft_config_of(model, adapter_name)),
            "training": {
                "seed": getattr(args, "seed", None),
                "batch_size": getattr(args, "per_device_train_batch_size", None),
                "gradient_accumulation": getattr(args, "gradient_accumulation_steps", None),
                "max_steps": steps,
                "epochs": getattr(args, "num_train_epochs", None),
                "dtype": _dtype(args, model),
                "extras": {k: v for k, v in train_extras.items() if v is not None},
            },
            "notes": notes,
        }
    )
