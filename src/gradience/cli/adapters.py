"""`audit`, `compress` and upstream's `truncate`: commands on an adapter folder."""

from __future__ import annotations

from pathlib import Path

import typer

from gradience.cli.shell import _choice, _guarded, _parse_ranks, _print_json, _show, app


def _render_compress(report: object) -> None:
    from gradience.compress.render import render_compress  # rich: only for the text output

    render_compress(report)  # type: ignore[arg-type]


@app.command(short_help="Exact per-layer spectral audit of a LoRA adapter.")
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
    rank_rule: str = typer.Option(
        "energy@0.90", "--rank-rule", help="Rule of the per-layer suggestion: energy@T | knee | erank | oht."
    ),
    base_model: str | None = typer.Option(
        None, "--base-model", help="Base model folder (or alias): add ‖ΔW‖/‖W‖ per layer, streamed."
    ),
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
        from gradience.audit import AdapterError, audit_adapter
        from gradience.audit.rules import parse_rule

        if json_format not in ("v1", "v0.3"):
            raise AdapterError(f"--format must be v1 or v0.3, got {json_format!r}")
        parse_rule(rank_rule)  # a typo fails before the pass, not after it
        report = audit_adapter(
            peft_dir,
            adapter_config=adapter_config,
            weights=weights,
            allowed_ranks=_parse_ranks(allowed_ranks),
            per_layer_margin=per_layer_margin,
            top_singular_values=top_singular_values,
            rank_rule=rank_rule,
        )
        if base_model is not None:
            from gradience.audit.base_norms import attach_base_norms
            from gradience.cli.base_model import resolve_base

            attach_base_norms(report, resolve_base(base_model))
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
            from gradience.audit.render import render_audit

            render_audit(
                report, layers=layers, top_wasteful=top_wasteful, suggest_per_layer=suggest_per_layer
            )
        return 1 if strict and report.issues else 0

    _guarded(body, verbose)


@app.command(short_help="SVD-truncate an adapter into a smaller PEFT adapter.")
def compress(
    peft_dir: Path = typer.Option(..., "--peft-dir", help="PEFT adapter folder to compress."),
    out: Path = typer.Option(..., "--out", help="Output folder (a complete PEFT adapter)."),
    rank: int | None = typer.Option(None, "--rank", help="Uniform rank K (capped at each layer's r)."),
    energy: float | None = typer.Option(None, help="Per layer: smallest rank keeping fraction T of ‖ΔW‖²."),
    budget_params: int | None = typer.Option(None, help="Global LoRA-parameter budget (allocator)."),
    budget_ratio: float | None = typer.Option(None, help="Budget as a fraction of today's LoRA params."),
    from_audit: bool = typer.Option(False, "--from-audit", help="The audit's per-layer suggestion."),
    rank_rule: str | None = typer.Option(
        None, "--rank-rule", help="Per layer: energy@T | knee | erank | oht."
    ),
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
        from gradience.compress import (
            ALPHA_MODES,
            SAVE_DTYPES,
            CompressError,
            CompressionPlan,
            compress_adapter,
        )

        given = {"--rank": rank, "--energy": energy, "--budget-params": budget_params}
        given |= {
            "--budget-ratio": budget_ratio,
            "--from-audit": from_audit or None,
            "--rank-rule": rank_rule,
        }
        chosen = [flag for flag, value in given.items() if value is not None]
        if len(chosen) != 1:
            raise CompressError(
                "choose exactly one of --rank, --energy, --budget-params, --budget-ratio, --from-audit, --rank-rule"
                + (f" (got {', '.join(chosen)})" if chosen else "")
            )
        plan = CompressionPlan(
            rank=rank,
            energy=energy,
            budget_params=budget_params,
            budget_ratio=budget_ratio,
            from_audit=from_audit,
            rank_rule=rank_rule,
            allowed_ranks=_parse_ranks(allowed_ranks),
            alpha_mode=_choice(alpha_mode, "--alpha-mode", ALPHA_MODES),
            dtype=None if dtype is None else _choice(dtype, "--dtype", SAVE_DTYPES),
        )
        report = compress_adapter(peft_dir, out, plan, overwrite=overwrite)
        _show(report, as_json, _render_compress)
        return 0

    _guarded(body, verbose)


@app.command(short_help="Upstream 0.11's truncate: compress --rank, its flags.")
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
        from gradience.compress import SAVE_DTYPES, compress_adapter
        from gradience.files import write_json_atomic

        mode = _choice(alpha_mode, "--alpha-mode", tuple(ALPHA_MODES))
        plan = truncate_plan(rank, mode, _choice(dtype, "--dtype", SAVE_DTYPES))
        report = compress_adapter(peft_dir, out_dir, plan, overwrite=overwrite)
        if report_path is not None:
            write_json_atomic(report_path, report.to_json())
        _show(report, as_json, _render_compress)
        return 0

    _guarded(body, verbose)
