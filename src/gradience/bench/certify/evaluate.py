"""Scoring a model batch by batch through the task, so a clearly inferior candidate can stop early.

Each batch is handed to ``task.evaluate`` as a one-batch split holding exactly the items, in
exactly the order, that ``eval_batches`` puts in that batch of the whole split: padding, and so
every number, is what one ``task.evaluate`` over all items computes. Between batches a
``keep_going`` callback sees the outcomes so far and may end the evaluation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from gradience.bench.tasks import Split, SplitEval, Task, eval_batches

KeepGoing = Callable[[dict[int, float]], bool]


def subsplit(split: Split, idx: list[int]) -> Split:
    return Split(
        split.name,
        [split.rows[i] for i in idx],
        {k: [v[i] for i in idx] for k, v in split.features.items()},
        [split.labels[i] for i in idx] if split.labels else [],
        [split.items[i] for i in idx] if split.items else [],
    )


@contextlib.contextmanager
def _one_bar(label: str, total: int) -> Iterator[Any]:
    """One bar for the whole evaluation; the per-batch calls of task.evaluate show none."""
    from gradience.bench import training

    with training.progress(label, total) as advance:
        before = training.set_progress_factory(_no_bar)
        try:
            yield advance
        finally:
            training.set_progress_factory(before)


@contextlib.contextmanager
def _no_bar(description: str, total: int) -> Iterator[Any]:
    yield lambda n=1, info="": None


def evaluate_items(
    task: Task, model: Any, split: Split, *, batch_size: int, pad_token_id: int, device: Any, label: str,
    keep_going: KeepGoing | None = None,
) -> tuple[SplitEval, bool]:  # fmt: skip
    """The evaluated items' SplitEval (in split order) and whether ``keep_going`` stopped it early."""
    parts: dict[int, tuple[SplitEval, int]] = {}  # item → (its batch's result, position in it)
    seen: dict[int, float] = {}
    stopped = False
    with _one_bar(label, len(split)) as advance:
        for idx in eval_batches(split, batch_size):
            ev = task.evaluate(model, subsplit(split, idx), batch_size, pad_token_id, device, label)
            for pos, i in enumerate(idx):
                parts[i] = (ev, pos)
                seen[i] = ev.outcomes[pos]
            advance(len(idx))
            if keep_going is not None and len(seen) < len(split) and not keep_going(seen):
                stopped = True
                break
    return combine(split, parts), stopped


def combine(split: Split, parts: dict[int, tuple[SplitEval, int]]) -> SplitEval:
    order = sorted(parts)
    outcomes = [parts[i][0].outcomes[parts[i][1]] for i in order]
    batches = {id(ev): ev for ev, _ in parts.values()}
    loss = sum(ev.loss * ev.n for ev in batches.values()) / max(len(order), 1)
    first = next(iter(batches.values()))

    def column(name: str) -> list[Any] | None:
        if getattr(first, name) is None:
            return None
        return [getattr(parts[i][0], name)[parts[i][1]] for i in order]

    value = sum(outcomes) / len(outcomes)
    return SplitEval(
        split=split.name, metric=first.metric, value=value, loss=loss, n=len(order), rows=[split.rows[i] for i in order],
        outcomes=outcomes, accuracy=value if first.accuracy is not None else None, labels=column("labels"),
        preds=column("preds"), texts=column("texts"),
    )  # fmt: skip
