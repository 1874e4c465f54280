"""``python -m gradience.bench.run_bench``: the flags and exit codes of ``gradience bench``.

An entry point, like ``gradience/__main__.py``: the one kind of module that imports the CLI.
"""

import sys

import typer

from gradience.cli import bench_app, prepare_process

prepare_process()
typer.main.get_command(bench_app).main(args=sys.argv[1:], prog_name="python -m gradience.bench.run_bench")
