"""Adapter I/O: pair every lora_A with its lora_B and stream the tensors one layer at a time.

Memory stays flat in the adapter's size: safetensors are memory-mapped and each pair is read
only when its layer is audited. `.bin` files are read with `torch.load(weights_only=True)`,
which refuses any pickle that would run code.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gradience.audit.config import AdapterConfig, load_adapter_config
from gradience.audit.errors import AdapterError

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


_ST_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}  # fmt: skip


class _Store:
    """Uniform read access to a safetensors file or a weights-only torch file.

    safetensors: the library validates the file once (header, offsets, coverage); tensors are
    then read with positioned reads into fresh buffers. Unlike reading through a memory map,
    pages read for one layer do not stay resident, so memory stays flat in the adapter's size.
    """

    def __init__(self, path: Path):
        self.path = path
        if not path.is_file():
            raise AdapterError(f"missing weights file: {path}")
        if path.stat().st_size == 0:
            raise AdapterError(f"empty weights file: {path}")
        _refuse_holes(path)
        self._sd: dict[str, torch.Tensor] | None = None
        self._meta: dict[str, tuple[torch.dtype, tuple[int, ...], int, int]] = {}
        self._scratch = torch.empty(0, dtype=torch.uint8)
        if path.suffix == ".safetensors":
            self._index_safetensors()
        else:
            self._load_pickle_free()

    def _index_safetensors(self) -> None:
        from safetensors import safe_open

        try:
            with safe_open(str(self.path), framework="pt", device="cpu") as st:
                self._keys = list(st.keys())
            with open(self.path, "rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(n))
        except Exception as exc:  # SafetensorError has no stable import path
            raise AdapterError(f"corrupt or truncated safetensors file {self.path}: {exc}") from None
        for key in self._keys:
            info = header[key]
            if info["dtype"] not in _ST_DTYPES:
                raise AdapterError(f"tensor {key!r} in {self.path} has unsupported dtype {info['dtype']}")
            begin, end = info["data_offsets"]
            self._meta[key] = (_ST_DTYPES[info["dtype"]], tuple(info["shape"]), 8 + n + begin, end - begin)

    def _load_pickle_free(self) -> None:
        try:
            # Read whole, not mmap-ed: only a full read checks every record (a corrupt record that
            # the audit never touches, e.g. the head, would otherwise pass unnoticed).
            sd = torch.load(str(self.path), map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise AdapterError(
                f"refused to load {self.path}: not a plain tensor file readable with weights_only=True ({msg})"
            ) from None
        if not isinstance(sd, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()
        ):
            raise AdapterError(f"{self.path} does not hold a dict of named tensors")
        odd = next((k for k, v in sd.items() if v.dtype not in _ST_DTYPES.values()), None)
        if odd is not None:
            raise AdapterError(f"tensor {odd!r} in {self.path} has unsupported dtype {sd[odd].dtype}")
        self._sd = sd
        self._keys = list(sd)

    def keys(self) -> list[str]:
        return self._keys

    def shape(self, key: str) -> tuple[int, ...]:
        if self._sd is not None:
            return tuple(self._sd[key].shape)
        return self._meta[key][1]

    def numel(self, key: str) -> int:
        return math.prod(self.shape(key))

    def get_many(self, keys: list[str], scratch: bool = False) -> list[torch.Tensor]:
        """Fresh tensors; with scratch=True, views into one reusable buffer (valid until the next
        call) — a streaming pass then allocates nothing per layer, so the heap cannot fragment."""
        if self._sd is not None:
            return [self._sd[k] for k in keys]
        out = []
        if scratch:
            spans = [(self._meta[k][3] + 7) // 8 * 8 for k in keys]  # 8-byte aligned slots
            if self._scratch.numel() < sum(spans):
                self._scratch = torch.empty(sum(spans), dtype=torch.uint8)
            starts = [sum(spans[:i]) for i in range(len(keys))]
        with open(self.path, "rb", buffering=0) as fh:
            for i, key in enumerate(keys):
                dtype, shape, offset, nbytes = self._meta[key]
                if scratch:
                    t = self._scratch[starts[i] : starts[i] + nbytes].view(dtype).view(shape)
                else:
                    t = torch.empty(shape, dtype=dtype)
                view = memoryview(t.view(torch.uint8).numpy()).cast("B") if nbytes else memoryview(b"")
                if nbytes and os.preadv(fh.fileno(), [view], offset) != nbytes:
                    raise AdapterError(f"truncated tensor {key!r} in {self.path}")
                out.append(t)
        return out

    def get(self, key: str) -> torch.Tensor:
        return self.get_many([key])[0]


def _refuse_holes(path: Path) -> None:
    """A sparse file claims bytes it does not hold (its holes read as zeros): a 16 KB file can
    claim a 1 GiB tensor. Refuse it before anything is mapped or allocated, so memory stays
    bounded by data really on disk. PEFT and safetensors write files without holes."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        try:
            hole = os.lseek(fh.fileno(), 0, os.SEEK_HOLE)
        except (OSError, AttributeError):  # no SEEK_HOLE here: every byte counts as data
            return
    if hole < size:
        raise AdapterError(
            f"{path} is a sparse file: it claims {size:,} bytes but has a hole from byte {hole:,} "
            "(bytes not on disk); refusing to read tensors that are not there — copy it without "
            "holes (cp --sparse=never) if it is genuine"
        )


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
    _store: _Store | None = field(default=None, repr=False)

    @property
    def lora_params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def trainable_params(self) -> int:
        return self.lora_params + self.magnitude_params + self.other_params

    def tensor(self, key: str) -> torch.Tensor:
        assert self._store is not None
        return self._store.get(key)

    def factors(self, layer: LayerSpec, scratch: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, B) as matrices with ΔW = scale·B·A, A (r×in), B (out×r); conv kernels are flattened."""
        assert self._store is not None
        a, b = self._store.get_many([layer.a_key, layer.b_key], scratch=scratch)
        return a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)

    def iter_factors(
        self, reuse_buffers: bool = False
    ) -> Iterator[tuple[LayerSpec, torch.Tensor, torch.Tensor]]:
        """Each layer's (spec, A, B). With reuse_buffers, A and B are only valid until the next step."""
        for layer in self.layers:
            a, b = self.factors(layer, scratch=reuse_buffers)
            yield layer, a, b


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
    store = _Store(weights_path)
    layers, other_keys, other_params, magnitude_params = _pair(store, config, weights_path)
    return Adapter(peft_dir, config, weights_path, layers, other_keys, other_params, magnitude_params, store)


def _refuse_kohya(peft_dir: Path, weights: Path | None) -> None:
    candidates = [weights] if weights else sorted(peft_dir.glob("*.safetensors"))
    for path in candidates:
        try:
            keys = _Store(Path(path)).keys()
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


def _pair(store: _Store, config: AdapterConfig, path: Path) -> tuple[list[LayerSpec], list[str], int, int]:
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
