"""The update's size against the base weight it is added to: ‖ΔW‖₂/‖W‖₂ and ‖ΔW‖_F/‖W‖_F.

Base weights are streamed from the base model's safetensors one tensor at a time (positioned
reads into one reused buffer; no model is built and no file is memory-mapped), so memory stays
at about one weight matrix whatever the model's size. Only the tensors the adapter touches are read.

‖W‖_F is summed in float64 over row blocks. ‖W‖₂ is exact (largest eigenvalue of the short-side
Gram matrix, float64) when min(out, in) ≤ EXACT_MAX_DIM; otherwise power iteration on WᵀW in
float32 from a fixed start, stopped when the estimate changes by less than POWER_RTOL (relative)
between steps or after POWER_MAX_STEPS. The estimate only grows towards ‖W‖₂, so it is a lower
bound; on trained weights, whose top singular value is separated, it converges in tens of steps.

Results are cached per base under `<cache>/base_norms/<fingerprint>.json`, the fingerprint being a
SHA-256 over each weights file's name, size, mtime and header (names, dtypes, shapes, offsets) —
metadata, not the bytes, so a rewritten file (new mtime) is re-read and a cache hit reads nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gradience.audit.errors import AdapterError
from gradience.audit.metrics import median
from gradience.audit.report import AuditReport, BaseRelative, BaseSummary
from gradience.files import loads_json, write_json_atomic

EXACT_MAX_DIM = 512
POWER_RTOL = 1e-5
POWER_MAX_STEPS = 300
_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16}


@dataclass(frozen=True)
class _Entry:
    path: Path
    dtype: str
    shape: tuple[int, ...]
    offset: int
    nbytes: int


class BaseWeights:
    """The tensors of a base model folder's safetensors files (single file or sharded)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise AdapterError(f"base model folder not found: {self.folder}")
        files = sorted(self.folder.glob("*.safetensors"))
        if not files:
            raise AdapterError(
                f"no .safetensors weights in base model folder {self.folder} (only safetensors are streamed)"
            )
        self.entries: dict[str, _Entry] = {}
        digest = hashlib.sha256()
        for path in files:
            header, start = _header(path)
            st = path.stat()
            digest.update(f"{path.name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
            digest.update(hashlib.sha256(header).digest())
            for key, info in json.loads(header).items():
                if key == "__metadata__" or info.get("dtype") not in _DTYPES:
                    continue
                begin, end = info["data_offsets"]
                if start + end > st.st_size:
                    raise AdapterError(f"truncated safetensors file {path}: {key} runs past the end")
                self.entries[key] = _Entry(
                    path, info["dtype"], tuple(info["shape"]), start + begin, end - begin
                )
        self.fingerprint = digest.hexdigest()
        self._raw = np.empty(0, dtype=np.uint8)
        self._f32 = np.empty(0, dtype=np.float32)

    def read(self, key: str) -> np.ndarray:
        """The tensor as a 2-D float array (float32 or float64), valid until the next read. Half
        precision is widened in ~16 MB chunks straight into one reused float32 buffer, so the peak
        is the float32 matrix, not the file's copy beside it."""
        e = self.entries[key]
        rows = e.shape[0] if e.shape else 1
        with open(e.path, "rb", buffering=0) as fh:
            if e.dtype in ("F32", "F64"):
                return (
                    self._pread(fh, e, e.offset, e.nbytes, self._grow("_raw", e.nbytes, np.uint8))
                    .view(_DTYPES[e.dtype])
                    .reshape(rows, -1)
                )
            n = e.nbytes // 2
            out = self._grow("_f32", n, np.float32)[:n]
            step = 1 << 23  # entries per chunk
            chunk = self._grow("_raw", 2 * min(step, n), np.uint8)
            for i in range(0, n, step):
                m = min(step, n - i)
                half = self._pread(fh, e, e.offset + 2 * i, 2 * m, chunk).view(_DTYPES[e.dtype])
                if e.dtype == "BF16":  # bf16 is the top half of a float32
                    bits = out[i : i + m].view(np.uint32)
                    bits[...] = half
                    bits <<= 16
                else:
                    out[i : i + m] = half
            return out.reshape(rows, -1)

    def _grow(self, name: str, n: int, dtype: type) -> np.ndarray:
        buf = getattr(self, name)
        if buf.size < n:
            buf = np.empty(n, dtype=dtype)
            setattr(self, name, buf)
        return buf

    @staticmethod
    def _pread(fh, e: _Entry, offset: int, nbytes: int, buf: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
        view = buf.view(np.uint8)[:nbytes]
        if nbytes and os.preadv(fh.fileno(), [memoryview(view)], offset) != nbytes:
            raise AdapterError(f"truncated tensor in {e.path}")
        return view


def _header(path: Path) -> tuple[bytes, int]:
    try:
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > 100_000_000:
                raise ValueError("header too large")
            header = fh.read(n)
        json.loads(header)
    except (struct.error, ValueError) as exc:
        raise AdapterError(f"corrupt safetensors file {path}: {exc}") from None
    return header, 8 + n


def frobenius(w: np.ndarray) -> float:
    total = 0.0
    step = max(1, (1 << 22) // max(1, w.shape[1]))  # ~4M entries per block
    for i in range(0, w.shape[0], step):
        block = w[i : i + step].astype(np.float64)
        total += float(np.einsum("ij,ij->", block, block))
    return math.sqrt(total)


def spectral(w: np.ndarray, exact_max_dim: int = EXACT_MAX_DIM) -> tuple[float, str]:
    """(‖W‖₂, "exact" | "power"); see the module docstring for the tolerance."""
    m, n = w.shape
    if min(m, n) <= exact_max_dim:
        w64 = w.astype(np.float64)
        gram = w64 @ w64.T if m <= n else w64.T @ w64
        return math.sqrt(max(float(np.linalg.eigvalsh(gram)[-1]), 0.0)), "exact"
    v = np.random.default_rng(0).standard_normal(n).astype(w.dtype)
    v /= np.linalg.norm(v)
    est = 0.0
    for _ in range(POWER_MAX_STEPS):
        u = w @ v
        v = w.T @ u
        nv = float(np.linalg.norm(v))
        if nv == 0.0:
            return 0.0, "power"
        new = math.sqrt(nv)  # ‖WᵀW v‖ for unit v: σ₁² in the limit
        v /= nv
        if abs(new - est) <= POWER_RTOL * new:
            return new, "power"
        est = new
    return est, "power"


def match_key(name: str, keys: set[str]) -> str | None:
    """The base weight of adapted module `name`: `name.weight`, else with leading path parts
    dropped (a base saved without its task wrapper, e.g. BertModel under BertForSequenceClassification),
    else the one key ending in `.name.weight`."""
    parts = name.split(".")
    for i in range(len(parts)):
        key = ".".join(parts[i:]) + ".weight"
        if key in keys:
            return key
    tails = [k for k in keys if k.endswith("." + name + ".weight")]
    return tails[0] if len(tails) == 1 else None


def default_cache_dir() -> Path:
    env = os.environ.get("GRADIENCE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "gradience"


def attach_base_norms(
    report: AuditReport,
    base_folder: Path,
    *,
    cache_dir: Path | None = None,
    exact_max_dim: int = EXACT_MAX_DIM,
) -> None:
    """Set every layer's `base_relative` from the base model in `base_folder` (AdapterError if a
    layer has no base weight of its shape: the adapter was not trained on this base)."""
    base = BaseWeights(base_folder)
    cache_path = (cache_dir or default_cache_dir()) / "base_norms" / f"{base.fingerprint}.json"
    cache: dict[str, dict] = {}
    if cache_path.is_file():
        try:
            loaded = loads_json(cache_path.read_text(encoding="utf-8"), str(cache_path))
            cache = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            cache = {}  # an unreadable cache is recomputed, never trusted
    keys, dirty = set(base.entries), False
    for la in report.layers:
        key = match_key(la.name, keys)
        if key is None:
            raise AdapterError(f"base model {base_folder} has no weight for adapted module {la.name}")
        shape = base.entries[key].shape
        if math.prod(shape) != la.in_features * la.out_features or shape[0] not in (
            la.in_features,
            la.out_features,
        ):
            raise AdapterError(
                f"base weight {key} is {list(shape)} but the adapter's {la.name} is "
                f"{la.out_features}×{la.in_features}: not this adapter's base model"
            )
        tag = f"{key}@{exact_max_dim}"
        if tag not in cache:
            w = base.read(key)
            s2, method = spectral(w, exact_max_dim)
            cache[tag] = {"spectral": s2, "frob": frobenius(w), "method": method}
            dirty = True
        c = cache[tag]
        la.base_relative = BaseRelative(
            base_key=key,
            base_spectral_norm=c["spectral"],
            base_frob_norm=c["frob"],
            spectral_ratio=la.sigma_max_scaled / c["spectral"] if c["spectral"] > 0 else math.inf,
            frob_ratio=la.frob_norm_scaled / c["frob"] if c["frob"] > 0 else math.inf,
            method=c["method"],
        )
    rel = [la.base_relative for la in report.layers if la.base_relative is not None]
    top = sorted(report.layers, key=lambda la: (-la.base_relative.spectral_ratio, la.name))[:5]  # type: ignore[union-attr]
    report.base_model = BaseSummary(
        base_model=str(base_folder),
        fingerprint=base.fingerprint,
        spectral_ratio_max=max(r.spectral_ratio for r in rel),
        spectral_ratio_median=median([r.spectral_ratio for r in rel]),
        frob_ratio_max=max(r.frob_ratio for r in rel),
        frob_ratio_median=median([r.frob_ratio for r in rel]),
        top_layers=[la.name for la in top],
    )
    if dirty:
        try:
            write_json_atomic(cache_path, cache)
        except OSError:
            pass  # a read-only cache dir only costs the next run a re-read
