"""Fuzz every parser through the real CLI: exit code 0/1/2 only, no traceback, no hang, and exit 0
only for inputs an independent reader finds valid.

Inputs are seeded mutations (`fuzzlib.py`) of valid adapter configs, safetensors files, `.bin`
files, telemetry runs, bench YAML, policy YAML and check configs: CASES of each per CI run.
A failing case names its parser and index; `random.Random(f"{parser}-{index}")` replays it.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import fuzzlib
import pytest
import torch
import yaml

CASES = 250


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> fuzzlib.Seeds:
    return fuzzlib.Seeds(tmp_path_factory.mktemp("fuzz_seeds"))


def _folder(args: list[str]) -> Path:
    return Path(args[args.index("--peft-dir") + 1])


def _load_weights(folder: Path) -> dict[str, torch.Tensor]:
    if (folder / "adapter_model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(str(folder / "adapter_model.safetensors"))
    return torch.load(str(folder / "adapter_model.bin"), weights_only=True)


def _adapter_valid(args: list[str], stdout: str) -> str | None:
    """Exit 0 on an adapter: the reference reader loads it and agrees on every layer's σ_max."""
    folder = _folder(args)
    config = json.loads((folder / "adapter_config.json").read_text())
    weights = _load_weights(folder)
    if args[0] == "compress":
        out = Path(args[args.index("--out") + 1])
        _load_weights(out)
        return None if json.loads((out / "adapter_config.json").read_text())["r"] >= 1 else "bad output r"
    report = json.loads(stdout)
    for row in report["layers"]:
        a = weights[f"base_model.model.{row['name']}.lora_A.weight"].double()
        b = weights[f"base_model.model.{row['name']}.lora_B.weight"].double()
        if config.get("rank_pattern") or config.get("alpha_pattern"):
            continue  # patterns: the scale is PEFT's regex rule, tested against PEFT elsewhere
        r = a.shape[0]
        scale = float(config.get("lora_alpha", 8)) / (math.sqrt(r) if config.get("use_rslora") else r)
        ref = (
            float(torch.linalg.matrix_norm(scale * (b @ a), 2))
            if torch.isfinite(a).all() and torch.isfinite(b).all()
            else None
        )
        ours = row["sigma_max_scaled"]
        if ref is None:
            if row.get("finite", True) or not report["issues"]:
                return f"{row['name']}: non-finite factors not flagged"
        elif not math.isclose(ours, ref, rel_tol=1e-6, abs_tol=1e-12 * max(1.0, ref)):
            return f"{row['name']}: sigma_max {ours} vs reference {ref}"
    return None


def _telemetry_valid(args: list[str], stdout: str) -> str | None:
    path = Path(args[-1] if args[0] == "audit" else args[1])
    if args[0] == "audit":
        return None  # appended: checked below by the line count
    for raw in path.read_bytes().split(b"\n"):
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):
            continue
        if (
            isinstance(obj, dict)
            and obj.get("schema") == fuzzlib.SCHEMA
            and isinstance(obj.get("run_id"), str)
        ):
            return None
    return "exit 0 on a file with no telemetry event"


def _yaml_file(args: list[str], flag: str) -> Any:
    return yaml.safe_load(Path(args[args.index(flag) + 1]).read_text(encoding="utf-8"))


def _bench_valid(args: list[str], stdout: str) -> str | None:
    data = _yaml_file(args, "--config")
    ok = isinstance(data, dict) and isinstance((data.get("model") or {}).get("name"), str)
    ok = ok and bool((data.get("lora") or {}).get("target_modules"))
    return None if ok else "a bench config without model.name / lora.target_modules accepted"


def _policy_valid(args: list[str], stdout: str) -> str | None:
    data = _yaml_file(args, "--policy")
    margin = data.get("margin") if isinstance(data, dict) else None
    ok = isinstance(margin, (int, float)) and not isinstance(margin, bool) and 0 < margin < 1
    return None if ok else f"a policy with margin {margin!r} accepted"


def _check_valid(args: list[str], stdout: str) -> str | None:
    text = Path(args[1]).read_text(encoding="utf-8")
    data = json.loads(text) if args[1].endswith(".json") else yaml.safe_load(text)
    return None if isinstance(data, dict) else "a config that is not a mapping accepted"


ORACLES = {
    "adapter_config": _adapter_valid,
    "safetensors": _adapter_valid,
    "bin": _adapter_valid,
    "telemetry": _telemetry_valid,
    "bench_yaml": _bench_valid,
    "policy_yaml": _policy_valid,
    "check_config": _check_valid,
}


@pytest.mark.parametrize("parser", list(fuzzlib.GENERATORS))
def test_fuzzed_inputs_never_crash_hang_or_pass_invalid(
    parser: str, seeds: fuzzlib.Seeds, tmp_path: Path
) -> None:
    failures, codes, flagged = [], {0: 0, 1: 0, 2: 0}, 0
    for i in range(CASES):
        args = fuzzlib.GENERATORS[parser](random.Random(f"{parser}-{i}"), seeds, tmp_path)
        res = fuzzlib.run_cli(args)
        if isinstance(res.exception, fuzzlib.Hang):
            failures.append(f"{parser}-{i}: hang {args}")
            continue
        if res.exit_code not in (0, 1, 2) or "Traceback" in res.output:
            failures.append(f"{parser}-{i}: exit {res.exit_code}: {res.output.strip()[-300:]} {args}")
            continue
        codes[res.exit_code] += 1
        if res.exit_code == 2 and res.stderr.count("\n") != 1:
            failures.append(f"{parser}-{i}: exit 2 without exactly one line: {res.stderr!r}")
        if res.exit_code in (0, 1) and (why := ORACLES[parser](args, res.stdout)):
            failures.append(f"{parser}-{i}: {why} {args}")
        if res.exit_code == 0 and args[0] == "monitor":
            flagged += bool(json.loads(res.stdout)["summary"]["issues"])  # tolerated, and reported
    assert not failures, "\n".join(failures[:10])
    assert codes[2] + flagged >= CASES // 10, codes  # the mutator really produces bad input
