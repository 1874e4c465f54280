"""A streaming safetensors writer: the header is written first (every shape is known once the
ranks are chosen), then each tensor's bytes as it is produced, so memory stays at one layer
instead of the whole output adapter (which `safetensors.torch.save_file` would hold at once).

Format (https://github.com/huggingface/safetensors): 8-byte little-endian header length N, N bytes
of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}} padded with
spaces to an 8-byte boundary, then the tensors' bytes back to back in the header's offset order.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import torch

DTYPE_CODES: dict[torch.dtype, str] = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
    torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2",
}
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

    def write(self, name: str, tensor: torch.Tensor) -> None:
        """Append the next tensor's bytes; name, dtype and shape must match the declared header."""
        if self._next >= len(self._order) or self._order[self._next] != name:
            raise ValueError(f"tensor {name!r} written out of the declared order")
        dtype, shape, nbytes = self._spec[name]
        if DTYPE_CODES.get(tensor.dtype) != dtype or tuple(tensor.shape) != shape:
            raise ValueError(
                f"tensor {name!r} is {tensor.dtype} {tuple(tensor.shape)}, declared {dtype} {shape}"
            )
        data = tensor_bytes(tensor)
        assert len(data) == nbytes
        self._fh.write(data)
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


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The tensor's raw little-endian bytes (works for bf16/fp8, which numpy cannot hold)."""
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()).cast("B")


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n
