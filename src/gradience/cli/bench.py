"""`gradience bench` and `gradience bench plan`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from gradience.cli.shell import HELP, _guarded, _OneLineUsageErrors, _print_json, app

bench_app = typer.Typer(
    help="Benchmark compressed variants against a probe, with honest verdicts; `bench plan` sizes the run.",
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_OneLineUsageErrors,
    **HELP,  # type: ignore[arg-type]
)
app.add_typer(bench_app, name="bench", short_help="Benchmark compressed variants with honest verdicts.")


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
    data: str | None = typer.Option(
        None, "--data", help="A data file (.csv .tsv .jsonl .json .parquet), folder or hub id (task.data)."
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
            config, output, smoke=smoke, ci=ci, device=device, seeds=seeds, data_dir=data_dir, data=data, resume=resume,
            executor=executor, ray_address=ray_address, workers=workers, verbose=verbose,
        )  # fmt: skip
        if as_json:
            _print_json(outcome.report)
        else:
            typer.echo(outcome.text)
        return outcome.exit_code

    _guarded(body, verbose)


@bench_app.command("plan", short_help="Seeds and eval items a target power needs.")
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
    item_sd: float | None = typer.Option(
        None,
        "--item-sd",
        help="Real-valued metrics (NLL): SD of the per-item paired difference, in its units; "
        "needs --margin and --seed-sd in the same units (no --baseline-acc).",
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
        if acc is None and item_sd is None:
            raise PolicyError(
                "bench plan needs --baseline-acc (or --item-sd for a real-valued metric), or --from a finished bench folder"
            )
        if item_sd is not None and seed_sd is None:
            raise PolicyError("--item-sd needs --seed-sd in the same units (the seed-to-seed SD of Δ)")
        result = plan(
            margin if margin is not None else given.get("margin"),
            power,
            acc,
            discordance if discordance is not None else given.get("discordance", 0.10),
            seed_sd if seed_sd is not None else given.get("seed_sd", None if item_sd is not None else 0.008),
            eval_items if eval_items is not None else given.get("eval_items"),
            seeds if seeds is not None else given.get("n_seeds"),
            confidence,
            policy=policy if policy is not None else given.get("policy"),
            item_share=item_share if item_share is not None else given.get("item_share"),
            item_sd=item_sd,
        )
        if as_json:
            _print_json(result.to_json() | ({"estimated_from": measured.to_json()} if measured else {}))
        else:
            if measured:
                render_estimate(measured)
            render_plan(result)
        return 0 if result.reachable else 1

    _guarded(body, verbose)
