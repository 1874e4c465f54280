"""One bench run (a probe or a variant for one seed) as a pure job.

A job is a function of its inputs only — the effective config, its ``RunSpec`` and its
own folder — so any executor (in-process, worker processes, Ray) can run it. It
clears its folder, writes ``run.jsonl`` telemetry, the adapter, ``audit.json`` and
``eval.json``, and finally ``result.json`` atomically: a folder with a matching
``result.json`` is finished, anything else is re-run from scratch on ``--resume``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from gradience.audit import alpha_for_scale, lora_scale
from gradience.bench.config import BenchConfig, resolve_model_path
from gradience.bench.tasks import SplitEval
from gradience.bench.training import TrainStats
from gradience.files import checkpoint, write_json_atomic

RESULT_FILE = "result.json"


class RunSpec(BaseModel):
    """What to produce: a trained adapter, an SVD-truncated probe, or a skipped control."""

    name: str  # folder name: probe_r32, uniform_median_r4, per_layer, truncate_per_layer, …
    variant: str  # "probe" or a variant name
    seed: int
    method: Literal["train", "truncate", "skip"]
    r: int  # the uniform rank, or the largest rank of a pattern
    alpha: float
    rank_pattern: dict[str, int] = Field(default_factory=dict)  # every layer, when per-layer
    alpha_pattern: dict[str, float] = Field(default_factory=dict)
    source: str | None = None  # the probe's folder name, for truncation
    note: str = ""


class SplitMetrics(BaseModel):
    """A split's summary: ``value`` is the task metric's mean (``accuracy`` repeats it for classifiers)."""

    metric: str = "accuracy"
    value: float
    accuracy: float | None = None
    loss: float
    n: int

    @model_validator(mode="before")
    @classmethod
    def _older(cls, data: Any) -> Any:  # result.json from before the task layer: accuracy only
        if isinstance(data, dict) and "value" not in data and "accuracy" in data:
            return {**data, "value": data["accuracy"]}
        return data

    @classmethod
    def of(cls, ev: SplitEval) -> SplitMetrics:
        return cls(metric=ev.metric, value=ev.value, accuracy=ev.accuracy, loss=ev.loss, n=ev.n)


class RunResult(BaseModel):
    spec: RunSpec
    fingerprint: str
    status: Literal["ok", "skipped_control"]
    lora_params: int | None = None
    trainable_params: int | None = None
    ranks: dict[str, int] = Field(default_factory=dict)  # verified from the saved tensors
    eval: dict[str, SplitMetrics] = Field(default_factory=dict)  # "eval" and, if any, "beside"
    eval_split_names: dict[str, str] = Field(default_factory=dict)  # "eval" → "heldout", …
    train: TrainStats | None = None
    wall_s: float = 0.0
    finished_at: str = ""


def scaled_alpha(cfg: BenchConfig, rank: int) -> float:
    """α that keeps the probe's scale at another rank (PEFT recomputes it exactly)."""
    lo = cfg.lora
    return alpha_for_scale(lora_scale(lo.alpha, lo.probe_r, lo.use_rslora), rank, lo.use_rslora)


def fingerprint(cfg: BenchConfig, spec: RunSpec) -> str:
    """Everything a run's outcome depends on; a finished run with another fingerprint is stale."""
    parts = {
        "spec": spec.model_dump(mode="json"),
        "cfg": cfg.model_dump(mode="json", include={"model", "task", "train", "lora"}),
        "device": cfg.runtime.device,
        "audit": cfg.compression.model_dump(mode="json", include={"allowed_ranks", "per_layer_margin"}),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def finished_result(run_dir: Path, fp: str) -> RunResult | None:
    """The run's result if it finished with this exact fingerprint (what --resume skips)."""
    path = run_dir / RESULT_FILE
    if not path.is_file():
        return None
    try:
        res = RunResult.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    return res if res.fingerprint == fp else None


def _snapshot(cfg: BenchConfig, spec: RunSpec) -> dict[str, Any]:
    return {
        "model_name": cfg.model.name,
        "dataset_name": cfg.task.source_name,
        "task_profile": "easy_classification" if cfg.task.type == "classification" else cfg.task.type,
        "optimizer": {"name": "adamw", "lr": cfg.train.lr, "weight_decay": cfg.train.weight_decay},
        "lora": {
            "r": spec.r, "alpha": spec.alpha, "alpha_over_r": spec.alpha / spec.r,
            "target_modules": cfg.lora.target_modules, "dropout": cfg.lora.dropout, "bias": "none",
            "extras": {"use_rslora": cfg.lora.use_rslora, "rank_pattern": spec.rank_pattern,
                       "alpha_pattern": spec.alpha_pattern},
        },
        "training": {
            "seed": spec.seed, "batch_size": cfg.train.per_device_train_batch_size, "gradient_accumulation": 1,
            "max_steps": cfg.train.max_steps if spec.method == "train" else 0, "dtype": "float32",
        },
        "notes": f"gradience bench {spec.variant} ({spec.method})",
    }  # fmt: skip


def _telemetry_split(cfg: BenchConfig, key: str) -> str:
    """Telemetry names: the verdict split is the held-out 'test' (or 'val' when it is validation)."""
    if key == "beside":
        return "val"
    return "test" if cfg.task.eval_split == "heldout" else "val"


def run_job(cfg: BenchConfig, spec: RunSpec, run_dir: Path, *, smoke: bool) -> RunResult:
    """Produce one run in ``run_dir`` from scratch; ``result.json`` is written last."""
    from gradience.telemetry import TelemetryWriter, perplexity

    checkpoint(f"bench:job:{spec.name}")  # crash-safety tests kill a chosen job's worker here
    fp = fingerprint(cfg, spec)
    if spec.method == "skip":
        res = RunResult(spec=spec, fingerprint=fp, status="skipped_control", finished_at=_now())
        write_json_atomic(run_dir / RESULT_FILE, res.model_dump(mode="json"))
        return res
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a half-finished run leaves nothing behind to be mistaken for results
    run_dir.mkdir(parents=True)
    t0 = time.perf_counter()
    with TelemetryWriter(run_dir / "run.jsonl") as writer:
        writer.run_start(_snapshot(cfg, spec), meta={"framework": "gradience.bench", "run": spec.name})
        evals, stats, lora, total, ranks = _produce(cfg, spec, run_dir, writer, smoke)
        for key, ev in evals.items():
            metrics = {ev.metric: ev.value, "loss": ev.loss, "ppl": perplexity(ev.loss), "n": ev.n}
            writer.eval(stats.steps if stats else 0, _telemetry_split(cfg, key), metrics, name=ev.split)
        writer.run_end("ok")
    write_json_atomic(run_dir / "eval.json", {"run": spec.name, "seed": spec.seed,
                                              "splits": {k: v.model_dump() for k, v in evals.items()}})  # fmt: skip
    res = RunResult(
        spec=spec, fingerprint=fp, status="ok", lora_params=lora, trainable_params=total, ranks=ranks,
        eval={k: SplitMetrics.of(v) for k, v in evals.items()},
        eval_split_names={k: v.split for k, v in evals.items()}, train=stats,
        wall_s=time.perf_counter() - t0, finished_at=_now(),
    )  # fmt: skip
    write_json_atomic(run_dir / RESULT_FILE, res.model_dump(mode="json"))
    return res


def _produce(
    cfg: BenchConfig, spec: RunSpec, run_dir: Path, writer: Any, smoke: bool
) -> tuple[dict[str, SplitEval], TrainStats | None, int, int, dict[str, int]]:
    from gradience.audit import audit_adapter
    from gradience.bench import training as T
    from gradience.bench.tasks import load_task_data

    tr = cfg.train
    model_path = resolve_model_path(cfg.model.name)
    device = T.resolve_device(cfg.runtime.device)
    data = load_task_data(
        model_path,
        cfg.task,
        tr.train_samples,
        tr.eval_samples,
        smoke=smoke,
        selection=tr.eval_steps is not None,
    )
    task = data.task
    assert task is not None
    adapter = run_dir / "adapter"
    T.seed_everything(spec.seed)  # the classifier head's init is the same for probe and variants
    base = task.load_model(model_path, data, device)
    stats: TrainStats | None = None
    if spec.method == "train":
        from peft import get_peft_model

        lc = T.lora_config(spec.r, spec.alpha, cfg.lora.target_modules, cfg.lora.dropout, cfg.lora.use_rslora,
                           spec.rank_pattern, spec.alpha_pattern, task.peft_task_type)  # fmt: skip
        with (
            warnings.catch_warnings()
        ):  # transformers 5 deprecation raised inside PEFT; not the user's concern
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            model = get_peft_model(base, lc)
        bs, pad = tr.per_device_eval_batch_size, data.pad_token_id

        def monitor(step: int) -> None:
            assert data.selection is not None
            ev = T.evaluate(model, task, data.selection, bs, pad, device, f"{spec.name} selection")
            writer.eval(step, "selection", {ev.metric: ev.value, "loss": ev.loss, "n": ev.n})

        stats = T.train_lora(
            model, data.train, task=task, steps=tr.max_steps, batch_size=tr.per_device_train_batch_size, lr=tr.lr,
            warmup_ratio=tr.warmup_ratio, weight_decay=tr.weight_decay, seed=spec.seed, pad_token_id=pad, device=device, writer=writer,
            label=f"seed {spec.seed} {spec.name}", on_eval=monitor if data.selection else None,
            eval_steps=tr.eval_steps,
        )  # fmt: skip
        model.save_pretrained(str(adapter))
    else:
        _truncate(run_dir.parent / str(spec.source) / "adapter", adapter, spec)
        model = None
    expected = spec.rank_pattern or {}
    ranks = T.verify_ranks(adapter, expected, spec.r)
    splits = {"eval": (data.eval, f"{spec.name} eval {data.eval.name}")}
    if data.beside is not None:
        splits["beside"] = (data.beside, f"{spec.name} eval validation")
    evals = {}
    for key, (split, label) in splits.items():
        if model is None:  # certify's truncate-and-judge: the probe's merged truncation swapped into the base
            from gradience.bench.certify import evaluate_truncations

            evals[key] = evaluate_truncations(
                base, run_dir.parent / str(spec.source) / "adapter", {spec.name: _plan(spec)}, task=task,
                split=split, batch_size=tr.per_device_eval_batch_size, pad_token_id=data.pad_token_id,
                device=device, label=label,
            )[spec.name]  # fmt: skip
        else:
            evals[key] = T.evaluate(
                model, task, split, tr.per_device_eval_batch_size, data.pad_token_id, device, label
            )
    report = audit_adapter(
        adapter,
        allowed_ranks=cfg.compression.allowed_ranks,
        per_layer_margin=cfg.compression.per_layer_margin,
    )
    write_json_atomic(run_dir / "audit.json", report.to_json(layers=True))
    writer.metrics(stats.steps if stats else 0, "lora_audit", report.telemetry_metrics())
    s = report.summary
    return evals, stats, s.total_lora_params, s.total_trainable_params, ranks


def _plan(spec: RunSpec) -> Any:
    from gradience.compress import CompressionPlan

    return (
        CompressionPlan(rank_pattern=spec.rank_pattern) if spec.rank_pattern else CompressionPlan(rank=spec.r)
    )


def _truncate(src: Path, dst: Path, spec: RunSpec) -> None:
    """SVD-truncate the probe (no retraining); compress keeps the scale and the classifier head. The
    folder is what the run's audit reads and what users keep; the evaluation swaps the same truncation
    into the base model (``certify.evaluate_truncations``) instead of loading it as a PEFT model."""
    from gradience.compress import compress_adapter

    compress_adapter(src, dst, _plan(spec))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
