"""The task seam: everything that differs between a classifier and a causal LM, in one place.

The bench's protocol, training loop, verdicts and reports work on a ``Task``: it reads
and maps the fields, tokenises, collates, names the model class and PEFT task type,
computes the training loss and scores each eval item. Verdicts only ever see per-item
outcomes (0/1, or a real number such as NLL) and the metric's direction, so the
statistics stay the same for every task type. A new task type is one module that
subclasses ``Task`` plus one line in ``gradience.bench.tasks.TASK_TYPES``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel

from gradience.bench import BenchInputError
from gradience.bench.config import TaskConfig


@dataclass(frozen=True)
class Metric:
    """A per-item metric: what reports call it and which way is better."""

    name: str  # config and JSON name: accuracy, exact_match, choice, nll
    title: str  # what prose calls it: "accuracy", "exact match", "NLL"
    higher_is_better: bool = True
    binary: bool = True  # per-item outcomes are 0/1 (a rate, shown in percent and points)
    unit: str = "points"  # of a difference: points (binary, ×100) or the metric's own (nats)

    def fmt(self, value: float | None) -> str:
        """A metric value as tables show it: a rate to 3 decimals (0.912), others to 4."""
        if value is None:
            return "—"
        return f"{value:.3f}" if self.binary else f"{value:.4f}"

    def fmt_delta(self, delta: float | None) -> str:
        if delta is None:
            return "—"
        return f"{100 * delta:+.1f}" if self.binary else f"{delta:+.4f}"

    def scale(self, value: float) -> float:
        """In display units: percentage points for rates, the raw value otherwise."""
        return 100 * value if self.binary else value

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.name, "metric_title": self.title, "higher_is_better": self.higher_is_better,
                "metric_binary": self.binary, "metric_unit": self.unit}  # fmt: skip

    @classmethod
    def from_report(cls, task: dict[str, Any]) -> Metric:
        """The metric a bench.json's task block names (accuracy for reports written before tasks)."""
        if "metric_title" not in task:
            return ACCURACY
        return cls(task["metric"], task["metric_title"], task["higher_is_better"], task["metric_binary"],
                   task["metric_unit"])  # fmt: skip

    def describe(self) -> str:
        better = "higher" if self.higher_is_better else "lower"
        return f"{self.title} ({better} is better; Δ in {self.unit})"


ACCURACY = Metric("accuracy", "accuracy")


@dataclass
class Split:
    """A tokenised split. ``rows`` index the source split so every outcome traces back to its row;
    ``labels`` are class ids (classification) and ``items`` hold what a task needs per item to score
    it (references, options, prompt lengths)."""

    name: str
    rows: list[int]
    features: dict[str, list[list[int]]]
    labels: list[int] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class TaskData:
    train: Split
    eval: Split  # the split verdicts are computed on
    beside: Split | None  # reported next to it (the official validation split under heldout)
    selection: Split | None
    num_labels: int  # classification: classes; other tasks: 0
    pad_token_id: int
    source: str
    sizes: dict[str, int] = field(default_factory=dict)
    label_names: list[str] = field(default_factory=list)  # classification: id → name, in the reported order
    fingerprint: str = ""  # of the rows actually used (data, fields, sizes)
    task: Task | None = None  # the task that tokenised it (knows the label list)


class SplitEval(BaseModel):
    """One split's result with the per-item outcomes that paired statistics need.

    ``value`` is the metric's mean over items; ``outcomes`` holds each item's 0/1 or real value in
    the split's row order. Classification keeps ``labels``/``preds`` (and ``accuracy``, its value)
    so eval.json stays what earlier versions wrote."""

    split: str
    metric: str = "accuracy"
    value: float
    loss: float
    n: int
    rows: list[int]
    outcomes: list[float]
    accuracy: float | None = None
    labels: list[int] | None = None
    preds: list[int] | None = None
    texts: list[str] | None = None  # generated answers (exact_match), for reading and re-scoring


class Task:
    """A task type. Subclasses set the class attributes and implement the four methods."""

    type: ClassVar[str]
    peft_task_type: ClassVar[str]  # peft.TaskType member name
    auto_model: ClassVar[str]  # transformers Auto class name

    def __init__(self, cfg: TaskConfig):
        self.cfg = cfg

    @property
    def metric(self) -> Metric:
        raise NotImplementedError

    def required_columns(self) -> list[str]:
        raise NotImplementedError

    def prepare(self, tokenizer: Any, train_ds: Any) -> None:
        """Learn what the whole training split fixes before any split is tokenised (the label list)."""

    def tokenise(self, tokenizer: Any, ds: Any, rows: list[int], name: str) -> Split:
        raise NotImplementedError

    def collate(self, split: Split, idx: Any, pad_token_id: int) -> dict[str, Any]:
        """A training batch (tensors, including ``labels``) padded to its longest item."""
        raise NotImplementedError

    def load_model(self, model_path: str, data: TaskData, device: Any) -> Any:
        raise NotImplementedError

    def evaluate(self, model: Any, split: Split, batch_size: int, pad_token_id: int, device: Any,
                 label: str) -> SplitEval:  # fmt: skip
        raise NotImplementedError

    def num_labels(self, data_splits: list[Split]) -> int:
        return 0

    def collapsed(self, value: float, mean_train_loss: float | None, split: Split) -> bool:
        """A run that learned nothing (judged relative to its probe); tasks without a chance level: never."""
        return False

    def check_columns(self, ds: Any, name: str) -> None:
        missing = [c for c in self.required_columns() if c not in ds.column_names]
        if missing:
            raise BenchInputError(
                f"{name} split has no column(s) {missing}; it has {ds.column_names} "
                "(set task.text_fields / label_field / prompt_field / response_field / prompt_template)"
            )


def template_fields(template: str) -> list[str]:
    import string

    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


def render_template(template: str, row: dict[str, Any]) -> str:
    return template.format(**{k: "" if v is None else v for k, v in row.items()})


def load_auto_model(auto_class: str, model_path: str, device: Any, **kwargs: Any) -> Any:
    """Load a transformers model in fp32 with the library's chatter silenced; offline help on failure."""
    import torch
    import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the "newly initialised classifier" report is expected here
    hf_logging.disable_progress_bar()
    try:
        model = getattr(transformers, auto_class).from_pretrained(model_path, **kwargs)
    except (OSError, ValueError) as exc:
        raise BenchInputError(
            f"cannot load model '{model_path}' ({str(exc).splitlines()[0][:160]}); offline, set model.name to "
            "a local folder or 'minilm-l6' for the embedded MiniLM-L6"
        ) from None
    return model.to(device=device, dtype=torch.float32)
