"""Config sources for `gradience check`: files, folder discovery, key aliases, CLI overrides.

Why so careful: a pre-flight check is only useful if it reads what the run will really use.
So sources merge in a fixed order (CONFIG < PEFT < training < CLI flags), aliases map onto
one vocabulary, a key given twice with different values in one file is an error rather
than a guess, folder discovery refuses to choose between candidates, and HF's
`training_args.bin` is refused because it is a pickle (loading it can run code).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from gradience.audit import lora_scale
from gradience.files import MalformedInput, loads_json, loads_yaml, read_text

from .errors import CheckInputError

PROFILES = ("easy_classification", "hard_reasoning", "generation", "unknown")

#: leaf key (any section) → canonical key
ALIASES: dict[str, str] = {
    "model_name": "model_name",
    "model_name_or_path": "model_name",
    "base_model_name_or_path": "model_name",
    "base_model": "model_name",
    "dataset_name": "dataset_name",
    "dataset": "dataset_name",
    "task_name": "dataset_name",
    "subset": "dataset_subset",
    "dataset_config_name": "dataset_subset",
    "task_profile": "task_profile",
    "profile": "task_profile",
    "lr": "lr",
    "learning_rate": "lr",
    "weight_decay": "weight_decay",
    "wd": "weight_decay",
    "r": "r",
    "rank": "r",
    "lora_r": "r",
    "lora_rank": "r",
    "probe_r": "r",
    "alpha": "alpha",
    "lora_alpha": "alpha",
    "alpha_over_r": "alpha_over_r",
    "target_modules": "target_modules",
    "targets": "target_modules",
    "lora_target_modules": "target_modules",
    "dropout": "dropout",
    "lora_dropout": "dropout",
    "bias": "bias",
    "use_rslora": "use_rslora",
    "optim": "optimizer",
    "optimizer_name": "optimizer",
    "per_device_train_batch_size": "batch_size",
    "train_batch_size": "batch_size",
    "batch_size": "batch_size",
    "gradient_accumulation_steps": "gradient_accumulation",
    "gradient_accumulation": "gradient_accumulation",
    "max_steps": "max_steps",
    "num_train_epochs": "epochs",
    "epochs": "epochs",
    "seed": "seed",
}
#: (section, leaf) pairs whose meaning depends on the section
CONTEXTUAL: dict[tuple[str, str], str] = {
    ("model", "name"): "model_name",
    ("optimizer", "name"): "optimizer",
    ("task", "name"): "dataset_name",
}
#: dict-valued keys we descend into; a str value under these names is a plain field instead
SECTIONS = {
    "lora",
    "peft",
    "peft_config",
    "lora_config",
    "optimizer",
    "training",
    "train",
    "training_args",
    "trainer",
    "model",
    "task",
    "data",
    "hyperparameters",
    "config",
    "args",
    "extras",
}
SCALAR_SECTION_FIELDS = {"model": "model_name", "task": "dataset_name", "optimizer": "optimizer"}

PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}
TRAINING_NAMES = tuple(
    f"{stem}.{ext}" for stem in ("training_args", "training_config") for ext in ("json", "yaml", "yml")
)


class CheckConfig(BaseModel):
    """The merged, normalised configuration the rules read. `sources` says where each key came from."""

    model_name: str | None = None
    dataset_name: str | None = None
    dataset_subset: str | None = None
    task_profile: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    r: int | None = None
    alpha: float | None = None
    alpha_over_r: float | None = None
    target_modules: list[str] | None = None
    dropout: float | None = None
    bias: str | None = None
    use_rslora: bool | None = None
    optimizer: str | None = None
    batch_size: int | None = None
    gradient_accumulation: int | None = None
    max_steps: int | None = None
    epochs: float | None = None
    seed: int | None = None
    notes: str | None = None  # free text carried into the result (upstream's --notes)
    sources: dict[str, str] = Field(default_factory=dict)

    @property
    def update_scale(self) -> float | None:
        """The scale PEFT applies to B·A: α/r, or α/√r with rsLoRA (the audit's one formula)."""
        if self.alpha is not None and self.r:
            return lora_scale(self.alpha, self.r, bool(self.use_rslora))
        if self.alpha_over_r is not None:  # given without α: α/r, times √r under rsLoRA
            return self.alpha_over_r * (math.sqrt(self.r) if self.use_rslora and self.r else 1.0)
        return None

    @property
    def dataset_label(self) -> str | None:
        if self.dataset_name and self.dataset_subset and self.dataset_subset not in self.dataset_name:
            return f"{self.dataset_name}/{self.dataset_subset}"
        return self.dataset_name or self.dataset_subset


_INT_KEYS = {"r", "batch_size", "gradient_accumulation", "max_steps", "seed"}
_FLOAT_KEYS = {"lr", "weight_decay", "alpha", "alpha_over_r", "dropout", "epochs"}
_STR_KEYS = {"model_name", "dataset_name", "dataset_subset", "task_profile", "bias", "optimizer", "notes"}


def flatten(data: Mapping[str, Any], label: str) -> dict[str, Any]:
    """Map a nested config onto canonical keys; the same key twice with two values is an error."""
    found: dict[str, tuple[Any, str]] = {}
    _walk(data, (), found, label)
    return {k: v for k, (v, _) in found.items()}


def _walk(
    data: Mapping[str, Any], path: tuple[str, ...], found: dict[str, tuple[Any, str]], label: str
) -> None:
    # plain keys first, then sections, so that `extras` never shadows a documented field
    items = sorted(data.items(), key=lambda kv: (isinstance(kv[1], Mapping), str(kv[0]) == "extras"))
    for raw_key, value in items:
        key = str(raw_key)
        where = ".".join((*path, key))
        if isinstance(value, Mapping):
            if key.lower() in SECTIONS:
                _walk(value, (*path, key.lower()), found, label)
            continue
        section = path[-1] if path else ""
        canon = CONTEXTUAL.get((section, key.lower()))
        if canon is None and key.lower() in SCALAR_SECTION_FIELDS and isinstance(value, str):
            canon = SCALAR_SECTION_FIELDS[key.lower()]
        if canon is None:
            canon = ALIASES.get(key.lower())
        if canon is None or value is None:
            continue
        if canon in found and found[canon][0] != value:
            prev_value, prev_where = found[canon]
            if section == "extras":
                continue
            raise CheckInputError(
                f"{label}: conflicting values for {canon}: {prev_where}={prev_value!r} vs {where}={value!r}"
            )
        found.setdefault(canon, (value, where))


def coerce(key: str, value: Any, label: str) -> Any:
    """Type one canonical value, with a one-line error naming the source."""
    try:
        if key in _INT_KEYS:
            if isinstance(value, bool):
                raise ValueError
            f = float(value)
            if not f.is_integer():
                raise ValueError
            out: Any = int(f)
            if key == "r" and out < 1:
                raise CheckInputError(f"{label}: r must be a positive integer, got {value!r}")
            return out
        if key in _FLOAT_KEYS:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if key == "use_rslora":
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes")
            return bool(value)
        if key == "target_modules":
            return normalise_targets(value)
        if key == "task_profile":
            profile = str(value).strip().lower()
            if profile not in PROFILES:
                raise CheckInputError(
                    f"{label}: unknown task profile {value!r}; choose one of {', '.join(PROFILES)}"
                )
            return profile
        return str(value)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, CheckInputError):
            raise
        kind = "an integer" if key in _INT_KEYS else "a number"
        raise CheckInputError(f"{label}: {key} must be {kind}, got {value!r}") from None


def normalise_targets(value: Any) -> list[str]:
    """A list of module names; a comma/space separated string is split (PEFT regexes stay whole)."""
    if isinstance(value, str):
        text = value.strip()
        if any(ch in text for ch in "()[]*+?|\\^$"):
            return [text]  # a PEFT regex: one pattern, not a list
        return [t for t in text.replace(",", " ").split() if t]
    if isinstance(value, Iterable):
        out: list[str] = []
        for item in value:
            out.extend(normalise_targets(str(item)))
        return out
    raise TypeError(value)


def refuse_pickle(path: Path) -> None:
    """`training_args.bin` and friends are pickles: never load them."""
    head = b""
    if path.is_file():
        with path.open("rb") as fh:
            head = fh.read(4)
    if path.suffix.lower() in PICKLE_SUFFIXES or head[:1] == b"\x80" or head == b"PK\x03\x04":
        raise CheckInputError(
            f"{path.name} is a pickle and will not be loaded (unpickling can run arbitrary code); "
            "export the arguments as JSON, e.g. json.dump(trainer.args.to_dict(), open('training_args.json', 'w'))"
        )


def load_mapping(path: Path, what: str) -> dict[str, Any]:
    """Read a JSON or YAML mapping (YAML only through `yaml.safe_load`)."""
    path = Path(path)
    if not path.exists():
        raise CheckInputError(f"{what} not found: {path}")
    if path.is_dir():
        raise CheckInputError(f"{what} is a directory, not a file: {path}")
    refuse_pickle(path)
    try:
        text = read_text(path, what)
        if not text.strip():
            raise CheckInputError(f"{what} {path} is empty")
        # JSON is YAML too, so unknown suffixes go to the YAML parser
        data = loads_json(text, str(path)) if path.suffix.lower() == ".json" else loads_yaml(text, str(path))
    except MalformedInput as exc:
        raise CheckInputError(str(exc)) from None
    if not isinstance(data, dict):
        raise CheckInputError(f"{what} {path} must hold a mapping of keys, not {type(data).__name__}")
    return data


def discover(folder: Path, names: tuple[str, ...], what: str, flag: str) -> Path:
    """The one matching file in `folder` (or, failing that, one level down); never a guess."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckInputError(f"{flag} {folder}: not a directory")
    for pattern in ("{}", "*/{}"):
        hits = sorted({p for n in names for p in folder.glob(pattern.format(n)) if p.is_file()})
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            listed = ", ".join(str(p.relative_to(folder)) for p in hits[:5])
            raise CheckInputError(
                f"{flag} {folder} is ambiguous: {len(hits)} {what} files ({listed}); pick one"
            )
    pickles = sorted(folder.glob("training_args.bin")) + sorted(folder.glob("*/training_args.bin"))
    if pickles and what == "training arguments":
        refuse_pickle(pickles[0])
    raise CheckInputError(f"{flag} {folder}: no {what} file ({' / '.join(names)})")


def merge_sources(
    config: Path | None = None,
    peft: Path | None = None,
    training: Path | None = None,
    peft_dir: Path | None = None,
    training_dir: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> CheckConfig:
    """Merge every source in precedence order (later wins) into one typed CheckConfig."""
    if peft is not None and peft_dir is not None:
        raise CheckInputError("give --peft or --peft-dir, not both")
    if training is not None and training_dir is not None:
        raise CheckInputError("give --training or --training-dir, not both")
    if peft_dir is not None:
        peft = discover(peft_dir, ("adapter_config.json",), "adapter_config.json", "--peft-dir")
    if training_dir is not None:
        training = discover(training_dir, TRAINING_NAMES, "training arguments", "--training-dir")
    layers: list[tuple[str, dict[str, Any]]] = []
    for path, what in ((config, "config file"), (peft, "PEFT config"), (training, "training arguments")):
        if path is not None:
            layers.append((str(path), flatten(load_mapping(Path(path), what), str(path))))
    if overrides:
        layers.append(("command line", {k: v for k, v in overrides.items() if v is not None}))
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for label, values in layers:
        for key, value in values.items():
            merged[key] = coerce(key, value, label)
            sources[key] = label
    return CheckConfig(**merged, sources=sources)


def config_from_snapshot(snapshot: Mapping[str, Any], label: str = "run_start") -> CheckConfig:
    """A CheckConfig from a telemetry ConfigSnapshot (what `monitor` re-checks)."""
    values = flatten(snapshot, label)
    merged = {}
    for key, value in values.items():
        try:
            merged[key] = coerce(key, value, label)
        except CheckInputError:
            continue  # a telemetry file is evidence: skip a bad field rather than refuse the run
    return CheckConfig(**merged, sources=dict.fromkeys(merged, label))
