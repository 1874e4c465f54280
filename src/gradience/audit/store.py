"""Read access to an adapter's tensors as numpy arrays, without importing torch for safetensors.

The audit and compress commands are mostly start-up: `import torch` alone costs more than the
exact audit of a 7B-shaped adapter. A safetensors file is a JSON header and raw little-endian
bytes, so numpy reads it natively; bf16, which numpy lacks, is held as its uint16 bit patterns
and widened to float32 by a 16-bit shift (exact: bf16 is the top half of a float32). Only a
`.bin` file needs torch (`torch.load(weights_only=True)`, which refuses any pickle that would
run code), and its tensors are converted to the same numpy form at the boundary.

Tensors are read with positioned reads into fresh or caller-owned buffers. Unlike reading
through a memory map, pages read for one layer do not stay resident, so memory stays flat in
the adapter's size.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

from gradience.audit.errors import AdapterError

# safetensors dtype code → numpy storage dtype (BF16 as raw bits); F8 and wider codes are refused
STORAGE = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}  # fmt: skip
FLOAT_CODES = ("F64", "F32", "F16", "BF16")


def bf16_to_f32(bits: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """bf16 bit patterns (uint16) → float32, exactly."""
    wide = np.left_shift(bits, 16, dtype=np.uint32, out=None if out is None else out.view(np.uint32))
    return wide.view(np.float32)


def f32_to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 → bf16 bit patterns (uint16), rounding to nearest even as torch does; NaN stays NaN."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    u = x.view(np.uint32)
    rounded = (u + (np.uint32(0x7FFF) + ((u >> 16) & 1))) >> 16
    rounded[np.isnan(x)] = 0x7FC0  # torch's canonical bf16 NaN
    return rounded.astype(np.uint16)


_F16_TABLE: list[np.ndarray] = []  # every float16 bit pattern's float64 value (512 KB), built once
SUBNORMAL_SHARE = 0.05  # above it a table look-up beats numpy's cast (measured: 3.5 vs 12 ns/value)


def cast_into(out: np.ndarray, x: np.ndarray) -> None:
    """out[...] = x (float64 out). numpy converts float16 one value at a time and takes a slow
    path for each subnormal (|x| < 6.1e-5, common in a trained lora_B: 43% of the benchmark
    adapter's B): ~4× slower than on normal values. A float16 array with many subnormals
    (judged on a sample) is converted by looking every bit pattern up in a table instead:
    exact, and the same speed whatever the values."""
    if x.dtype == np.float16 and x.size >= 4096 and x.flags.c_contiguous and out.flags.c_contiguous:
        bits = x.view(np.uint16).reshape(-1)
        sample = bits[::61]  # a prime stride: it cycles through the columns of any power-of-2 width
        subnormal = np.count_nonzero(((sample & 0x7C00) == 0) & ((sample & 0x03FF) != 0))
        if subnormal > SUBNORMAL_SHARE * sample.size:
            if not _F16_TABLE:
                _F16_TABLE.append(np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float64))
            np.take(_F16_TABLE[0], bits, out=out.reshape(-1), mode="wrap")
            return
    np.copyto(out, x, casting="unsafe")


def decode(stored: np.ndarray, code: str) -> np.ndarray:
    """A stored array as numbers: bf16 widened to float32, every other dtype as is."""
    return bf16_to_f32(stored) if code == "BF16" else stored


def encode(x: np.ndarray, code: str) -> np.ndarray:
    """Numbers → the storage form of `code` (bf16 as uint16 bits), contiguous."""
    if code == "BF16":
        return f32_to_bf16(x)
    return np.ascontiguousarray(x, dtype=STORAGE[code])


def _torch_codes() -> dict[Any, str]:
    import torch

    return {
        torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
        torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
        torch.uint8: "U8", torch.bool: "BOOL",
    }  # fmt: skip


class TensorStore:
    """The tensors of a safetensors file or a weights-only torch file, as numpy storage arrays.

    safetensors: the library validates the file once (header, offsets, coverage) without
    reading data (framework="numpy": no torch); the header's offsets are then read directly.
    """

    def __init__(self, path: Path):
        self.path = path
        if not path.is_file():
            raise AdapterError(f"missing weights file: {path}")
        if path.stat().st_size == 0:
            raise AdapterError(f"empty weights file: {path}")
        refuse_holes(path)
        self._bytes: dict[str, np.ndarray] | None = None  # .bin: each tensor's bytes, in memory
        self._meta: dict[str, tuple[str, tuple[int, ...], int, int]] = {}  # code, shape, offset, nbytes
        self.metadata: dict[str, str] = {}
        if path.suffix == ".safetensors":
            self._index_safetensors()
        else:
            self._load_pickle_free()

    def _index_safetensors(self) -> None:
        from safetensors import safe_open

        try:
            with safe_open(str(self.path), framework="numpy") as st:
                self._keys = list(st.keys())
                self.metadata = dict(st.metadata() or {})
            with open(self.path, "rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(n))
        except Exception as exc:  # SafetensorError has no stable import path
            raise AdapterError(f"corrupt or truncated safetensors file {self.path}: {exc}") from None
        for key in self._keys:
            info = header[key]
            if info["dtype"] not in STORAGE:
                raise AdapterError(f"tensor {key!r} in {self.path} has unsupported dtype {info['dtype']}")
            begin, end = info["data_offsets"]
            self._meta[key] = (info["dtype"], tuple(info["shape"]), 8 + n + begin, end - begin)

    def _load_pickle_free(self) -> None:
        import torch

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
        codes = _torch_codes()
        odd = next((k for k, v in sd.items() if v.dtype not in codes), None)
        if odd is not None:
            raise AdapterError(f"tensor {odd!r} in {self.path} has unsupported dtype {sd[odd].dtype}")
        self._bytes = {}
        for key, t in sd.items():
            flat = t.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
            self._bytes[key] = flat
            self._meta[key] = (codes[t.dtype], tuple(t.shape), 0, flat.nbytes)
        self._keys = list(sd)

    def keys(self) -> list[str]:
        return self._keys

    def code(self, key: str) -> str:
        return self._meta[key][0]

    def shape(self, key: str) -> tuple[int, ...]:
        return self._meta[key][1]

    def numel(self, key: str) -> int:
        return math.prod(self.shape(key))

    def nbytes(self, keys: list[str]) -> int:
        """Bytes `read_many(keys, buf)` needs in `buf` (each tensor in an 8-byte aligned slot)."""
        return sum((self._meta[k][3] + 7) // 8 * 8 for k in keys)

    def read_many(self, keys: list[str], buf: np.ndarray | None = None) -> list[np.ndarray]:
        """Storage arrays (bf16 as uint16), shaped. With `buf` (uint8, ≥ nbytes(keys)), they are
        views into it, valid until its next use: a streaming pass then allocates nothing per layer."""
        if self._bytes is not None:  # already in memory (read-only views)
            return [self._view(k, self._bytes[k]) for k in keys]
        out = []
        pos = 0
        with open(self.path, "rb", buffering=0) as fh:
            for key in keys:
                nbytes, offset = self._meta[key][3], self._meta[key][2]
                if buf is not None:
                    raw = buf[pos : pos + nbytes]
                    pos += (nbytes + 7) // 8 * 8
                else:
                    raw = np.empty(nbytes, dtype=np.uint8)
                if nbytes and os.preadv(fh.fileno(), [raw], offset) != nbytes:
                    raise AdapterError(f"truncated tensor {key!r} in {self.path}")
                out.append(self._view(key, raw))
        return out

    def _view(self, key: str, raw: np.ndarray) -> np.ndarray:
        code, shape = self._meta[key][:2]
        return raw.view(STORAGE[code]).reshape(shape)

    def read(self, key: str) -> np.ndarray:
        return self.read_many([key])[0]


def refuse_holes(path: Path) -> None:
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
