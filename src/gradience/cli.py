"""Command-line shell: parses flags, calls the library, maps errors to exit codes.

No logic lives here. Exit codes: 0 ok, 1 a check/verdict failed, 2 bad input, usage or an OS
error, 3 an internal error (a bug).
Heavy libraries (torch, transformers) are imported inside each command so that
`gradience --help` stays instant.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup


class _OneLineUsageErrors(TyperGroup):
    """A usage error (typo'd flag, missing value) is one `error:` line and exit 2, not a box."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(1)
        except typer.TyperException as exc:  # typer's vendored click errors
            if type(exc).__name__ == "NoArgsIsHelpError":
                exc.show()  # type: ignore[attr-defined]
            else:
                ctx = getattr(exc, "ctx", None)
                where = ctx.command_path if ctx is not None else "gradience"
                msg = exc.format_message() if hasattr(exc, "format_message") else str(exc)
                typer.echo(f"error: {msg} (see {where} --help)".splitlines()[0], err=True)
            sys.exit(getattr(exc, "exit_code", 2))
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="gradience",
    help="Spectral audit, compression and honest benchmarking of LoRA adapters.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_OneLineUsageErrors,
)


def _input_errors() -> tuple[type[BaseException], ...]:
    """Every package's 'bad input' exception: these become one line and exit 2."""
    from gradience.audit import AdapterError
    from gradience.files import OutputPathError
    from gradience.telemetry import TelemetryError

    errors: list[type[BaseException]] = [AdapterError, TelemetryError, OutputPathError]
    for mod, name in [
        ("gradience.compress", "CompressError"),
        ("gradience.verdicts", "PolicyError"),
        ("gradience.check", "CheckInputError"),
        ("gradience.bench", "BenchInputError"),
    ]:
        try:
            errors.append(getattr(__import__(mod, fromlist=[name]), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


INTERNAL_ERROR = 3


def _fail(code: int, msg: str, verbose: bool) -> None:
    if verbose:
        import traceback

        traceback.print_exc()
    typer.echo(msg.splitlines()[0] if msg.strip() else msg, err=True)
    raise typer.Exit(code) from None


def _guarded(fn: Callable[[], int | None], verbose: bool = False) -> None:
    """Run a command body and give every outcome its exit code by meaning.

    Bad input or any OS error (missing, read-only, disk full, …) → one line, exit 2; a genuine
    bug → one line, exit 3, so no crash can pose as a failed check (exit 1). Tracebacks only
    with --verbose."""
    _notes_to_stderr()
    try:
        code = fn() or 0
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    except OSError as exc:
        from gradience.files import describe_os_error

        _fail(2, f"error: {describe_os_error(exc)}", verbose)
    except _input_errors() as exc:
        _fail(2, f"error: {exc}", verbose)
    except Exception as exc:  # noqa: BLE001 - the last resort: a bug, said as one
        what = f"{type(exc).__name__}: {exc}".splitlines()[0]
        _fail(INTERNAL_ERROR, f"internal error ({what}); rerun with --verbose and report it", verbose)
    raise typer.Exit(code)


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _show(result: Any, as_json: bool, render: Any, **render_kw: Any) -> None:
    """A command's one output: the typed result's JSON, or its text rendering."""
    if as_json:
        _print_json(result.to_json())
    else:
        render(result, **render_kw)


def _choice(value: str, flag: str, choices: tuple[str, ...]) -> Any:
    from gradience.compress import CompressError

    if value not in choices:
        raise CompressError(f"{flag} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _parse_ranks(text: str | None) -> list[int] | None:
    if text is None:
        return None
    from gradience.audit import AdapterError

    try:
        ranks = sorted({int(x) for x in text.replace(",", " ").split()})
    except ValueError:
        raise AdapterError(f"--allowed-ranks must be integers, got {text!r}") from None
    if not ranks or ranks[0] < 1:
        raise AdapterError(f"--allowed-ranks must be positive integers, got {text!r}")
    return ranks


def _notes_to_stderr() -> None:
    """Library notes (e.g. 'removed … left by an interrupted run') reach the user as stderr lines."""
    import logging

    class ToStderr(logging.StreamHandler):  # type: ignore[type-arg]
        @property  # type: ignore[override]
        def stream(self) -> Any:  # whatever sys.stderr is when the record is emitted
            return sys.stderr

        @stream.setter
        def stream(self, value: Any) -> None:
            pass

    logger = logging.getLogger("gradience")
    if not any(getattr(h, "_gradience", False) for h in logger.handlers):
        handler = ToStderr()
        handler.setFormatter(logging.Formatter("note: %(message)s"))
        handler._gradience = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


@app.callback(invoke_without_command=True)
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        from gradience import __version__

        typer.echo(__version__)
        raise typer.Exit(0)


@app.command()
def audit(
    peft_dir: Path = typer.Option(..., "--peft-dir", help="PEFT adapter folder."),
    adapter_config: Path | None = typer.Option(None, help="adapter_config.json (default: in --peft-dir)."),
    weights: Path | None = typer.Option(None, help="Weights file (default: adapter_model.safetensors|.bin)."),
    layers: bool = typer.Option(False, "--layers", help="Show every per-layer row."),
    top_wasteful: int = typer.Option(0, help="Show the N lowest-utilisation layers."),
    top_singular_values: int = typer.Option(0, help="Include the top K singular values per layer."),
    suggest_per_layer: bool = typer.Option(False, help="Show the per-layer rank_pattern suggestion."),
    allowed_ranks: str | None = typer.Option(None, help="Allowed ranks, e.g. '1,2,4,8,16,32'."),
    per_layer_margin: float = typer.Option(1.0, help="Multiplier on each layer's energy_rank_90."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when the report has issues."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on stdout."),
    json_format: str = typer.Option(
        "v1", "--format", help="JSON layout: v1 (ours, versioned) | v0.3 (upstream's flat layout)."
    ),
    append: Path | None = typer.Option(None, help="Append a metrics(kind=lora_audit) event to RUN.jsonl."),
    verbose: bool = typer.Option(False, "--verbose"),
) -> None:
    """Per-layer spectral audit of a PEFT LoRA adapter, exact, without forming B·A."""

    def body() -> int:
        from gradience.audit import AdapterError, audit_adapter, render_audit

        if json_format not in ("v1", "v0.3"):
            raise AdapterError(f"--format must be v1 or v0.3, got {json_format!r}")
        report = audit_adapter(
            peft_dir,
            adapter_config=adapter_config,
            weights=weights,
            allowed_ranks=_parse_ranks(allowed_ranks),
            per_layer_margin=per_layer_margin,
            top_singular_values=top_singular_values,
        )
        if append is not None:
            from gradience.telemetry import append_event_to_run

            append_event_to_run(
                append, "metrics", {"kind": "lora_audit", "metrics": report.telemetry_metrics()}
            )
        if as_json and json_format == "v0.3":
            from gradience.compat.audit_v03 import audit_v03

            body_json = report.to_json(layers=layers, top_wasteful=top_wasteful)
            every = report.to_json(layers=True)["layers"]
            weights_file = weights or peft_dir / str(body_json["adapter"]["weights"])
            config_file = adapter_config or peft_dir / "adapter_config.json"
            _print_json(audit_v03(body_json, every, config_path=config_file, weights_path=weights_file))
        elif as_json:
            _print_json(report.to_json(layers=layers or top_singular_values > 0, top_wasteful=top_wasteful))
        else:
            render_audit(
                report, layers=layers, top_wasteful=top_wasteful, suggest_per_layer=suggest_per_layer
            )
        return 1 if strict and report.issues else 0

    _guarded(body, verbose)


@app.command()
def check(
    config: Path | None = typer.Argument(
        None, help="Config file (JSON/YAML): flat, ConfigSnapshot or bench style."
    ),
    peft: Path | None = typer.Option(None, "--peft", help="PEFT adapter_config.json."),
    training: Path | None = typer.Option(
        None, "--training", help="Training arguments as JSON/YAML (never .bin)."
    ),
    peft_dir: Path | None = typer.Option(
        None, "--peft-dir", help="Folder holding exactly one adapter_config.json."
    ),
    training_dir: Path | None = typer.Option(
        None, "--training-dir", help="Folder holding one training_args.json/yaml."
    ),
    task: str | None = typer.Option(
        None, "--task", "--dataset", help="Dataset/task name (infers the profile)."
    ),
    model: str | None = typer.Option(None, "--model", help="Base model name."),
    task_profile: str | None = typer.Option(
        None, "--task-profile", help="easy_classification | hard_reasoning | generation | unknown."
    ),
    optimizer: str | None = typer.Option(None, "--optimizer", help="Optimizer name (e.g. adamw)."),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate."),
    weight_decay: float | None = typer.Option(None, "--weight-decay", help="Weight decay."),
    r: int | None = typer.Option(None, "--r", help="LoRA rank."),
    alpha: float | None = typer.Option(None, "--alpha", help="LoRA alpha."),
    targets: list[str] | None = typer.Option(
        None, "--targets", help="Target modules (repeat, comma- or space-separate)."
    ),
    notes: str | None = typer.Option(None, "--notes", help="Free text carried into the result."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on stdout."),
    verbose: bool = typer.Option(
        False, "--verbose", help="Show why, suggestions and where each value came from."
    ),
) -> None:
    """Check a LoRA fine-tuning config before spending compute (exit 1 on an error finding)."""

    def body() -> int:
        from gradience.check import render_check, run_check

        overrides = {
            "dataset_name": task,
            "model_name": model,
            "task_profile": task_profile,
            "lr": lr,
            "weight_decay": weight_decay,
            "r": r,
            "alpha": alpha,
            "target_modules": targets or None,
            "optimizer": optimizer,
            "notes": notes,
        }
        result = run_check(
            config,
            peft=peft,
            training=training,
            peft_dir=peft_dir,
            training_dir=training_dir,
            overrides=overrides,
        )
        _show(result, as_json, render_check, verbose=verbose)
        return result.exit_code

    _guarded(body, verbose)


@app.command()
def monitor(
    run_file: Path = typer.Argument(..., metavar="RUN.jsonl", help="Telemetry file written during training."),
    gap_threshold: float = typer.Option(1.5, "--gap-threshold", help="Alert when held-out/train ppl ≥ this."),
    strict_schema: bool = typer.Option(False, "--strict-schema", help="Any bad line is an error (exit 2)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on stdout."),
    verbose: bool = typer.Option(
        False, "--verbose", help="Every telemetry issue, recorded alert and reason."
    ),
) -> None:
    """Summarise a run: signals, gap, audit, guard, alerts, recommendations (exit 1 on an error alert)."""

    def body() -> int:
        from gradience.monitor import monitor_run, render_monitor

        report = monitor_run(run_file, gap_threshold=gap_threshold, strict=strict_schema)
        _show(report, as_json, render_monitor, verbose=verbose)
        return report.exit_code

    _guarded(body, verbose)


@app.command()
def compress(
    peft_dir: Path = typer.Option(..., "--peft-dir", help="PEFT adapter folder to compress."),
    out: Path = typer.Option(..., "--out", help="Output folder (a complete PEFT adapter)."),
    rank: int | None = typer.Option(None, "--rank", help="Uniform rank K (capped at each layer's r)."),
    energy: float | None = typer.Option(None, help="Per layer: smallest rank keeping fraction T of ‖ΔW‖²."),
    budget_params: int | None = typer.Option(None, help="Global LoRA-parameter budget (allocator)."),
    budget_ratio: float | None = typer.Option(None, help="Budget as a fraction of today's LoRA params."),
    from_audit: bool = typer.Option(False, "--from-audit", help="The audit's per-layer suggestion."),
    allowed_ranks: str | None = typer.Option(None, help="Allowed ranks, e.g. '1,2,4,8,16,32'."),
    alpha_mode: str = typer.Option(
        "keep_scale", "--alpha-mode", help="keep_scale (rescale α) | keep_alpha (factors absorb it)."
    ),
    dtype: str | None = typer.Option(
        None, "--dtype", help="fp16 | bf16 | fp32 for LoRA factors (default: as read)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the compression report as JSON."),
    verbose: bool = typer.Option(False, "--verbose"),
) -> None:
    """SVD-truncate a LoRA adapter (from r×r cores) into a smaller PEFT adapter with the same scales."""

    def body() -> int:
        from gradience.compress import CompressError, CompressionPlan, compress_adapter, render_compress

        given = {"--rank": rank, "--energy": energy, "--budget-params": budget_params}
        given |= {"--budget-ratio": budget_ratio, "--from-audit": from_audit or None}
        chosen = [flag for flag, value in given.items() if value is not None]
        if len(chosen) != 1:
            raise CompressError(
                "choose exactly one of --rank, --energy, --budget-params, --budget-ratio, --from-audit"
                + (f" (got {', '.join(chosen)})" if chosen else "")
            )
        plan = CompressionPlan(
            rank=rank,
            energy=energy,
            budget_params=budget_params,
            budget_ratio=budget_ratio,
            from_audit=from_audit,
            allowed_ranks=_parse_ranks(allowed_ranks),
            alpha_mode=_choice(alpha_mode, "--alpha-mode", ("keep_scale", "keep_alpha")),
            dtype=None if dtype is None else _choice(dtype, "--dtype", ("fp16", "bf16", "fp32")),
        )
        report = compress_adapter(peft_dir, out, plan, overwrite=overwrite)
        _show(report, as_json, render_compress)
        return 0

    _guarded(body, verbose)


@app.command()
def report(
    run_file: Path = typer.Argument(..., help="Telemetry JSONL file."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on stdout."),
    verbose: bool = typer.Option(False, "--verbose"),
) -> None:
    """Upstream v0.3.1's `report`: events, evaluation accuracy, training loss and alerts of a run file."""

    def body() -> int:
        from gradience.compat.report import render_report, telemetry_report

        rep = telemetry_report(run_file)
        _show(rep, as_json, render_report)
        return 0

    _guarded(body, verbose)


@app.command()
def truncate(
    peft_dir: Path = typer.Option(..., "--peft-dir", help="PEFT adapter folder to truncate."),
    out_dir: Path = typer.Option(..., "--out-dir", help="Output folder (a complete PEFT adapter)."),
    rank: int = typer.Option(..., "--rank", help="Target rank (capped at each layer's r)."),
    alpha_mode: str = typer.Option(
        "keep_ratio", "--alpha-mode", help="keep_ratio (keep each layer's scale) | keep_alpha (keep α)."
    ),
    dtype: str = typer.Option("fp16", "--dtype", help="fp16 | bf16 | fp32 for the written LoRA factors."),
    report_path: Path | None = typer.Option(None, "--report", help="Also write the report (JSON) here."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out-dir folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    verbose: bool = typer.Option(False, "--verbose"),
) -> None:
    """Upstream 0.11's `truncate`: `compress --rank` with upstream's flags (SVD from r×r cores)."""

    def body() -> int:
        from gradience.compat.truncate import ALPHA_MODES, truncate_plan
        from gradience.compress import compress_adapter, render_compress
        from gradience.files import write_json_atomic

        mode = _choice(alpha_mode, "--alpha-mode", tuple(ALPHA_MODES))
        plan = truncate_plan(rank, mode, _choice(dtype, "--dtype", ("fp16", "bf16", "fp32")))
        report = compress_adapter(peft_dir, out_dir, plan, overwrite=overwrite)
        if report_path is not None:
            write_json_atomic(report_path, report.to_json())
        _show(report, as_json, render_compress)
        return 0

    _guarded(body, verbose)


bench_app = typer.Typer(
    help="Benchmark compressed variants against a probe, with honest verdicts; `bench plan` sizes the run.",
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_OneLineUsageErrors,
)
app.add_typer(bench_app, name="bench")


@bench_app.callback(invoke_without_command=True)
def bench(
    ctx: typer.Context,
    config: str | None = typer.Option(
        None, "--config", help="Bench YAML file or built-in name (minilm_sst2, …)."
    ),
    output: Path | None = typer.Option(None, "--output", help="Output folder (seed_<s>/ runs + reports)."),
    smoke: bool = typer.Option(False, "--smoke", help="Tiny budgets; exit 0 when every report is written."),
    ci: bool = typer.Option(False, "--ci", help="Exit 2 if a probe is undertrained, 1 if no variant passes."),
    device: str | None = typer.Option(None, "--device", help="cpu | cuda | mps (overrides runtime.device)."),
    seeds: str | None = typer.Option(None, "--seeds", help="Seeds, e.g. 42,123,456 (overrides the config)."),
    data_dir: str | None = typer.Option(
        None, "--data-dir", help="Folder with GLUE-format train.tsv/dev.tsv."
    ),
    resume: bool = typer.Option(False, "--resume", help="Skip runs already finished in --output."),
    executor: str | None = typer.Option(None, "--executor", help="local (default) | ray."),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="Ray cluster address, e.g. auto (with --executor ray)."
    ),
    workers: int | None = typer.Option(
        None, "--workers", help="Local executor: jobs at once in worker processes (runtime.workers)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print bench.json on stdout."),
    verbose: bool = typer.Option(False, "--verbose"),
) -> None:
    """Train a probe, audit it, train/truncate compressed variants, judge them: `gradience bench --config …`."""
    if ctx.invoked_subcommand is not None:
        return

    def body() -> int:
        from gradience.bench import BenchInputError
        from gradience.bench.config import builtin_configs
        from gradience.bench.run_bench import run_bench

        if config is None or output is None:
            missing = "--config" if config is None else "--output"
            raise BenchInputError(f"{missing} is required (built-in configs: {', '.join(builtin_configs())})")
        outcome = run_bench(
            config, output, smoke=smoke, ci=ci, device=device, seeds=seeds, data_dir=data_dir, resume=resume,
            executor=executor, ray_address=ray_address, workers=workers, verbose=verbose,
        )  # fmt: skip
        if as_json:
            _print_json(outcome.report)
        else:
            typer.echo(outcome.text)
        return outcome.exit_code

    _guarded(body, verbose)


@bench_app.command("plan")
def bench_plan(
    margin: float | None = typer.Option(
        None, help="Non-inferiority margin (0.025 = 2.5 points); default: policy."
    ),
    power: float = typer.Option(0.8, help="Target power at true Δ = 0."),
    baseline_acc: float | None = typer.Option(
        None, "--baseline-acc", help="Probe accuracy expected on the eval items (required without --from)."
    ),
    discordance: float | None = typer.Option(
        None, help="Fraction of eval items on which probe and variant disagree [default: 0.10]."
    ),
    seed_sd: float | None = typer.Option(
        None, "--seed-sd", help="Seed-to-seed SD of Δ (accuracy units) [default: 0.008]."
    ),
    item_share: float | None = typer.Option(
        None, "--item-share", help="Item noise common to all seeds (1: same items flip); default: worst case."
    ),
    from_dir: Path | None = typer.Option(
        None,
        "--from",
        help="A finished bench folder: estimate accuracy, discordance, seed SD and item share.",
    ),
    eval_items: int | None = typer.Option(None, "--eval-items", help="Fix the eval set size."),
    seeds: int | None = typer.Option(None, "--seeds", help="Fix the number of seeds."),
    confidence: float | None = typer.Option(None, help="Two-sided CI level (default: the policy's, 0.95)."),
    policy: str | None = typer.Option(
        None, help="Policy whose point-estimate rule is shown beside (safe_uniform)."
    ),
    config: str | None = typer.Option(
        None, "--config", help="Bench YAML or built-in name: its seeds, eval items, acc_tolerance, policy."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on stdout."),
    verbose: bool = typer.Option(False, "--verbose"),
) -> None:
    """Seeds and eval items a target power needs; a budget's power and false-PASS rates. Exit 1: unreachable."""

    def body() -> int:
        from gradience.verdicts import PolicyError, plan, render_estimate, render_plan

        given: dict[str, Any] = {}
        if config is not None:  # the bench validates its own config; flags given here win
            from gradience.bench.config import load_config, planner_budget

            given = planner_budget(load_config(config))
        measured = None
        if from_dir is not None:
            from gradience.bench.judging import estimate_from_bench

            measured = estimate_from_bench(from_dir)
            given.update(measured.estimate.model_dump(exclude={"variants"}))
        acc = baseline_acc if baseline_acc is not None else given.get("baseline_acc")
        if acc is None:
            raise PolicyError("bench plan needs --baseline-acc, or --from a finished bench folder")
        result = plan(
            margin if margin is not None else given.get("margin"),
            power,
            acc,
            discordance if discordance is not None else given.get("discordance", 0.10),
            seed_sd if seed_sd is not None else given.get("seed_sd", 0.008),
            eval_items if eval_items is not None else given.get("eval_items"),
            seeds if seeds is not None else given.get("n_seeds"),
            confidence,
            policy=policy if policy is not None else given.get("policy"),
            item_share=item_share if item_share is not None else given.get("item_share"),
        )
        if as_json:
            _print_json(result.to_json() | ({"estimated_from": measured.to_json()} if measured else {}))
        else:
            if measured:
                render_estimate(measured)
            render_plan(result)
        return 0 if result.reachable else 1

    _guarded(body, verbose)


def _exit_on_sigterm() -> None:
    """SIGTERM (a scheduler's or `kill`'s) unwinds like Ctrl-C: `finally` blocks remove scratch."""
    import signal

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (embedded use): leave the host's handler alone
        pass


def prepare_process() -> None:
    """What a console entry point sets up before running a command."""
    _exit_on_sigterm()


def main() -> None:
    from gradience.compat.cli_args import translate_argv

    prepare_process()
    app(args=translate_argv(sys.argv[1:]), prog_name="gradience")


def bench_main() -> None:
    """Upstream's `gradience-bench` console script: `gradience bench` with upstream's flags."""
    from gradience.compat.bench_cli import translate_bench_argv

    prepare_process()
    _notes_to_stderr()
    args = translate_bench_argv(sys.argv[1:])
    typer.main.get_command(bench_app).main(args=args, prog_name="gradience-bench")


if __name__ == "__main__":
    main()
