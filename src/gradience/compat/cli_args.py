"""Upstream's argument forms that click cannot declare: ``check --targets q k v`` (argparse's
``nargs="*"``) becomes ``--targets q --targets k --targets v`` before the CLI parses it."""

from __future__ import annotations


def translate_argv(argv: list[str]) -> list[str]:
    if not argv or argv[0] != "check":
        return list(argv)
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        out.append(arg)
        i += 1
        if arg != "--targets":
            continue
        values = []
        while i < len(argv) and not argv[i].startswith("-"):
            values.append(argv[i])
            i += 1
        out.extend(values[:1])
        for value in values[1:]:
            out += ["--targets", value]
    return out
