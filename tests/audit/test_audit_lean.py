"""The adapter commands' lean path: no torch/transformers/peft in the process, and the numpy
codecs and statistics that replace torch's are exact (bit for bit where torch defines them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from gradience.audit import audit_adapter
from gradience.audit.metrics import percentile
from gradience.audit.store import bf16_to_f32, cast_into, f32_to_bf16
from tiny_models import make_adapter

SRC = str(Path(__file__).resolve().parents[2] / "src")
HEAVY = ("torch", "transformers", "peft", "datasets", "matplotlib", "ray", "scipy")
PROBE = (
    "import runpy, sys, json\n"
    "sys.argv = ['gradience', *json.loads(sys.argv[1])]\n"
    "try:\n"
    "    runpy.run_module('gradience', run_name='__main__')\n"
    "except SystemExit as exc:\n"
    "    code = exc.code\n"
    "else:\n"
    "    code = 0\n"
    f"print(json.dumps({{'code': code, 'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}), file=sys.stderr)\n"
)


def _run(*args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": SRC}
    res = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(list(args))], capture_output=True, text=True, env=env
    )
    return json.loads(res.stderr.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("llama")
    make_adapter(path, arch="llama", r=4)
    return path


def test_audit_and_compress_import_no_torch(adapter, tmp_path):
    assert _run("audit", "--peft-dir", str(adapter), "--json") == {"code": 0, "heavy": []}
    out = _run("compress", "--peft-dir", str(adapter), "--out", str(tmp_path / "o"), "--rank", "2")
    assert out == {"code": 0, "heavy": []}
    assert _run("--help") == {"code": 0, "heavy": []}
    assert _run("audit", "--peft-dir", str(tmp_path / "missing")) == {"code": 2, "heavy": []}


def test_bf16_adapter_audit_equals_its_float32_copy(adapter, tmp_path):
    """bf16 is widened to float32 by a bit shift: exact, so the audit sees the same numbers."""
    sd = load_file(str(adapter / "adapter_model.safetensors"))
    for name, dtype in (("bf16", torch.bfloat16), ("f32", torch.float32)):
        d = tmp_path / name
        d.mkdir()
        (d / "adapter_config.json").write_bytes((adapter / "adapter_config.json").read_bytes())
        rounded = {k: v.to(torch.bfloat16).to(dtype) for k, v in sd.items()}
        save_file(rounded, str(d / "adapter_model.safetensors"))
    a, b = audit_adapter(tmp_path / "bf16"), audit_adapter(tmp_path / "f32")
    for la, lb in zip(a.layers, b.layers, strict=True):
        np.testing.assert_array_equal(la.sigma, lb.sigma)


@pytest.mark.parametrize("subnormal", [False, True])
def test_float16_widening_is_exact_on_both_paths(subnormal):
    """numpy's cast for mostly normal values, the table look-up for subnormal-heavy arrays:
    both give every float16 bit pattern's exact value (inf, NaN and -0 included)."""
    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    tiny = np.arange(1, 1024, dtype=np.uint16).view(np.float16)  # the positive subnormals
    x = np.concatenate([every, np.tile(tiny, 64 if subnormal else 0)])
    out = np.empty(x.shape)
    cast_into(out, x)
    ref = x.astype(np.float64)
    np.testing.assert_array_equal(out.view(np.uint64), ref.view(np.uint64))


def _float32_cases(rng: np.random.Generator) -> np.ndarray:
    scaled = rng.standard_normal(200_000) * 10.0 ** rng.integers(-40, 38, 200_000)
    return np.concatenate([
        scaled.astype(np.float32),
        rng.integers(0, 1 << 32, 200_000, dtype=np.uint64).astype(np.uint32).view(np.float32),  # any bits
        np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 3.3895314e38, 1e-45], dtype=np.float32),
    ])  # fmt: skip


def test_bf16_codecs_match_torch_bit_for_bit():
    every = np.arange(1 << 16, dtype=np.uint16)
    ref = torch.from_numpy(every.view(np.int16)).view(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(bf16_to_f32(every).view(np.uint32), ref.view(np.uint32))
    rng = np.random.default_rng(0)
    with np.errstate(over="ignore"):  # the widest magnitudes overflow to ±inf: kept as cases
        x = _float32_cases(rng)
    want = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    got = f32_to_bf16(x)
    nan = np.isnan(x)
    np.testing.assert_array_equal(got[~nan], want[~nan])
    assert np.isnan(bf16_to_f32(got[nan])).all()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False) | st.integers(0, 64).map(float), min_size=1, max_size=60),
    st.floats(0, 100),
)
def test_percentile_is_numpys(values, q):
    assert percentile(values, q) == float(np.percentile(np.asarray(values), q))
