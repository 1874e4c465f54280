"""Run a whole bench and write every report; ``python -m gradience.bench.run_bench`` = ``gradience bench``
(that entry point is ``__main__.py`` beside this file, like ``gradience/__main__.py``).

Exit codes (SPEC §5): ``--smoke`` → 0 when every report was written (verdicts are
informational); ``--ci`` → 2 if a probe is undertrained, 1 if no variant is policy
compliant, else 0; otherwise 0 once the reports are written. Bad input raises
``BenchInputError`` (the CLI prints one line, exit 2).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from gradience.bench.config import RunOptions, apply_overrides, load_config, parse_seeds
from gradience.bench.report import BenchReport

REPORT_FILES = (
    "bench.json", "bench.md", "bench_internal.json", "compression_configs.json", "verdicts.json",
    "bench_aggregate.json", "bench_aggregate.md", "accuracy_vs_params.png", "probe_energy_rank.png",
)  # fmt: skip


class BenchOutcome(BaseModel):
    exit_code: int
    output: str
    report: dict[str, Any]
    text: str


def prepare_output(output: Path, inputs: list[Path], log: Any) -> bool:
    """The bench writes into --output in place (runs as they finish, --resume reads them), so the
    folder must be new, empty, or one a bench wrote; a folder from before markers that holds a
    bench's layout is adopted. Returns whether this call created it."""
    from gradience.bench.jobs import SCRATCH_PREFIX
    from gradience.files import check_output_dir, is_ours, mark_folder, sweep_scratch

    for gone in sweep_scratch(SCRATCH_PREFIX):
        log(f"removed scratch folder {gone}, left by a killed bench")
    legacy = output.is_dir() and (
        (output / "bench.json").is_file() or any(output.glob("seed_*/*/result.json"))
    )
    if legacy and not is_ours(output):
        mark_folder(output, "bench")
    real = check_output_dir(output, inputs, accept_existing=True)
    created = not real.exists()
    real.mkdir(parents=True, exist_ok=True)
    if not is_ours(real):
        mark_folder(real, "bench")
    return created


def _discard_if_unused(output: Path) -> None:
    """A bench that failed before writing anything leaves no empty --output behind."""
    from gradience.files import MARKER

    if output.is_dir() and [p.name for p in output.iterdir()] == [MARKER]:
        shutil.rmtree(output, ignore_errors=True)


def write_reports(run: Any, rep: BenchReport, judged: dict[str, Any]) -> list[Path]:
    """Every file of SPEC §5's output list, each written atomically."""
    from gradience.bench import markdown, plots
    from gradience.files import checkpoint, write_atomic, write_json_atomic

    out = run.out_dir
    probe_acc = rep.probe.accuracy
    points = [{"name": "probe", "params": rep.probe.params, "accuracy": probe_acc, "ci": None}]
    points += [
        {"name": n, "params": v.params, "accuracy": v.accuracy, "ci": (v.ci.low, v.ci.high) if v.ci else None}
        for n, v in rep.compressed.items()
        if v.status == "ok" and v.params
    ]
    margin = rep.protocol["margin"] or 0.0
    metric = markdown.Metric.from_report(rep.task)
    plots.accuracy_vs_params(points, probe_acc, margin, out / "accuracy_vs_params.png", metric)
    first = run.seeds[0].audit
    if first is not None:
        pattern = first.suggestions.per_layer.rank_pattern or {}
        plots.energy_ranks(first.layers, rep.probe.rank, pattern, out / "probe_energy_rank.png")
    write_json_atomic(out / "verdicts.json", {n: j.raw for n, j in judged.items()})
    checkpoint("bench:reports")
    write_json_atomic(out / "compression_configs.json", {
        f"seed_{o.seed}": {
            "probe": o.probe.spec.model_dump(mode="json"),
            "gate": o.gate,
            "suggestions": o.audit.suggestions.model_dump(mode="json") if o.audit is not None else None,
            "variants": {n: r.spec.model_dump(mode="json") for n, r in o.variants.items()},
        }
        for o in run.seeds
    })  # fmt: skip
    write_json_atomic(out / "bench_internal.json", {
        "effective_config": run.cfg.model_dump(mode="json"), "options": run.opts.model_dump(),
        "model_path": run.model_path, "wall_s": run.wall_s, "resumed_runs": run.skipped_on_resume,
        "runs": [r.model_dump(mode="json") for o in run.seeds for r in [o.probe, *o.variants.values()]],
    })  # fmt: skip
    write_json_atomic(out / "bench_aggregate.json", markdown.aggregate(rep))
    write_atomic(out / "bench_aggregate.md", markdown.aggregate_md(rep))
    write_atomic(out / "bench.md", markdown.bench_md(rep, {"accuracy vs LoRA parameters": "accuracy_vs_params.png",
                                                          "probe energy ranks": "probe_energy_rank.png"}))  # fmt: skip
    write_json_atomic(out / "bench.json", rep.to_json())
    return [out / f for f in REPORT_FILES]


def exit_code(rep: BenchReport, opts: RunOptions, files: list[Path]) -> int:
    if opts.smoke:
        return 0 if all(f.is_file() for f in files) else 1
    if opts.ci:
        if rep.summary.undertrained_seeds:
            return 2
        return 0 if rep.summary.best_compression else 1
    return 0


def run_bench(
    config: str, output: Path, *, smoke: bool = False, ci: bool = False, device: str | None = None,
    seeds: str | None = None, data_dir: str | None = None, data: str | None = None, resume: bool = False,
    executor: str | None = None,
    ray_address: str | None = None, workers: int | None = None, verbose: bool = False, log: Any = None,
) -> BenchOutcome:  # fmt: skip
    """The bench end to end: config → protocol → verdicts → reports → exit code."""
    from gradience.bench.judging import judge_all
    from gradience.bench.markdown import recommendation
    from gradience.bench.protocol import run_protocol
    from gradience.bench.report import build_report

    log = log or _stderr_log()
    t0 = time.perf_counter()
    cfg = apply_overrides(load_config(config), smoke=smoke, seeds=parse_seeds(seeds), device=device,
                          data_dir=data_dir, data=data, executor=executor, ray_address=ray_address,
                          workers=workers)  # fmt: skip
    from gradience.verdicts import load_policy

    load_policy(cfg.compression.policy)  # a bad policy name fails before any training
    opts = RunOptions(smoke=smoke, ci=ci, resume=resume, verbose=verbose)
    t = cfg.task  # the output folder must never be (or hold) the data it reads
    inputs = [Path(x) for x in (t.data_dir, t.data, *t.splits.values()) if x and Path(x).exists()]
    created = prepare_output(output, inputs, log)
    try:
        run = run_protocol(cfg, output, opts, log=log)
    except BaseException:
        if created:
            _discard_if_unused(output)
        raise
    judged = judge_all(run)
    rep = build_report(run, judged, run.data)
    rep.summary.recommendation = recommendation(rep)
    run.wall_s = time.perf_counter() - t0
    files = write_reports(run, rep, judged)
    if not cfg.runtime.keep_adapters:  # probes stay: truncation and --resume need them
        for o in run.seeds:
            for r in o.variants.values():
                shutil.rmtree(output / f"seed_{o.seed}" / r.spec.name / "adapter", ignore_errors=True)
    code = exit_code(rep, opts, files)
    text = "\n".join([
        rep.summary.recommendation.replace("**", ""),
        f"validated {rep.summary.validated}; best compression: {rep.summary.best_compression or 'none'}; "
        f"level {rep.summary.validation_level}; {run.wall_s:.0f}s",
        f"reports: {output / 'bench.md'} (and bench.json, bench_aggregate.md, …)",
    ])  # fmt: skip
    return BenchOutcome(exit_code=code, output=str(output), report=rep.to_json(), text=text)


def _stderr_log() -> Any:
    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    return lambda msg: console.print(msg, markup=False, soft_wrap=True)
