"""Command-line shell: parses flags, calls the library, maps errors to exit codes.

No logic lives here: `shell` holds the app and the error mapping, one module per group of
commands registers them. Heavy libraries (torch, transformers) are imported inside each command
so that `gradience --help` stays instant.
"""

from __future__ import annotations

import sys

import typer

from gradience.cli import adapters, bench, explain, merge, runs  # noqa: F401  (registers the commands)
from gradience.cli.bench import bench_app
from gradience.cli.shell import _notes_to_stderr, app, prepare_process

__all__ = ["app", "bench_app", "bench_main", "main", "prepare_process"]


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
