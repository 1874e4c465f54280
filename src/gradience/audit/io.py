"""Adapter I/O: pair every lora_A with its lora_B and stream the tensors one layer at a time.

Memory stays flat in the adapter's size: each pair is read only when its layer is audited
(`store.TensorStore`: numpy, positioned reads; torch only for `.bin` files, weights-only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from gradience.audit.config import AdapterConfig, load_adapter_config
from gradience.audit.errors import AdapterError
from gradience.audit.parallel import ordered_map
from gradience.audit.spectra import Workspace
from gradience.audit.store import TensorStore, bf16_to_f32, decode

R = TypeVar("R")

PREFIX = "base_model.model."
_FACTOR_TAGS = ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector")
_KOHYA_MARKERS = ("lora_down", "lora_up", "lora_unet_", "lora_te_")


@dataclass
class LayerSpec:
    """One adapted module: where its factors live and PEFT's resolved rank, alpha and scale."""

    name: str  # module path without `base_model.model.`, as PEFT's rank_pattern sees it
    a_key: str
    b_key: str
    kind: str  # "linear" | "embedding" | "conv"
    r: int
    alpha: float
    scale: float
    in_features: int
    out_features: int
    params: int
    magnitude_key: str | None = None
    adapter_name: str | None = None


def split_key(key: str) -> tuple[str, str, str | None, str] | None:
    """`<module>.<tag>[.<adapter>][.weight|.bias]` → (module, tag, adapter, leaf), or None."""
    parts = key.split(".")
    for i, part in enumerate(parts):
        if part in _FACTOR_TAGS:
            module = ".".join(parts[:i])
            rest = parts[i + 1 :]
            leaf = rest.pop() if rest and rest[-1] in ("weight", "bias") else ""
            if len(rest) > 1:
                return None
            return module, part, (rest[0] if rest else None), leaf
    return None


def strip_prefix(module: str) -> str:
    return module[len(PREFIX) :] if module.startswith(PREFIX) else module


def _find_weights(peft_dir: Path) -> Path:
    for name in ("adapter_model.safetensors", "adapter_model.bin"):
        if (peft_dir / name).is_file():
            return peft_dir / name
    raise AdapterError(f"no adapter_model.safetensors or adapter_model.bin in {peft_dir}")


@dataclass
class Adapter:
    """An opened adapter: its config, its layers (in file order) and everything else it trains."""

    peft_dir: Path
    config: AdapterConfig
    weights_path: Path
    layers: list[LayerSpec]
    other_keys: list[str] = field(default_factory=list)  # modules_to_save, lora biases, tokens …
    other_params: int = 0
    magnitude_params: int = 0
    _store: TensorStore | None = field(default=None, repr=False)

    @property
    def lora_params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def trainable_params(self) -> int:
        return self.lora_params + self.magnitude_params + self.other_params

    def tensor(self, key: str) -> np.ndarray:
        """A stored tensor as numbers (bf16 widened to float32)."""
        assert self._store is not None
        return decode(self._store.read(key), self._store.code(key))

    def shape(self, key: str) -> tuple[int, ...]:
        assert self._store is not None
        return tuple(self._store.shape(key))

    def stored(self, key: str) -> tuple[str, np.ndarray]:
        """(safetensors dtype code, storage array): the bytes as they are, for copying."""
        assert self._store is not None
        return self._store.code(key), self._store.read(key)

    def factors(self, layer: LayerSpec, ws: Workspace | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(A, B) as matrices with ΔW = scale·B·A, A (r×in), B (out×r); conv kernels are flattened.
        With `ws`, they are views into its buffers, valid until the next call with that `ws`."""
        store = self._store
        assert store is not None
        keys = [layer.a_key, layer.b_key]
        raw = ws.take("raw", store.nbytes(keys), np.uint8) if ws is not None else None
        a, b = store.read_many(keys, raw)
        if a.dtype == np.uint16 or b.dtype == np.uint16:  # bf16 bits: widen (into ws if given)
            wide = ws.take("wide", a.size + b.size, np.float32) if ws is not None else None
            a = _widen(a, None if wide is None else wide[: a.size])
            b = _widen(b, None if wide is None else wide[a.size :])
        return a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)

    def iter_factors(self, reuse_buffers: bool = False) -> Iterator[tuple[LayerSpec, np.ndarray, np.ndarray]]:
        """Each layer's (spec, A, B). With reuse_buffers, A and B are only valid until the next step."""
        ws = Workspace() if reuse_buffers else None
        for layer in self.layers:
            a, b = self.factors(layer, ws)
            yield layer, a, b

    def map_layers(
        self,
        fn: Callable[[LayerSpec, np.ndarray, np.ndarray, Workspace], R],
        layers: list[LayerSpec] | None = None,
        workers: int | None = None,
    ) -> Iterator[R]:
        """fn(spec, A, B, workspace) for each layer on a few threads, results in layer order.
        A and B live in the thread's workspace: fn must not keep them past its return."""

        def one(spec: LayerSpec, ws: Workspace) -> R:
            return fn(spec, *self.factors(spec, ws), ws)

        return ordered_map(one, self.layers if layers is None else layers, workers)


def _widen(x: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    if x.dtype != np.uint16:
        return x
    return bf16_to_f32(x, None if out is None else out.reshape(x.shape))


def open_adapter(peft_dir: Path, adapter_config: Path | None = None, weights: Path | None = None) -> Adapter:
    """Open a PEFT LoRA adapter folder; every unreadable input is an AdapterError naming the cause."""
    peft_dir = Path(peft_dir)
    if not peft_dir.is_dir():
        raise AdapterError(f"adapter directory not found: {peft_dir}")
    cfg_path = Path(adapter_config) if adapter_config else peft_dir / "adapter_config.json"
    if not cfg_path.is_file() and adapter_config is None:
        _refuse_kohya(peft_dir, weights)
    config = load_adapter_config(cfg_path)
    weights_path = Path(weights) if weights else _find_weights(peft_dir)
    store = TensorStore(weights_path)
    layers, other_keys, other_params, magnitude_params = _pair(store, config, weights_path)
    return Adapter(peft_dir, config, weights_path, layers, other_keys, other_params, magnitude_params, store)


def _refuse_kohya(peft_dir: Path, weights: Path | None) -> None:
    candidates = [weights] if weights else sorted(peft_dir.glob("*.safetensors"))
    for path in candidates:
        try:
            keys = TensorStore(Path(path)).keys()
        except AdapterError:
            continue
        if any(m in k for k in keys for m in _KOHYA_MARKERS):
            raise AdapterError(
                f"{path.name} is a kohya/sd-scripts LoRA (lora_down/lora_up keys, no adapter_config.json); "
                "only PEFT adapters are audited — convert it to PEFT format first"
            )
    named = sorted(d.name for d in peft_dir.iterdir() if (d / "adapter_config.json").is_file())
    hint = (
        f" (PEFT saves named adapters in subfolders: found {', '.join(named)}; pass --peft-dir {peft_dir / named[0]})"
        if named
        else ""
    )
    raise AdapterError(f"missing adapter config: {peft_dir / 'adapter_config.json'}{hint}")


def _pair(
    store: TensorStore, config: AdapterConfig, path: Path
) -> tuple[list[LayerSpec], list[str], int, int]:
    groups: dict[tuple[str, str | None], dict[str, str]] = {}
    other_keys: list[str] = []
    for key in store.keys():
        parsed = split_key(key)
        if parsed is None or (parsed[3] == "bias"):
            other_keys.append(key)
            continue
        module, tag, adapter, _ = parsed
        groups.setdefault((module, adapter), {})[tag] = key
    adapters = sorted({a for (_, a) in groups if a is not None})
    if len(adapters) > 1:
        raise AdapterError(
            f"{path.name} holds several adapters ({', '.join(adapters)}); save them separately"
        )
    layers: list[LayerSpec] = []
    magnitude_params = 0
    for (module, adapter), tags in groups.items():
        name = strip_prefix(module)
        emb = "lora_embedding_A" in tags or "lora_embedding_B" in tags
        a_key = tags.get("lora_embedding_A" if emb else "lora_A")
        b_key = tags.get("lora_embedding_B" if emb else "lora_B")
        if a_key is None or b_key is None:
            missing = ("lora_embedding_" if emb else "lora_") + ("A" if a_key is None else "B")
            raise AdapterError(f"module {name}: {missing} is missing (unpaired LoRA factor)")
        a_shape, b_shape = store.shape(a_key), store.shape(b_key)
        if len(a_shape) < 2 or len(b_shape) < 2:
            raise AdapterError(f"module {name}: LoRA factors must be matrices, got {a_shape} and {b_shape}")
        if 0 in a_shape or 0 in b_shape:
            raise AdapterError(f"module {name}: a LoRA factor has an empty dimension ({a_shape}, {b_shape})")
        r_a, r_b = a_shape[0], b_shape[1]
        if r_a != r_b:
            raise AdapterError(
                f"module {name}: lora_A {list(a_shape)} and lora_B {list(b_shape)} do not fit "
                f"(A has {r_a} rows, B has {r_b} columns)"
            )
        r = config.rank_for(name)
        if r != r_a:
            raise AdapterError(
                f"module {name}: weights have rank {r_a} but adapter_config resolves r={r} "
                "(check rank_pattern / --adapter-config)"
            )
        in_features = 1
        for d in a_shape[1:]:
            in_features *= d
        mag = tags.get("lora_magnitude_vector")
        if mag is not None:
            magnitude_params += store.numel(mag)
        layers.append(
            LayerSpec(
                name=name,
                a_key=a_key,
                b_key=b_key,
                kind="embedding" if emb else ("conv" if len(a_shape) > 2 else "linear"),
                r=r,
                alpha=config.alpha_for(name),
                scale=config.scale_for(name, r),
                in_features=in_features,
                out_features=b_shape[0],
                params=store.numel(a_key) + store.numel(b_key),
                magnitude_key=mag,
                adapter_name=adapter,
            )
        )
    if not layers:
        raise AdapterError(f"{path.name} contains no LoRA factor pairs (lora_A/lora_B)")
    other_params = sum(store.numel(k) for k in other_keys)
    return layers, other_keys, other_params, magnitude_params
