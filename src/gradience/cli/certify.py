"""`gradience certify`: the smallest truncation of an adapter shown as good as it, written out."""

from __future__ import annotations

from pathlib import Path

import typer

from gradience.cli.shell import _guarded, _print_json, app


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [x.strip() for x in text.split(",") if x.strip()]


@app.command(short_help="The smallest SVD truncation non-inferior on your data.")
def certify(
    peft_dir: Path = typer.Option(..., "--peft-dir", help="PEFT LoRA adapter folder to certify."),
    data: str = typer.Option(
        ..., "--data", help="Eval data: a file, a folder (dev.* if present) or a hub id."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Output folder: certified/, certify.json, certify.md, predictions/."
    ),
    base_model: str | None = typer.Option(
        None, "--base-model", help="Base model (folder, hub id, 'minilm-l6'); default: the adapter's."
    ),
    task: str | None = typer.Option(None, "--task", help="classification (default) | causal_lm."),
    metric: str | None = typer.Option(
        None, "--metric", help="The task's per-item metric (default: its first)."
    ),
    text_field: list[str] | None = typer.Option(None, "--text-field", help="Text column; repeat for pairs."),
    label_field: str | None = typer.Option(None, "--label-field", help="Label column."),
    labels: str | None = typer.Option(
        None, "--labels", help="Label names in the order the head was trained with, e.g. neg,pos."
    ),
    task_config: str | None = typer.Option(None, "--task-config", help="YAML mapping of task keys."),
    eval_samples: int | None = typer.Option(None, "--eval-samples", help="Items to evaluate (default: all)."),
    margin: float = typer.Option(0.025, "--margin", help="Non-inferiority margin (0.025 = 2.5 points)."),
    confidence: float = typer.Option(0.95, "--confidence", help="Two-sided CI level of each test."),
    ladder: str = typer.Option(
        "budget", "--ladder", help="budget | rank | energy | rules (the audit's rank rules)."
    ),
    steps: str | None = typer.Option(
        None,
        "--steps",
        help="Ladder steps, e.g. 0.5,0.25 (budget shares, ranks or shares of r, energy targets; rules: knee,oht,…).",
    ),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | mps."),
    batch_size: int = typer.Option(
        64, "--batch-size", help="Eval batch size (batches are sorted by length)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue in --out, reusing finished predictions."),
    as_json: bool = typer.Option(False, "--json", help="Print certify.json on stdout."),
    verbose: bool = typer.Option(False, "--verbose"),
) -> None:
    """Certify the smallest SVD truncation of an adapter that is non-inferior on your data. Exit 0: a smaller
    adapter was certified; 1: nothing smaller was; 2: bad input."""

    def body() -> int:
        from gradience.bench.certify import CertifyOptions, certify

        outcome = certify(
            CertifyOptions(
                peft_dir=peft_dir, data=data, out=out, base_model=base_model, task_type=task, metric=metric,
                text_fields=text_field or None, label_field=label_field, labels=_names(labels),
                task_config=task_config, eval_samples=eval_samples, margin=margin, confidence=confidence,
                ladder=ladder, steps=steps, device=device, batch_size=batch_size, resume=resume,
            )
        )  # fmt: skip
        if as_json:
            _print_json(outcome.report.to_json())
        else:
            typer.echo(outcome.text)
        return outcome.exit_code

    _guarded(body, verbose)
