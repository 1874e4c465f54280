"""Untrusted JSON and YAML, parsed within bounds: one place for the resource guards.

Hostile files must not crash or hang a parser: nesting deep enough to exhaust the stack,
YAML aliases that expand to billions of nodes ("billion laughs": tiny on disk, and every
later walk over the data never ends), text that is not UTF-8, or a file too large to be a
config. Each is refused with one line naming the file (`MalformedInput`, exit 2).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import yaml

MAX_DEPTH = 64  # real configs nest 3-5 deep
MAX_NODES = 200_000  # after alias expansion; a large adapter_config.json has a few thousand
MAX_CONFIG_BYTES = 32 << 20


class MalformedInput(ValueError):
    """A file or text that cannot be parsed within bounds (the message names it)."""


def read_text(path: str | os.PathLike[str], what: str = "file", limit: int = MAX_CONFIG_BYTES) -> str:
    """A config-sized UTF-8 text file; OSErrors propagate (the CLI names the path)."""
    path = Path(path)
    if path.is_file() and path.stat().st_size > limit:
        raise MalformedInput(f"{what} {path} is {path.stat().st_size:,} bytes; a config is at most {limit:,}")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedInput(
            f"{what} {path} is not UTF-8 text (byte {exc.start}: {data[exc.start]:#04x})"
        ) from None


def _bounded_walk(root: Any, children: Callable[[Any], Iterable[Any]], source: str, what: str) -> None:
    """Visit every node (iteratively: no recursion), refusing depth > MAX_DEPTH or > MAX_NODES."""
    stack, seen = [(root, 1)], 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if depth > MAX_DEPTH:
            raise MalformedInput(f"{source}: nested more than {MAX_DEPTH} levels deep")
        if seen > MAX_NODES:
            raise MalformedInput(f"{source}: {what.format(n=f'{MAX_NODES:,}')}")
        stack.extend((child, depth + 1) for child in children(node))


def _tree_children(node: Any) -> Iterable[Any]:
    return node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()


def _yaml_children(node: yaml.Node) -> Iterable[yaml.Node]:
    """A node's children as composed: an alias is the same node object again, so counting visits
    counts the tree as it would be after expansion, without expanding it."""
    import yaml

    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return ()


def check_depth(obj: Any, source: str) -> Any:
    """Refuse parsed trees deeper than MAX_DEPTH or larger than MAX_NODES."""
    _bounded_walk(obj, _tree_children, source, "more than {n} values")
    return obj


def loads_json(text: str | bytes, source: str) -> Any:
    """json.loads with the guards; NaN/Infinity are kept (the callers' models judge ranges)."""
    try:
        obj = json.loads(text)
    except RecursionError:
        raise MalformedInput(f"{source}: nested too deeply to parse") from None
    except UnicodeDecodeError:
        raise MalformedInput(f"{source}: not UTF-8 text") from None
    except ValueError as exc:
        raise MalformedInput(f"{source}: invalid JSON ({exc})") from None
    return check_depth(obj, source)


def loads_yaml(text: str, source: str) -> Any:
    """yaml.safe_load, with the alias-expansion and depth bounds checked before constructing.
    yaml is imported here: the adapter commands read only JSON."""
    import yaml

    loader = None
    try:
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None
        _bounded_walk(node, _yaml_children, source, "expands to more than {n} values (YAML aliases?)")
        return loader.construct_document(node)
    except MalformedInput:
        raise
    except RecursionError:
        raise MalformedInput(f"{source}: nested too deeply to parse") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        why = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise MalformedInput(f"{source}: invalid YAML{where} ({why})") from None
    except (ValueError, TypeError, OverflowError) as exc:  # constructor errors on odd scalars
        raise MalformedInput(f"{source}: invalid YAML value ({exc})") from None
    finally:
        if loader is not None:
            loader.dispose()
