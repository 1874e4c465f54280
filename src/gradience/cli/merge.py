"""`merge-audit` and `merge`: several adapters on one base → a compatibility report or one adapter."""

from __future__ import annotations

from pathlib import Path

import typer

from gradience.cli.shell import _guarded, _print_json, app


def _weights(text: str | None) -> list[float] | None:
    if text is None:
        return None
    from gradience.merge import MergeError

    try:
        return [float(x) for x in text.replace(",", " ").split()]
    except ValueError:
        raise MergeError(f"--weights must be numbers separated by commas, got {text!r}") from None


@app.command("merge-audit", short_help="Are two adapters compatible? Exact per-module angles.")
def merge_audit_cmd(
    adapter_a: Path = typer.Argument(..., help="First PEFT adapter folder (A)."),
    adapter_b: Path = typer.Argument(..., help="Second PEFT adapter folder (B), on the same base."),
    out: Path | None = typer.Option(None, "--out", help="Write merge_audit.json and merge_audit.md here."),
    top_k: int = typer.Option(8, "--top-k", help="Principal-angle cosines kept per layer."),
    cos_threshold: float = typer.Option(0.1, help="Verdict threshold on the Frobenius cosine."),
    imbalance: float = typer.Option(10.0, help="Norm ratio beyond which a layer is noted as dominated."),
    layers: bool = typer.Option(False, "--layers", help="Show every layer (text output)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out folder."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on stdout."),
    verbose: bool = typer.Option(False, "--verbose"),
) -> None:
    """Are two LoRA adapters compatible? Per shared module, exact from the factors: principal angles
    of column and row spaces, the cosine of ΔW_A and ΔW_B, their norm ratio, and a verdict."""

    def body() -> int:
        from gradience.files import staged_output, write_atomic, write_json_atomic
        from gradience.merge import Thresholds, merge_audit, merge_audit_markdown, render_merge_audit

        th = Thresholds(cosine=cos_threshold, imbalance=imbalance)
        report = merge_audit(adapter_a, adapter_b, thresholds=th, top_k=top_k)
        if out is not None:
            with staged_output(
                out, kind="merge-audit", inputs=[adapter_a, adapter_b], overwrite=overwrite
            ) as tmp:
                write_json_atomic(tmp / "merge_audit.json", report.to_json())
                write_atomic(tmp / "merge_audit.md", merge_audit_markdown(report))
        if as_json:
            _print_json(report.to_json())
        else:
            render_merge_audit(report, layers=layers)
        return 0

    _guarded(body, verbose)


@app.command("merge", short_help="Merge adapters into one: linear, svd, ties or dare.")
def merge_cmd(
    adapters: list[Path] = typer.Argument(..., help="Two or more PEFT adapter folders on the same base."),
    out: Path = typer.Option(..., "--out", help="Output folder (a complete PEFT adapter)."),
    method: str = typer.Option(..., "--method", help="linear | svd | ties | dare."),
    weights: str | None = typer.Option(
        None, "--weights", help="Per-adapter weights, e.g. 0.5,0.5 (default 1/N)."
    ),
    rank: int | None = typer.Option(None, "--rank", help="svd/ties/dare: rank K of every merged layer."),
    energy: float | None = typer.Option(
        None, "--energy", help="svd/ties/dare: per layer, keep fraction T of ‖ΔW‖²."
    ),
    density: float | None = typer.Option(
        None, "--density", help="ties: kept top fraction (0.2); dare: keep rate (0.5)."
    ),
    seed: int = typer.Option(0, "--seed", help="dare: seed of the drop masks."),
    head_from: str | None = typer.Option(
        None, "--head-from", help="Take heads/non-LoRA tensors from A, B, …"
    ),
    allow_missing: bool = typer.Option(
        False, "--allow-missing", help="A module missing from an input counts as zero."
    ),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32 | fp16 | bf16 for the written factors."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the merge report as JSON."),
    verbose: bool = typer.Option(False, "--verbose"),
) -> None:
    """Merge LoRA adapters into one PEFT adapter: linear (lossless concatenation), svd (exact sum,
    Eckart–Young truncation from r×r cores), ties or dare (elementwise, one layer at a time)."""

    def body() -> int:
        from gradience.merge import MergeError, MergePlan, merge_adapters, render_merge

        if dtype not in ("fp32", "fp16", "bf16"):
            raise MergeError(f"--dtype must be fp32, fp16 or bf16, got {dtype!r}")
        plan = MergePlan(
            method=method,
            weights=_weights(weights),
            rank=rank,
            energy=energy,
            density=density,
            seed=seed,
            head_from=head_from,
            allow_missing=allow_missing,
            dtype=dtype,  # type: ignore[arg-type]
        )
        report = merge_adapters(adapters, out, plan, overwrite=overwrite)
        if as_json:
            _print_json(report.to_json())
        else:
            render_merge(report)
        return 0

    _guarded(body, verbose)
