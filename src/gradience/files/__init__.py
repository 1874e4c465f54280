"""File safety shared by every command that writes: nothing the user owns is ever lost.

One implementation each of: atomic file writes, crash-safe output folders (refuse paths that
would touch the input, replace only folders Gradience wrote, swap old for new atomically,
recover what an interrupted run left), appends that survive torn lines and full disks, scratch
folders that are swept, and the one-line description of an OS error. Imports nothing else of
ours, so every package may use it.
"""

from __future__ import annotations

from .append import append_bytes, ends_torn, open_append
from .atomic import write_atomic, write_json_atomic
from .errors import OutputPathError, describe_os_error, describe_validation_error
from .faults import checkpoint
from .outdir import MARKER, check_output_dir, is_ours, mark_folder, recover, staged_output
from .parse import MalformedInput, check_depth, loads_json, loads_yaml, read_text
from .scratch import scratch_dir, sweep_scratch

__all__ = [
    "MARKER",
    "MalformedInput",
    "OutputPathError",
    "append_bytes",
    "check_output_dir",
    "check_depth",
    "checkpoint",
    "describe_os_error",
    "describe_validation_error",
    "ends_torn",
    "is_ours",
    "loads_json",
    "loads_yaml",
    "mark_folder",
    "open_append",
    "read_text",
    "recover",
    "scratch_dir",
    "staged_output",
    "sweep_scratch",
    "write_atomic",
    "write_json_atomic",
]
