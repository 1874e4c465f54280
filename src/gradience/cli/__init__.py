"""Command-line shell: parses flags, calls the library, maps errors to exit codes.

No logic lives here: `shell` holds the app and the error mapping, one module per group of
commands registers them. `main` registers only the group of the command it runs (building
every command's parameters costs each run tens of milliseconds), and every group imports its
libraries inside each command, so `gradience audit` pays for neither bench nor torch;
`gradience --help`, an unknown command and `app` (for embedding and tests) get them all.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from gradience.cli.shell import _notes_to_stderr, prepare_process

__all__ = ["app", "bench_app", "bench_main", "main", "prepare_process"]

_GROUPS = {  # command → the module that registers it (in --help's order)
    "audit": "adapters", "compress": "adapters", "truncate": "adapters",
    "explain": "explain", "merge-audit": "merge", "merge": "merge",
    "bench": "bench", "certify": "certify", "check": "runs", "monitor": "runs", "report": "runs",
}  # fmt: skip


def _register(command: str | None = None) -> Any:
    """Register `command`'s group (every group for anything else) and return the app."""
    groups = [_GROUPS[command]] if command in _GROUPS else list(dict.fromkeys(_GROUPS.values()))
    for group in groups:
        importlib.import_module(f"gradience.cli.{group}")
    from gradience.cli.shell import app

    return app


def __getattr__(name: str) -> Any:
    if name == "app":
        return _register()
    if name == "bench_app":
        _register()
        from gradience.cli.bench import bench_app

        return bench_app
    raise AttributeError(f"module 'gradience.cli' has no attribute {name!r}")


def main() -> None:
    from gradience.compat.cli_args import translate_argv

    args = translate_argv(sys.argv[1:])
    command = args[0] if args else None
    prepare_process(command)
    _register(command)(args=args, prog_name="gradience")


def bench_main() -> None:
    """Upstream's `gradience-bench` console script: `gradience bench` with upstream's flags."""
    import typer

    from gradience.cli.bench import bench_app
    from gradience.compat.bench_cli import translate_bench_argv

    prepare_process()
    _notes_to_stderr()
    args = translate_bench_argv(sys.argv[1:])
    typer.main.get_command(bench_app).main(args=args, prog_name="gradience-bench")
