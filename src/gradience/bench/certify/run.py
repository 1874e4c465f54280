"""``gradience certify``: every input checked, one model loaded, the original and the ladder scored
on the same items, the fixed sequence decided, and the outputs written.

Order matters for "bad input writes nothing": flags, the output folder, the adapter, the
ladder, the base model, the data and the model fit are all checked before the first file is
written; the first file is the original's predictions.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from gradience.bench import BenchInputError
from gradience.bench.certify import decide, ladder
from gradience.bench.certify.evaluate import evaluate_items
from gradience.bench.certify.items import EvalItems, load_eval_items, read_task_config, task_config
from gradience.bench.certify.markdown import PLOT_NAME, answer, guarantee, render_markdown, render_text
from gradience.bench.certify.models import (
    CandidateResult,
    CertifyReport,
    DataInfo,
    OriginalResult,
    Predictions,
)
from gradience.bench.certify.store import CERTIFIED, Store, adapter_fingerprint, check_out, fingerprint
from gradience.bench.certify.swap import WeightSwap
from gradience.bench.tasks import SplitEval

Log = Callable[[str], None]


class CertifyOptions(BaseModel):
    peft_dir: Path
    data: str
    out: Path
    base_model: str | None = None
    task_type: str | None = None
    metric: str | None = None
    text_fields: list[str] | None = None
    label_field: str | None = None
    labels: list[str] | None = None
    task_config: str | None = None
    eval_samples: int | None = None
    margin: float = 0.025
    confidence: float = 0.95
    ladder: str = "budget"
    steps: str | None = None
    device: str = "cpu"
    batch_size: int = 64
    resume: bool = False


class CertifyOutcome(BaseModel):
    report: CertifyReport
    exit_code: int
    text: str


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _check_numbers(o: CertifyOptions) -> None:
    if not 0 < o.margin < 1:
        raise BenchInputError(f"--margin must be in (0, 1) (0.025 = 2.5 points), got {o.margin}")
    if not 0.5 < o.confidence < 1:
        raise BenchInputError(f"--confidence must be in (0.5, 1), got {o.confidence}")
    if o.batch_size < 1:
        raise BenchInputError(f"--batch-size must be at least 1, got {o.batch_size}")
    if o.eval_samples is not None and o.eval_samples < 1:
        raise BenchInputError(f"--eval-samples must be at least 1, got {o.eval_samples}")
    if o.labels is not None and (len(o.labels) < 2 or len(set(o.labels)) != len(o.labels)):
        raise BenchInputError(f"--labels needs at least 2 distinct names, got {','.join(o.labels)}")


def _device(name: str) -> Any:
    from gradience.bench.training import resolve_device

    if name not in ("cpu", "cuda", "mps"):
        raise BenchInputError(f"--device must be cpu, cuda or mps, got {name!r}")
    try:
        return resolve_device(name)
    except BenchInputError:
        raise BenchInputError(
            f"--device {name}: torch sees no {name} device here; use --device cpu"
        ) from None


def _versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}


class _Session:
    """What every evaluation shares: the items, the swapped model, the store, the fixed settings."""

    def __init__(self, o: CertifyOptions, items: EvalItems, swap: WeightSwap, store: Store, full_params: int,
                 device: Any, log: Log) -> None:  # fmt: skip
        self.o, self.items, self.swap, self.store, self.full_params = o, items, swap, store, full_params
        self.device, self.log = device, log
        self.metric = items.task.metric

    def score(self, name: str, fp: str, factors: Any, keep_going: Any = None) -> Predictions:
        done = self.store.load(name, fp)
        if done is not None:
            self.log(f"resume: {name} already scored ({done.eval.n:,} items), not re-run")
            return done
        t0 = time.perf_counter()
        with self.swap.merged(factors) as model:
            ev, stopped = evaluate_items(
                self.items.task, model, self.items.split, batch_size=self.o.batch_size,
                pad_token_id=self.items.data.pad_token_id, device=self.device, label=f"certify {name}",
                keep_going=keep_going,
            )  # fmt: skip
        pred = Predictions(name=name, fingerprint=fp, n_items=len(self.items.split), stopped_early=stopped,
                           eval_s=time.perf_counter() - t0, eval=ev)  # fmt: skip
        self.store.save(pred)
        return pred


def _judge(ses: _Session, original: SplitEval, cand: ladder.Candidate, pred: Predictions) -> CandidateResult:
    o, metric = ses.o, ses.metric
    position = {r: i for i, r in enumerate(original.rows)}
    base = [original.outcomes[position[r]] for r in pred.eval.rows]
    cmp = decide.compare(base, pred.eval.outcomes, metric=metric, margin=o.margin, confidence=o.confidence)
    status = "STOPPED" if pred.stopped_early else decide.status_of(cmp)
    return _result(cand, ses.full_params, status, pred, cmp, ses.store.rel(cand.name))


def _result(cand: ladder.Candidate, full: int, status: Any, pred: Predictions | None = None, cmp: Any = None,
            rel: str | None = None) -> CandidateResult:  # fmt: skip
    return CandidateResult(
        name=cand.name, kind=cand.kind, step=cand.step, plan=cand.plan.model_dump(mode="json", exclude_defaults=True),
        ranks=cand.ranks, rank_min=min(cand.ranks.values()), rank_max=max(cand.ranks.values()),
        rank_equivalent=cand.rank_equivalent, lora_params=cand.lora_params, lora_reduction=1 - cand.lora_params / full,
        retained_energy=cand.retained_energy, min_layer_retained_energy=cand.min_layer_energy, status=status,
        n_evaluated=pred.eval.n if pred else 0, stopped_early=bool(pred and pred.stopped_early),
        metric_value=pred.eval.value if pred else None, delta=cmp.delta if cmp else None,
        ci_low=cmp.ci_low if cmp else None, ci_high=cmp.ci_high if cmp else None, comparison=cmp,
        eval_s=pred.eval_s if pred else 0.0, predictions=rel,
    )  # fmt: skip


def certify(o: CertifyOptions, log: Log = _stderr) -> CertifyOutcome:
    from gradience.audit import AdapterError, open_adapter
    from gradience.bench.config import resolve_model_path
    from gradience.compress.core import DORA_REFUSAL

    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    _check_numbers(o)
    steps = ladder.parse_steps(o.steps, o.ladder)
    device = _device(o.device)
    root = check_out(o.out, o.peft_dir, o.resume)
    adapter = open_adapter(o.peft_dir)
    if adapter.config.use_dora or any(la.magnitude_key for la in adapter.layers):
        raise AdapterError(DORA_REFUSAL)
    layers = ladder.scan(adapter)
    plans = ladder.default_plans(layers, o.ladder, steps)
    cands, notes = ladder.build(layers, plans, o.ladder)
    if not cands:
        raise BenchInputError(
            f"the {o.ladder} ladder has no candidate smaller than the adapter ({'; '.join(notes)})"
        )
    base_name = o.base_model or adapter.config.base_model_name_or_path
    if not base_name:
        raise BenchInputError("the adapter's config names no base_model_name_or_path; pass --base-model")
    model_path = resolve_model_path(base_name)
    overrides = {"type": o.task_type, "data": o.data, "metric": o.metric, "text_fields": o.text_fields,
                 "label_field": o.label_field, "labels": o.labels}  # fmt: skip
    cfg = task_config(read_task_config(o.task_config), overrides, o.task_config or "flags")
    t0 = time.perf_counter()
    items = load_eval_items(model_path, cfg, o.eval_samples)
    decide.check_metric(items.task.metric)
    timings["read and tokenise"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    from gradience.bench.certify.swap import load_carried

    try:
        base = items.task.load_model(model_path, items.data, device)
    except RuntimeError as exc:  # transformers: a saved head of another size
        raise BenchInputError(
            f"cannot build the base model {model_path} for this data ({str(exc).splitlines()[0][:160]}); "
            f"for a classifier, --labels must list the head's labels in its order ({items.data.num_labels} now)"
        ) from None
    swap = WeightSwap(load_carried(base, o.peft_dir).to(device), adapter)
    timings["load model"] = time.perf_counter() - t0
    log(f"{len(items.split):,} eval items from {items.source} ({items.split_name} split); ladder: "
        + ", ".join(f"{c.name} ({c.lora_params:,})" for c in cands))  # fmt: skip
    store = Store(root, o.resume)
    a_fp = adapter_fingerprint(adapter)
    from gradience import __version__

    base_fp = fingerprint(a_fp, model_path, items.data.fingerprint, o.batch_size, device.type, __version__,
                          *_versions().values())  # fmt: skip
    ses = _Session(o, items, swap, store, adapter.lora_params, device, log)
    metric = ses.metric
    t0 = time.perf_counter()
    orig_pred = ses.score("original", fingerprint(base_fp, "original"), ladder.factors(adapter, layers, None))
    original = orig_pred.eval
    timings["original"] = time.perf_counter() - t0
    log(
        f"original: {metric.title} {metric.fmt(original.value)} on {original.n:,} items ({orig_pred.eval_s:.1f} s)"
    )
    res = decide.resolution(original.outcomes, metric=metric, margin=o.margin, confidence=o.confidence)
    log(f"resolution: {res.message}")
    if res.warning:
        log(f"warning: {res.warning}")
    results: dict[int, CandidateResult] = {}

    def keep_going(seen: dict[int, float]) -> bool:
        return decide.can_still_pass(
            original.outcomes, seen, metric=metric, margin=o.margin, confidence=o.confidence
        )

    def test(j: int) -> Any:
        cand = cands[j]
        fp = fingerprint(base_fp, sorted(cand.ranks.items()), o.margin, o.confidence)
        pred = ses.score(cand.name, fp, ladder.factors(adapter, layers, cand.ranks), keep_going)
        results[j] = r = _judge(ses, original, cand, pred)
        stop = f", stopped after {r.n_evaluated:,} items" if r.stopped_early else ""
        log(f"{cand.name}: {metric.fmt(r.metric_value)}, Δ {metric.fmt_delta(r.delta)} "
            f"[{metric.fmt_delta(r.ci_low)}, {metric.fmt_delta(r.ci_high)}] → {r.status}{stop} ({r.eval_s:.1f} s)")  # fmt: skip
        return r.status

    t0 = time.perf_counter()
    statuses = decide.fixed_sequence(len(cands), test)
    timings["candidates"] = time.perf_counter() - t0
    rows = [results.get(j) or _result(c, adapter.lora_params, statuses[j]) for j, c in enumerate(cands)]
    k = decide.certified_index(statuses)
    t0 = time.perf_counter()
    cert_dir = _write_certified(o, root, store, cands[k] if k is not None else None)
    report = CertifyReport(
        gradience_version=__version__, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        adapter=str(o.peft_dir), adapter_fingerprint=a_fp, base_model=base_name, base_model_path=model_path,
        task_type=cfg.type, metric=metric.name, metric_title=metric.title,
        data=DataInfo(source=items.source, split=items.split_name, rows_in_split=items.n_rows, n_items=len(items.split),
                      eval_samples=o.eval_samples, fingerprint=items.data.fingerprint,
                      task=cfg.model_dump(mode="json", exclude_defaults=True), label_names=items.data.label_names),
        margin=o.margin, confidence=o.confidence, ladder=o.ladder, steps=[p[1] for p in plans],
        ladder_notes=notes, resolution=res,
        original=OriginalResult(lora_params=adapter.lora_params, rank_max=max(la.spec.r for la in layers),
                                metric_value=original.value, n_items=original.n, eval_s=orig_pred.eval_s,
                                predictions=store.rel("original")),
        candidates=rows, certified=cands[k].name if k is not None else None, certified_dir=cert_dir,
        guarantee=guarantee(len(items.split), items.source, o.margin, o.confidence, metric), answer="",
        device=str(device), batch_size=o.batch_size, resumed=list(store.reused), timings={}, versions=_versions(),
        exit_code=0 if k is not None else 1,
    )  # fmt: skip
    report = report.model_copy(update={"answer": answer(report, metric)})
    from gradience.bench.certify.plot import plot_png

    store.write(PLOT_NAME, plot_png(report, metric))
    store.drop_stale()
    timings["write"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    report = report.model_copy(update={"timings": {key: round(t, 3) for key, t in timings.items()}})
    store.write("certify.md", render_markdown(report, metric))
    store.write("certify.json", _dumps(report))
    return CertifyOutcome(report=report, exit_code=report.exit_code, text=render_text(report, metric))


def _dumps(report: CertifyReport) -> str:
    import json

    return json.dumps(report.to_json(), indent=2) + "\n"


def _write_certified(
    o: CertifyOptions, root: Path, store: Store, cand: ladder.Candidate | None
) -> str | None:
    """``compress_adapter`` with the certified plan: exactly what ``gradience compress`` writes."""
    from gradience.compress import compress_adapter

    if cand is None:
        store.drop_certified()
        return None
    dst = root / CERTIFIED
    written = compress_adapter(o.peft_dir, dst, cand.plan, overwrite=True)
    got = {row.name: row.new_rank for row in written.layers}
    if got != cand.ranks:
        raise RuntimeError(f"compress wrote ranks {got} for {cand.name}, but {cand.ranks} were evaluated")
    return str(Path(o.out) / CERTIFIED)
