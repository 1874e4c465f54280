"""`check`, `monitor` and upstream's `report`: before and after a training run."""

from __future__ import annotations

from pathlib import Path

import typer

from gradience.cli.shell import _guarded, _show, app


@app.command(short_help="Check a LoRA fine-tuning config before spending compute.")
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


@app.command(short_help="Summarise a run: signals, gap, alerts, recommendations.")
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


@app.command(short_help="Upstream v0.3.1's report of a run's telemetry file.")
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
