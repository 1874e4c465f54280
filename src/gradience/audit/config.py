"""adapter_config.json, read with PEFT's own semantics (per-module rank, alpha and scale)."""

from __future__ import annotations

import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gradience.audit.errors import AdapterError
from gradience.files import MalformedInput, describe_validation_error, loads_json, read_text

# Adapter types whose weights are not a B·A pair of plain matrices: refuse them by name, with why.
UNSUPPORTED_TYPES = {
    "ADALORA": "AdaLoRA stores an SVD triplet (lora_A, lora_E, lora_B) with a learned rank mask, not B·A",
    "LOHA": "LoHa is a Hadamard product of two low-rank products; its update is not B·A",
    "LOKR": "LoKr is a Kronecker product; its update is not B·A",
    "VERA": "VeRA shares frozen random matrices across layers and trains only scaling vectors",
    "IA3": "IA3 learns per-channel rescaling vectors, not a low-rank update",
    "OFT": "OFT learns orthogonal rotations, not an additive low-rank update",
    "BOFT": "BOFT learns butterfly-factored rotations, not an additive low-rank update",
}


@lru_cache(maxsize=4096)
def _pattern(key: str) -> re.Pattern[str]:
    try:
        return re.compile(rf"(.*\.)?({key})$")
    except re.error as exc:
        raise AdapterError(f"invalid regex key {key!r} in rank_pattern/alpha_pattern: {exc}") from None


def pattern_key(keys: list[str], module: str) -> str | None:
    """PEFT's get_pattern_key: the first key, in dict order, whose regex matches the module name to its end."""
    for key in keys:
        if _pattern(key).match(module):
            return key
    return None


MAX_RANK = 1 << 20  # beyond any layer width a LoRA has been trained at
MAX_ALPHA = 1e9  # |α|: larger scales overflow float64 spectra of any real update
Rank = Annotated[int, Field(ge=1, le=MAX_RANK)]
Alpha = Annotated[float, Field(ge=-MAX_ALPHA, le=MAX_ALPHA, allow_inf_nan=False)]


def lora_scale(alpha: float, rank: int, rslora: bool) -> float:
    """PEFT's formula (LoraLayer.update_layer): alpha / r, or alpha / sqrt(r) with rsLoRA."""
    return alpha / math.sqrt(rank) if rslora else alpha / rank


def alpha_for_scale(scale: float, rank: int, rslora: bool) -> float:
    """An alpha from which PEFT recomputes `scale` bit-for-bit. scale·r can be off by an ulp after
    PEFT's division, so look at the neighbouring floats; prefer an integer when it is exact."""
    denom = math.sqrt(rank) if rslora else float(rank)
    alpha = scale * denom
    near = round(alpha)
    if near != 0 and lora_scale(float(near), rank, rslora) == scale:
        return float(near)
    cands = [alpha]
    up = down = alpha
    for _ in range(8):
        up, down = math.nextafter(up, math.inf), math.nextafter(down, -math.inf)
        cands += [up, down]
    for cand in cands:
        if lora_scale(cand, rank, rslora) == scale:
            return cand
    return alpha


class AdapterConfig(BaseModel):
    """The fields of a PEFT LoraConfig that change what a layer's update is (meaningful ranges only)."""

    model_config = ConfigDict(extra="ignore")

    peft_type: str = "LORA"
    r: int = Field(8, le=MAX_RANK)
    lora_alpha: Alpha = 8.0
    use_rslora: bool = False
    use_dora: bool = False
    rank_pattern: dict[str, Rank] = Field(default_factory=dict)
    alpha_pattern: dict[str, Alpha] = Field(default_factory=dict)
    fan_in_fan_out: bool = False
    modules_to_save: list[str] | None = None
    target_modules: list[str] | str | None = None
    base_model_name_or_path: str | None = None
    task_type: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict, exclude=True)

    def rank_for(self, module: str) -> int:
        key = pattern_key(list(self.rank_pattern), module)
        return int(self.rank_pattern[key]) if key is not None else int(self.r)

    def alpha_for(self, module: str) -> float:
        key = pattern_key(list(self.alpha_pattern), module)
        return float(self.alpha_pattern[key]) if key is not None else float(self.lora_alpha)

    def scale_for(self, module: str, r: int | None = None) -> float:
        """PEFT's `scaling`: alpha/r, or alpha/sqrt(r) with rsLoRA."""
        r = self.rank_for(module) if r is None else r
        return lora_scale(self.alpha_for(module), r, self.use_rslora)


def load_adapter_config(path: Path) -> AdapterConfig:
    """Parse and validate adapter_config.json; anything we cannot audit faithfully is an AdapterError."""
    path = Path(path)
    if not path.is_file():
        raise AdapterError(f"missing adapter config: {path}")
    try:
        raw = loads_json(read_text(path, "adapter config"), str(path))
    except MalformedInput as exc:
        raise AdapterError(str(exc)) from None
    if not isinstance(raw, dict):
        raise AdapterError(f"{path} must hold a JSON object, got {type(raw).__name__}")
    peft_type = str(raw.get("peft_type", "LORA")).upper()
    if peft_type in UNSUPPORTED_TYPES:
        raise AdapterError(f"unsupported adapter type {peft_type}: {UNSUPPORTED_TYPES[peft_type]}")
    if peft_type != "LORA":
        raise AdapterError(f"unsupported adapter type {peft_type}: only LoRA (incl. DoRA, rsLoRA) is audited")
    if raw.get("target_parameters"):
        raise AdapterError(
            "unsupported adapter: LoRA on `target_parameters` (nn.Parameter targets, e.g. MoE experts) "
            "has no per-module B·A pair to audit"
        )
    for key in ("rank_pattern", "alpha_pattern"):
        if raw.get(key) is None:
            raw[key] = {}
    if isinstance(raw.get("modules_to_save"), str):
        raw["modules_to_save"] = [raw["modules_to_save"]]
    try:
        cfg = AdapterConfig.model_validate(raw)
    except ValidationError as exc:
        raise AdapterError(
            f"invalid {path.name}: {describe_validation_error(exc, 'config', limit=1)}"
        ) from None
    if cfg.r < 1:
        raise AdapterError(f"invalid {path.name}: r must be ≥ 1, got {cfg.r}")
    cfg.raw = raw
    return cfg
