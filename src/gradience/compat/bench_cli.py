"""Upstream's ``gradience-bench`` console script: its flags onto ``gradience bench``'s.

Flags that mean the same are passed through; ``-v`` is ``--verbose``; flags that change
nothing here are accepted with one ``note:`` line each (never silently dropped).
"""

from __future__ import annotations

import logging

log = logging.getLogger("gradience.compat")

NO_EFFECT_FLAGS = {  # flag → (takes a value, why it changes nothing here)
    "--keep-artifacts": (False, "adapters are kept (runtime.keep_adapters)"),
    "--clean-on-pass": (False, "upstream marked it a future feature; nothing is cleaned"),
    "--full-mode": (False, "the variants come from compression.variants_to_test"),
    "--max-candidates": (True, "the variants come from compression.variants_to_test"),
}


def translate_bench_argv(argv: list[str]) -> list[str]:
    out: list[str] = []
    args = iter(argv)
    for arg in args:
        flag, eq, _ = arg.partition("=")
        if flag in NO_EFFECT_FLAGS:
            takes_value, why = NO_EFFECT_FLAGS[flag]
            if takes_value and not eq:
                next(args, None)
            log.info("gradience-bench %s has no effect here (%s)", flag, why)
        elif arg == "-v":
            out.append("--verbose")
        else:
            out.append(arg)
    return out
