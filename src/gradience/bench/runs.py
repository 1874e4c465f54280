"""One bench run (a probe or a variant for one seed) as a pure job.

A job is a function of its inputs only — the effective config, its ``RunSpec`` and its
own folder — so any executor (in-process, worker processes, Ray) can run it. It
clears its folder, writes ``run.jsonl`` telemetry, the adapter, ``audit.json`` and
``eval.json``, and finally ``result.json`` atomically: a folder with a matching
``result.json`` is finished, anything else is re-run from scratch on ``--resume``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
import warnings
from collections.abc import Iterator
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
    checkpoint(f"bench:job:{spec.name}")  # crash-safety tests kill a chosen job's worker here
    fp = fingerprint(cfg, spec)
    if spec.method == "skip":
        res = RunResult(spec=spec, fingerprint=fp, status="skipped_control", finished_at=_now())
        write_json_atomic(run_dir / RESULT_FILE, res.model_dump(mode="json"))
        return res
    t0 = time.perf_counter()
    ctx = _context(cfg, smoke)
    with _begin(cfg, spec, run_dir) as writer:
        if spec.method == "train":
            base, model = _fresh_model(cfg, spec, ctx)
            stats = _train(cfg, spec, ctx, model, writer)
        else:
            base, model, stats = _fresh_base(spec, ctx), None, None
        produced = _finish(cfg, spec, run_dir, writer, ctx, base, model, stats)
        return _end(cfg, spec, run_dir, writer, produced, t0)


def run_fused(cfg: BenchConfig, specs: list[RunSpec], run_dirs: list[Path], *, smoke: bool) -> list[Any]:
    """Train jobs together (``bench.fused``), then evaluate and audit each as ``run_job`` does.
    Per job: its RunResult, or the exception that ended it (the others are unaffected)."""
    from peft.utils.save_and_load import get_peft_model_state_dict, set_peft_model_state_dict

    from gradience.bench import fused as F
    from gradience.bench.dropout import use_bit_dropout

    tr, t0 = cfg.train, time.perf_counter()
    ctx = _context(cfg, smoke)
    names = ["default", *(f"job{k}" for k in range(1, len(specs)))]
    with contextlib.ExitStack() as stack:
        writers = [stack.enter_context(_begin(cfg, spec, d)) for spec, d in zip(specs, run_dirs, strict=True)]
        models = [_fresh_model(cfg, spec, ctx)[1] for spec in specs]
        model = F.build(models, [_lora(cfg, spec, ctx) for spec in specs], names)
        use_bit_dropout(model)  # the adapters build added have PEFT's own dropout
        del models
        jobs = [F.FusedJob(adapter=n, seed=sp.seed, label=f"seed {sp.seed} {sp.name}", writer=w)
                for n, sp, w in zip(names, specs, writers, strict=True)]  # fmt: skip
        label = f"fused {len(specs)} jobs: " + ", ".join(f"{sp.seed}/{sp.name}" for sp in specs)
        stats = F.train_fused(
            model, jobs, ctx.data.train, task=ctx.task, steps=tr.max_steps, batch_size=tr.per_device_train_batch_size,
            lr=tr.lr, weight_decay=tr.weight_decay, warmup_ratio=tr.warmup_ratio, pad_token_id=ctx.data.pad_token_id,
            device=ctx.device, label=label, precision=cfg.runtime.precision,
        )  # fmt: skip
        states = [get_peft_model_state_dict(model, adapter_name=n) for n in names]
        del model
        out: list[Any] = []
        for spec, d, writer, job, st, state in zip(
            specs, run_dirs, writers, jobs, stats, states, strict=True
        ):
            if job.failure is not None or st is None:
                out.append(job.failure or RuntimeError(f"{spec.name}: fused training failed"))
                continue
            try:
                base, own = _fresh_model(cfg, spec, ctx)  # the job's own model, as trained alone
                set_peft_model_state_dict(own, state)
                produced = _finish(cfg, spec, d, writer, ctx, base, own, st)
                out.append(_end(cfg, spec, d, writer, produced, t0))
            except Exception as exc:  # noqa: BLE001 - one job's failure is its own
                out.append(exc)
    return out


class _Ctx:
    """What every job of a bench shares: the model path, the device and the tokenised data."""

    def __init__(self, cfg: BenchConfig, smoke: bool) -> None:
        from gradience.bench import training as T
        from gradience.bench.tasks import load_task_data

        tr = cfg.train
        self.model_path = resolve_model_path(cfg.model.name)
        self.device = T.resolve_device(cfg.runtime.device)
        self.data = load_task_data(self.model_path, cfg.task, tr.train_samples, tr.eval_samples, smoke=smoke,
                                   selection=tr.eval_steps is not None)  # fmt: skip
        assert self.data.task is not None
        self.task = self.data.task


def _context(cfg: BenchConfig, smoke: bool) -> _Ctx:
    return _Ctx(cfg, smoke)


@contextlib.contextmanager
def _begin(cfg: BenchConfig, spec: RunSpec, run_dir: Path) -> Iterator[Any]:
    """The run's folder, cleared, and its telemetry writer with run_start written."""
    from gradience.telemetry import TelemetryWriter

    if run_dir.exists():
        shutil.rmtree(run_dir)  # a half-finished run leaves nothing behind to be mistaken for results
    run_dir.mkdir(parents=True)
    with TelemetryWriter(run_dir / "run.jsonl") as writer:
        writer.run_start(_snapshot(cfg, spec), meta={"framework": "gradience.bench", "run": spec.name})
        yield writer


def _end(
    cfg: BenchConfig, spec: RunSpec, run_dir: Path, writer: Any, produced: tuple, t0: float
) -> RunResult:
    from gradience.telemetry import perplexity

    evals, stats, lora, total, ranks = produced
    for key, ev in evals.items():
        metrics = {ev.metric: ev.value, "loss": ev.loss, "ppl": perplexity(ev.loss), "n": ev.n}
        writer.eval(stats.steps if stats else 0, _telemetry_split(cfg, key), metrics, name=ev.split)
    writer.run_end("ok")
    write_json_atomic(run_dir / "eval.json", {"run": spec.name, "seed": spec.seed,
                                              "splits": {k: v.model_dump() for k, v in evals.items()}})  # fmt: skip
    res = RunResult(
        spec=spec, fingerprint=fingerprint(cfg, spec), status="ok", lora_params=lora, trainable_params=total,
        ranks=ranks, eval={k: SplitMetrics.of(v) for k, v in evals.items()},
        eval_split_names={k: v.split for k, v in evals.items()}, train=stats,
        wall_s=time.perf_counter() - t0, finished_at=_now(),
    )  # fmt: skip
    write_json_atomic(run_dir / RESULT_FILE, res.model_dump(mode="json"))
    return res


def _lora(cfg: BenchConfig, spec: RunSpec, ctx: _Ctx) -> Any:
    from gradience.bench import training as T

    return T.lora_config(spec.r, spec.alpha, cfg.lora.target_modules, cfg.lora.dropout, cfg.lora.use_rslora,
                         spec.rank_pattern, spec.alpha_pattern, ctx.task.peft_task_type)  # fmt: skip


def _fresh_base(spec: RunSpec, ctx: _Ctx) -> Any:
    from gradience.bench import training as T

    T.seed_everything(spec.seed)  # the classifier head's init is the same for probe and variants
    return ctx.task.load_model(ctx.model_path, ctx.data, ctx.device)


def _fresh_model(cfg: BenchConfig, spec: RunSpec, ctx: _Ctx) -> tuple[Any, Any]:
    """(base, PEFT model) exactly as a job trained alone starts: seeded, then get_peft_model."""
    from peft import get_peft_model

    from gradience.bench.dropout import use_bit_dropout

    base = _fresh_base(spec, ctx)
    with warnings.catch_warnings():  # transformers 5 deprecation raised inside PEFT; not the user's concern
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        model = get_peft_model(base, _lora(cfg, spec, ctx))
    use_bit_dropout(model)  # torch's CPU dropout masks were a fifth of a training step
    return base, model


def _train(cfg: BenchConfig, spec: RunSpec, ctx: _Ctx, model: Any, writer: Any) -> TrainStats:
    from gradience.bench import training as T

    tr, data, task = cfg.train, ctx.data, ctx.task
    bs, pad = tr.per_device_eval_batch_size, data.pad_token_id

    def monitor(step: int) -> None:
        assert data.selection is not None
        ev = T.evaluate(model, task, data.selection, bs, pad, ctx.device, f"{spec.name} selection")
        writer.eval(step, "selection", {ev.metric: ev.value, "loss": ev.loss, "n": ev.n})

    return T.train_lora(
        model, data.train, task=task, steps=tr.max_steps, batch_size=tr.per_device_train_batch_size, lr=tr.lr,
        warmup_ratio=tr.warmup_ratio, weight_decay=tr.weight_decay, seed=spec.seed, pad_token_id=pad,
        device=ctx.device, writer=writer, label=f"seed {spec.seed} {spec.name}",
        on_eval=monitor if data.selection else None, eval_steps=tr.eval_steps, precision=cfg.runtime.precision,
    )  # fmt: skip


def _finish(
    cfg: BenchConfig, spec: RunSpec, run_dir: Path, writer: Any, ctx: _Ctx, base: Any, model: Any,
    stats: TrainStats | None,
) -> tuple[dict[str, SplitEval], TrainStats | None, int, int, dict[str, int]]:  # fmt: skip
    """Everything after training: the adapter saved (or truncated), its ranks verified, the eval
    splits scored, the audit written."""
    from gradience.audit import audit_adapter
    from gradience.bench import training as T

    tr, data, task, device = cfg.train, ctx.data, ctx.task, ctx.device
    adapter = run_dir / "adapter"
    if model is not None:
        model.save_pretrained(str(adapter))
    else:
        _truncate(run_dir.parent / str(spec.source) / "adapter", adapter, spec)
    ranks = T.verify_ranks(adapter, spec.rank_pattern or {}, spec.r)
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
