"""The shell every command shares: the Typer app, exit codes, error mapping, JSON/text output.

Exit codes: 0 ok, 1 a check/verdict failed, 2 bad input, usage or an OS error, 3 an internal
error (a bug).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
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


# Plain (click) help, not rich panels: typer's rich help imports rich's markdown, syntax and
# traceback machinery, which more than doubles `gradience --help` (≈0.2 s of its ≈0.4 s).
HELP = {"rich_markup_mode": None, "context_settings": {"max_content_width": 100}}

app = typer.Typer(
    name="gradience",
    help="Spectral audit, compression and honest benchmarking of LoRA adapters.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_OneLineUsageErrors,
    **HELP,  # type: ignore[arg-type]
)


_INPUT_ERRORS = [  # (defining module, class): every package's "bad input" exception
    ("gradience.audit.errors", "AdapterError"),
    ("gradience.telemetry.errors", "TelemetryError"),
    ("gradience.files.errors", "OutputPathError"),
    ("gradience.compress.errors", "CompressError"),
    ("gradience.verdicts.errors", "PolicyError"),
    ("gradience.check.errors", "CheckInputError"),
    ("gradience.bench", "BenchInputError"),
    ("gradience.merge.errors", "MergeError"),
]


def _input_errors() -> tuple[type[BaseException], ...]:
    """The bad-input exceptions that can have been raised: those of modules already imported
    (importing the others would cost a failing `audit` seconds of verdicts and bench imports)."""
    found = (getattr(sys.modules.get(mod), name, None) for mod, name in _INPUT_ERRORS)
    return tuple(cls for cls in found if isinstance(cls, type) and issubclass(cls, BaseException))


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


def _exit_on_sigterm() -> None:
    """SIGTERM (a scheduler's or `kill`'s) unwinds like Ctrl-C: `finally` blocks remove scratch."""
    import signal

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (embedded use): leave the host's handler alone
        pass


# Commands on one adapter folder: they run layers on their own threads (one BLAS thread each),
# validate only their own pydantic models, and are mostly start-up, so they skip what costs
# start-up time for nothing there: OpenBLAS's thread pool (~0.1 s to start on a busy machine)
# and pydantic's plugin discovery (it reads every installed distribution's entry points).
LEAN_COMMANDS = ("audit", "compress", "truncate")
_LEAN_ENV = {"OPENBLAS_NUM_THREADS": "1", "PYDANTIC_DISABLE_PLUGINS": "__all__"}


def prepare_process(command: str | None = None) -> None:
    """What a console entry point sets up before running a command (before numpy is imported)."""
    import os

    _exit_on_sigterm()
    if command in LEAN_COMMANDS:
        for key, value in _LEAN_ENV.items():
            os.environ.setdefault(key, value)
