"""A seeded, structure-aware mutator for every parser the CLI exposes, and the CLI oracle.

Each generator takes a `random.Random` and a scratch folder and returns the CLI arguments for
one hostile input. Seeded, so a failure names its case and reproduces exactly.
"""

from __future__ import annotations

import copy
import json
import random
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

HOSTILE: list[Any] = [
    None, True, False, 0, -1, 1, 3, 2**31, 2**63, 10**30, -(10**30), 1e308, -1e308, 1e-320, 5e-324,
    float("nan"), float("inf"), float("-inf"), 0.5, -0.0, "", "x", "x" * 300, "1e308", "nan", "\u0000",
    "é\u202e", [], [1], ["a", 2], {}, {"a": 1}, {"": None},
]  # fmt: skip


DEEP = re.compile(r"""["']?DEEPNEST(list|dict)(\d+)["']?""")


def _deep_text(m: re.Match[str]) -> str:
    n = int(m[2])
    return "[" * n + "0" + "]" * n if m[1] == "list" else '{"k": ' * n + "0" + "}" * n


def hostile(rng: random.Random) -> Any:
    """A value from the hostile list; 5% a nest thousands deep (a placeholder the dumpers expand,
    since Python's own json and yaml cannot write what they cannot recurse into)."""
    if rng.random() < 0.05:
        return f"DEEPNEST{rng.choice(['list', 'dict'])}{rng.choice([50, 500, 5000])}"
    return copy.deepcopy(rng.choice(HOSTILE))


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if len(prefix) > 12:  # inside a planted deep nest: do not walk it
        return out
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def mutate_tree(obj: Any, rng: random.Random, n: int | None = None) -> Any:
    """Replace, delete or add values at random places of a JSON/YAML tree."""
    obj = json.loads(json.dumps(obj))  # a plain copy (deepcopy recurses)
    for _ in range(n or rng.choice([1, 1, 1, 2, 3])):
        paths = _paths(obj)
        path = rng.choice(paths)
        if not path:
            if rng.random() < 0.2:
                return hostile(rng)
            continue
        parent = obj
        for p in path[:-1]:
            parent = parent[p]
        action = rng.random()
        if action < 0.7:
            parent[path[-1]] = hostile(rng)
        elif action < 0.85 and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[rng.choice(["extra", "r", "lora_alpha", "seeds", "margin", "step", "event"])] = hostile(
                rng
            )
    return obj


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice([1, 2, 4, 8])):
        op = rng.random()
        if not buf:
            buf = bytearray(rng.randbytes(rng.randint(0, 64)))
            continue
        i = rng.randrange(len(buf))
        if op < 0.4:
            buf[i] ^= 1 << rng.randrange(8)
        elif op < 0.55:
            del buf[i:]
        elif op < 0.7:
            buf[i:i] = rng.randbytes(rng.randint(1, 32))
        elif op < 0.8:
            buf[i : i + 8] = rng.choice([b"\xff" * 8, b"\x00" * 8, struct.pack("<Q", 2**63)])
        elif op < 0.9:
            j = rng.randrange(len(buf))
            buf[i:i] = buf[j : j + rng.randint(1, 64)]
        else:
            buf[i] = rng.choice(b'{}[]",:0e-9\n\t\\')
    return bytes(buf)


def dump_json(obj: Any) -> str:
    return DEEP.sub(_deep_text, json.dumps(obj))


def dump_yaml(obj: Any) -> str:
    return DEEP.sub(_deep_text, yaml.safe_dump(obj, width=10**6))


YAML_SPECIALS = [
    b"a: &a [1, 2]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
    b"d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
    b"f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n",
    b"\xff\xfe\x00a: 1\n",
    b"model: {name: m}\nlora: {target_modules: [q]}\n\xc3\x28: 1\n",
    b"[" * 5000 + b"]" * 5000,
    b"{a: " * 3000 + b"1" + b"}" * 3000,
    b"!!python/object/apply:os.system ['true']\n",
    b"a: !!binary AAAA\n",
    b"a: 1\na: 2\n",
    b"? [1, 2]\n: x\n",
    b"",
    b"---\n---\n",
    b"\t- x\n",
]


def mutate_text(text: str, rng: random.Random, tree: Any, dump: Callable[[Any], str]) -> bytes:
    roll = rng.random()
    if roll < 0.6:
        return dump(mutate_tree(tree, rng)).encode("utf-8", "surrogatepass")
    if roll < 0.75:
        return rng.choice(YAML_SPECIALS)
    return mutate_bytes(text.encode(), rng)


# --- the seeds every mutation starts from ------------------------------------------------------

SCHEMA = "gradience.vnext.telemetry/v1"
BENCH = {
    "model": {"name": "minilm-l6"},
    "task": {"dataset": "glue", "subset": "sst2", "eval_split": "heldout"},
    "train": {"max_steps": 500, "lr": 1e-3, "eval_samples": 2000, "train_samples": 2000},
    "lora": {"probe_r": 32, "alpha": 64, "dropout": 0.1, "target_modules": ["query", "value"]},
    "compression": {"seeds": [1, 2, 3], "allowed_ranks": [1, 2, 4, 8, 16, 32], "acc_tolerance": 0.025,
                    "variants_to_test": ["uniform_median", "truncate_median"]},
}  # fmt: skip
POLICY = {
    "name": "p", "version": "1", "margin": 0.025, "min_pass_fraction": "2/3", "worst_seed_floor": -0.025,
    "confidence": 0.95, "require_noninferiority": False, "scope": "fuzz",
}  # fmt: skip
CHECK = {
    "model_name": "meta-llama/Llama-2-7b", "dataset_name": "gsm8k", "lr": 2e-4, "weight_decay": 0.01,
    "lora": {"r": 64, "alpha": 16, "target_modules": ["q_proj", "v_proj", "gate_proj"], "use_rslora": True},
    "training": {"batch_size": 8, "max_steps": 1000},
}  # fmt: skip


def run_lines() -> list[dict[str, Any]]:
    env = {"schema": SCHEMA, "ts": 1.0, "run_id": "r1"}
    return [
        {**env, "event": "run_start", "step": None, "config": {"model_name": "m", "lora": {"r": 16, "alpha": 32}}},
        {**env, "event": "train_step", "step": 1, "loss": 2.0, "lr": 1e-4, "grad_norm": 1.0},
        {**env, "event": "eval", "step": 1, "split": "train", "metrics": {"loss": 1.0, "ppl": 2.7, "n": 10}},
        {**env, "event": "eval", "step": 1, "split": "val", "metrics": {"loss": 1.5, "accuracy": 0.8, "n": 10}},
        {**env, "event": "metrics", "step": 1, "kind": "lora_audit",
         "metrics": {"stable_rank_mean": 2.0, "utilization_mean": 0.1, "energy_rank_90_p90": 4, "r": 16}},
        {**env, "event": "alert", "step": 1, "severity": "warning", "code": "c", "message": "m"},
        {**env, "event": "metrics", "step": 1, "kind": "guard", "metrics": {"action": "rollback"}},
        {**env, "event": "run_end", "step": 1, "status": "ok"},
    ]  # fmt: skip


ODD_BIN_OBJECTS: list[Callable[[dict[str, torch.Tensor]], Any]] = [
    lambda sd: list(sd.values()),
    lambda sd: {k: "text" for k in sd},
    lambda sd: {k: 1 for k in sd},
    lambda sd: {k: v.to(torch.complex64) for k, v in sd.items()},
    lambda sd: {k: v.to(torch.int32) for k, v in sd.items()},
    lambda sd: {k: v.to(torch.bool) for k, v in sd.items()},
    lambda sd: {"state_dict": sd},
    lambda sd: {k: v[:0] for k, v in sd.items()},
    lambda sd: {k: v.reshape(-1) for k, v in sd.items()},
    lambda sd: {k: v.t() for k, v in sd.items()},
    lambda sd: {k: torch.tensor(1.0) for k in sd},
    lambda sd: {k: v.unsqueeze(0) for k, v in sd.items()},
    lambda sd: {**sd, 3: torch.zeros(1)},
    lambda sd: {k: v * float("nan") for k, v in sd.items()},
    lambda sd: {k: v.to(torch.float16) * 1e30 for k, v in sd.items()},
    lambda sd: None,
    lambda sd: torch.zeros(3),
]


DEGENERATE: list[Callable[[torch.Tensor], torch.Tensor]] = [
    lambda t: t[:0],  # r = 0, or no rows
    lambda t: t[:, :0] if t.dim() > 1 else t,
    lambda t: t.reshape(-1),
    lambda t: t.reshape(1, *t.shape),
    lambda t: t.t().contiguous() if t.dim() == 2 else t,
    lambda t: t[:1],
    lambda t: torch.zeros_like(t),
    lambda t: torch.full_like(t, float("nan")),
    lambda t: torch.full_like(t, float("inf")),
    lambda t: t * 1e38,
    lambda t: t * 1e-45,
    lambda t: t.to(torch.float16) * 65504,
    lambda t: t.to(torch.bfloat16),
    lambda t: t.to(torch.float64),
    lambda t: t.to(torch.int8),
    lambda t: t.to(torch.bool),
    lambda t: torch.cat([t, t]),
    lambda t: torch.tensor(1.0),
]


def degenerate(sd: dict[str, torch.Tensor], rng: random.Random) -> dict[str, torch.Tensor]:
    """Some tensors replaced by degenerate ones: empty, wrong rank, NaN/Inf, extreme, odd dtypes."""
    out = dict(sd)
    for key in rng.sample(sorted(out), k=rng.choice([1, 1, 2, 4])):
        out[key] = rng.choice(DEGENERATE)(out[key]).contiguous()
    return out


def _header(data: bytes) -> tuple[dict[str, Any], bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _pack(header: Any, body: bytes) -> bytes:
    blob = dump_json(header).encode()
    blob += b" " * (-(8 + len(blob)) % 8)
    return struct.pack("<Q", len(blob)) + blob + body


class Seeds:
    """Valid inputs in a folder: the adapter every adapter mutation starts from."""

    def __init__(self, root: Path) -> None:
        from tiny_models import make_adapter

        self.adapter = root / "seed_adapter"
        make_adapter(self.adapter, arch="bert", r=4, lora_alpha=8, modules_to_save=["classifier"])
        self.config = json.loads((self.adapter / "adapter_config.json").read_text())
        self.weights = (self.adapter / "adapter_model.safetensors").read_bytes()
        from safetensors.torch import load_file

        self.state = load_file(str(self.adapter / "adapter_model.safetensors"))

    def case_dir(
        self, root: Path, config: bytes | None = None, weights: tuple[str, bytes] | None = None
    ) -> Path:
        d = root / f"case_{random.getrandbits(40):010x}"
        d.mkdir()
        (d / "adapter_config.json").write_bytes(
            config if config is not None else json.dumps(self.config).encode()
        )
        name, data = weights or ("adapter_model.safetensors", self.weights)
        (d / name).write_bytes(data)
        return d


def _command(rng: random.Random, folder: Path) -> list[str]:
    """Three in four adapters are audited, one in four compressed (its own read and write path)."""
    if rng.random() < 0.75:
        return ["audit", "--peft-dir", str(folder), "--json", "--layers"]
    return ["compress", "--peft-dir", str(folder), "--out", str(folder.with_name(folder.name + "_out")),
            "--rank", str(rng.choice([1, 2, 3])), "--json"]  # fmt: skip


def gen_adapter_config(rng: random.Random, seeds: Seeds, root: Path) -> list[str]:
    text = mutate_text(json.dumps(seeds.config), rng, seeds.config, dump_json)
    return _command(rng, seeds.case_dir(root, config=text))


def gen_safetensors(rng: random.Random, seeds: Seeds, root: Path) -> list[str]:
    header, body = _header(seeds.weights)
    roll = rng.random()
    if roll < 0.35:
        data = _pack(mutate_tree(header, rng), body)
    elif roll < 0.45:
        data = struct.pack("<Q", rng.choice([0, 1, 7, 2**40, 2**63])) + seeds.weights[8:]
    elif roll < 0.75:  # a well-formed file of degenerate tensors
        from safetensors.torch import save

        data = save(degenerate(dict(seeds.state), rng))
    else:
        data = mutate_bytes(seeds.weights, rng)
    return _command(rng, seeds.case_dir(root, weights=("adapter_model.safetensors", data)))


def gen_bin(rng: random.Random, seeds: Seeds, root: Path) -> list[str]:
    import io

    buf = io.BytesIO()
    if rng.random() < 0.5:
        torch.save(rng.choice(ODD_BIN_OBJECTS)(dict(seeds.state)), buf)
        data = buf.getvalue()
    else:
        torch.save(dict(seeds.state), buf)
        data = mutate_bytes(buf.getvalue(), rng)
    return _command(rng, seeds.case_dir(root, weights=("adapter_model.bin", data)))


def gen_telemetry(rng: random.Random, seeds: Seeds, root: Path) -> list[str]:
    lines = run_lines()
    out = []
    rate = rng.choice([0.1, 0.3, 0.6])
    for line in lines:
        if rng.random() < rate:
            out.append(mutate_text(json.dumps(line), rng, line, dump_json).replace(b"\n", b" "))
        elif rng.random() < rate:  # a payload number pushed to the edge: the summary must survive it
            metrics = line.get("metrics")
            target = metrics if isinstance(metrics, dict) and metrics else line
            key = rng.choice([k for k in target if k not in ("schema", "event")] or ["x"])
            target[key] = rng.choice(
                [1e308, -1e308, 1e-320, float("nan"), float("inf"), 10**400, -1, "2.0", [1.0]]
            )
            out.append(json.dumps(line).encode())
        else:
            out.append(json.dumps(line).encode())
    data = b"\n".join(out) + rng.choice([b"\n", b"", b'{"schema":'])
    path = root / f"run_{rng.getrandbits(40):010x}.jsonl"
    path.write_bytes(data)
    if rng.random() < 0.2:
        return ["audit", "--peft-dir", str(seeds.adapter), "--append", str(path)]
    return ["monitor", str(path), "--json"]


def _write(root: Path, rng: random.Random, suffix: str, data: bytes) -> Path:
    path = root / f"in_{rng.getrandbits(40):010x}{suffix}"
    path.write_bytes(data)
    return path


def _plan_case(rng: random.Random, root: Path, tree: dict[str, Any], flag: str) -> list[str]:
    """`bench plan` reading a mutated YAML through `flag` (--config: bench YAML, --policy: policy)."""
    data = mutate_text(yaml.safe_dump(tree), rng, tree, dump_yaml)
    path = _write(root, rng, ".yaml", data)
    return ["bench", "plan", flag, str(path), "--baseline-acc", "0.83", "--item-share", "1", "--json"]


def gen_bench_yaml(rng: random.Random, seeds: Seeds, root: Path) -> list[str]:
    return _plan_case(rng, root, BENCH, "--config")


def gen_policy_yaml(rng: random.Random, seeds: Seeds, root: Path) -> list[str]:
    return _plan_case(rng, root, POLICY, "--policy")


def gen_check_config(rng: random.Random, seeds: Seeds, root: Path) -> list[str]:
    suffix = rng.choice([".json", ".yaml"])
    dump = dump_json if suffix == ".json" else dump_yaml
    data = mutate_text(dump(CHECK), rng, CHECK, dump)
    return ["check", str(_write(root, rng, suffix, data)), "--json"]


GENERATORS: dict[str, Callable[[random.Random, Seeds, Path], list[str]]] = {
    "adapter_config": gen_adapter_config,
    "safetensors": gen_safetensors,
    "bin": gen_bin,
    "telemetry": gen_telemetry,
    "bench_yaml": gen_bench_yaml,
    "policy_yaml": gen_policy_yaml,
    "check_config": gen_check_config,
}


class Hang(BaseException):
    """Raised by the alarm: not an Exception, so no handler in the code under test swallows it."""


def run_cli(args: list[str], limit_s: int = 20) -> Any:
    """The real CLI in-process, with a hang guard (an alarm, not a timing assertion)."""
    import signal

    from typer.testing import CliRunner

    from gradience.cli import app

    def alarm(signum: int, frame: Any) -> None:
        raise Hang(f"no answer within {limit_s}s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(limit_s)
    try:
        return CliRunner().invoke(app, args)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
