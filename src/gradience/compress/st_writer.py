"""A streaming safetensors writer: the header is written first (every shape is known once the
ranks are chosen), then each tensor's bytes as it is produced, so memory stays at one layer
instead of the whole output adapter (which `safetensors.torch.save_file` would hold at once).

Format (https://github.com/huggingface/safetensors): 8-byte little-endian header length N, N bytes
of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}} padded with
spaces to an 8-byte boundary, then the tensors' bytes back to back in the header's offset order.

Tensors are numpy arrays in their storage form (`gradience.audit.store`: bf16 as uint16 bits,
fp8 as uint8); torch tensors are accepted too and converted at the boundary.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import numpy as np

# the numpy storage dtype each code is written from (numpy has no bf16/fp8: raw bits)
NUMPY_STORAGE = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
    "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?", "F8_E4M3": "u1", "F8_E5M2": "u1",
}  # fmt: skip
_TORCH_NAMES = {  # str(torch dtype) → code, so torch tensors are recognised without importing torch
    "torch.float64": "F64", "torch.float32": "F32", "torch.float16": "F16", "torch.bfloat16": "BF16",
    "torch.int64": "I64", "torch.int32": "I32", "torch.int16": "I16", "torch.int8": "I8",
    "torch.uint8": "U8", "torch.bool": "BOOL", "torch.float8_e4m3fn": "F8_E4M3",
    "torch.float8_e5m2": "F8_E5M2",
}  # fmt: skip
DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1}
DTYPE_SIZES.update({"BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1})


class SafetensorsStreamWriter:
    """Write `entries` (name, dtype code, shape), in that order, one tensor at a time."""

    def __init__(self, path: Path, entries: list[tuple[str, str, tuple[int, ...]]], metadata: dict[str, str]):
        self.path = Path(path)
        self._order = [name for name, _, _ in entries]
        self._spec: dict[str, tuple[str, tuple[int, ...], int]] = {}
        header: dict[str, object] = {"__metadata__": dict(metadata)}
        offset = 0
        for name, dtype, shape in entries:
            if dtype not in DTYPE_SIZES:
                raise ValueError(f"unsupported safetensors dtype {dtype} for {name}")
            nbytes = DTYPE_SIZES[dtype] * _numel(shape)
            header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            self._spec[name] = (dtype, tuple(shape), nbytes)
            offset += nbytes
        blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
        blob += b" " * (-(8 + len(blob)) % 8)
        self._next = 0
        self._fh: BinaryIO = open(self.path, "wb")  # noqa: SIM115 — closed in close()/__exit__
        self._fh.write(struct.pack("<Q", len(blob)))
        self._fh.write(blob)

    def write(self, name: str, tensor: Any) -> None:
        """Append the next tensor's bytes; name, dtype and shape must match the declared header."""
        if self._next >= len(self._order) or self._order[self._next] != name:
            raise ValueError(f"tensor {name!r} written out of the declared order")
        dtype, shape, nbytes = self._spec[name]
        code, data = _storage(tensor, dtype)
        if code != dtype or tuple(data.shape) != shape:
            raise ValueError(f"tensor {name!r} is {code} {tuple(data.shape)}, declared {dtype} {shape}")
        raw = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        assert len(raw) == nbytes
        self._fh.write(raw)
        self._next += 1

    def close(self) -> None:
        """Finish the file; it must hold every declared tensor (fsync'd, so a rename publishes it whole)."""
        if self._next != len(self._order):
            self._fh.close()
            raise ValueError(f"{len(self._order) - self._next} declared tensors were never written")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()

    def __enter__(self) -> SafetensorsStreamWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self._fh.close()


def _storage(tensor: Any, declared: str) -> tuple[str, np.ndarray]:
    """(the tensor's dtype code, its storage array). A numpy array of raw bits (uint16, uint8)
    stands for the declared bf16/fp8 code; a torch tensor is viewed as its raw bytes."""
    if isinstance(tensor, np.ndarray):
        if declared in NUMPY_STORAGE and tensor.dtype == np.dtype(NUMPY_STORAGE[declared]):
            return declared, tensor
        codes = [c for c, dt in NUMPY_STORAGE.items() if np.dtype(dt) == tensor.dtype]
        return (codes[0] if codes else str(tensor.dtype)), tensor
    import torch  # a torch tensor was given, so torch is already imported

    t = tensor.detach().cpu().contiguous()
    code = _TORCH_NAMES.get(str(t.dtype), str(t.dtype))
    if code not in NUMPY_STORAGE:
        return code, np.empty(0)
    bits = t.reshape(-1).view(torch.uint8).numpy()
    return code, bits.view(NUMPY_STORAGE[code]).reshape(tuple(t.shape))


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n
