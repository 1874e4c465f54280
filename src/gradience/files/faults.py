"""Named points where a test can kill the process for real, to prove crash safety.

`GRADIENCE_FAULT_AT=<name>` makes the process SIGKILL itself when it reaches that point: no
`finally`, no cleanup, exactly what a power cut or the OOM killer does. Unset, a checkpoint
costs one environment lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "GRADIENCE_FAULT_AT"


def checkpoint(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
