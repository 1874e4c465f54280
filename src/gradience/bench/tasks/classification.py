"""Sequence classification: one or two text fields (or a template), integer or string labels.

Labels are class ids 0..K−1. Integer labels are used as they are (GLUE's encoding);
string labels are mapped through ``task.labels`` when given (the order the head was
trained with), otherwise through their sorted set on the training split — a fixed
order, written into the report. A label outside the list is bad data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradience.bench import BenchInputError
from gradience.bench.tasks.base import (
    ACCURACY,
    Metric,
    Split,
    SplitEval,
    Task,
    TaskData,
    load_auto_model,
    render_template,
    template_fields,
)

COLLAPSE_MARGIN = 0.01  # accuracy within 1 point of always answering the majority class


class ClassificationTask(Task):
    type = "classification"
    peft_task_type = "SEQ_CLS"  # also saves the classifier head (modules_to_save)
    auto_model = "AutoModelForSequenceClassification"

    def __init__(self, cfg: Any):
        super().__init__(cfg)
        self.label_names: list[str] = list(cfg.labels or [])
        self._index: dict[str, int] | None = (
            {n: i for i, n in enumerate(self.label_names)} if cfg.labels else None
        )

    @property
    def metric(self) -> Metric:
        return ACCURACY

    def required_columns(self) -> list[str]:
        fields = (
            template_fields(self.cfg.prompt_template) if self.cfg.prompt_template else self.cfg.text_fields
        )
        return [*fields, self.cfg.label_field]

    def prepare(self, tokenizer: Any, train_ds: Any) -> None:
        if self._index is not None:
            return
        values = train_ds[self.cfg.label_field]
        if all(_is_int(v) for v in values):
            return  # integer class ids: used as given
        bad = next((v for v in values if v is None or isinstance(v, (bool, float, np.floating))), "no")
        if bad != "no":  # a fractional number is a regression target, not a class
            raise BenchInputError(
                f"train split: label column '{self.cfg.label_field}' holds {bad!r}; labels must be class ids "
                "0..K-1 or class names (strings)"
            )
        self.label_names = sorted({str(v) for v in values})
        self._index = {n: i for i, n in enumerate(self.label_names)}

    def _label(self, value: Any, split: str) -> int:
        field = self.cfg.label_field
        if self._index is not None:
            key = str(int(value)) if _is_int(value) and str(value) not in self._index else str(value)
            if key not in self._index:
                raise BenchInputError(
                    f"{split} split: label {value!r} in column '{field}' is not in the label list {self.label_names}"
                    + (" (task.labels)" if self.cfg.labels else " (the training split's labels)")
                )
            return self._index[key]
        if not _is_int(value):
            raise BenchInputError(
                f"{split} split: label column '{field}' holds {value!r}; labels must be class ids 0..K-1 "
                "or class names (strings)"
            )
        return int(float(value))

    def tokenise(self, tokenizer: Any, ds: Any, rows: list[int], name: str) -> Split:
        from gradience.bench.tasks import MAX_LENGTH

        sub = ds.select(rows)
        if self.cfg.prompt_template:
            texts = [[render_template(self.cfg.prompt_template, row) for row in sub]]
        else:
            texts = [list(map(str, sub[c])) for c in self.cfg.text_fields]
        enc = tokenizer(*texts, truncation=True, max_length=min(self.cfg.max_length, MAX_LENGTH))
        keep = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        labels = [self._label(x, name) for x in sub[self.cfg.label_field]]
        if any(lab < 0 for lab in labels):
            raise BenchInputError(
                f"{name} split has unlabelled rows (label < 0); the bench needs labelled items"
            )
        return Split(name, list(rows), {k: enc[k] for k in keep}, labels)

    def num_labels(self, splits: list[Split]) -> int:
        if self.label_names:
            return len(self.label_names)
        return max(max(s.labels) for s in splits) + 1

    def collate(self, split: Split, idx: Any, pad_token_id: int) -> dict[str, Any]:
        import torch

        width = max(len(split.features["input_ids"][i]) for i in idx)
        out: dict[str, Any] = {}
        for key, seqs in split.features.items():
            pad = pad_token_id if key == "input_ids" else 0
            out[key] = torch.tensor([seqs[i] + [pad] * (width - len(seqs[i])) for i in idx], dtype=torch.long)
        out["labels"] = torch.tensor([split.labels[i] for i in idx], dtype=torch.long)
        return out

    def load_model(self, model_path: str, data: TaskData, device: Any) -> Any:
        # a checkpoint with another head size (a 2-class model, a 3-class task) gets a fresh head
        return load_auto_model(
            self.auto_model, model_path, device, num_labels=data.num_labels, ignore_mismatched_sizes=True
        )

    def evaluate(self, model: Any, split: Split, batch_size: int, pad_token_id: int, device: Any,
                 label: str) -> SplitEval:  # fmt: skip
        import torch

        from gradience.bench.tasks import eval_batches
        from gradience.bench.training import progress

        model.eval()
        preds = [0] * len(split)
        loss_sum = 0.0
        with torch.inference_mode(), progress(label, len(split)) as advance:
            for idx in eval_batches(split, batch_size):
                batch = {k: v.to(device) for k, v in self.collate(split, idx, pad_token_id).items()}
                out = model(**batch)
                loss_sum += float(out.loss) * len(idx)
                for i, p in zip(idx, out.logits.argmax(-1).tolist(), strict=True):
                    preds[i] = int(p)
                advance(len(idx))
        outcomes = [float(p == y) for p, y in zip(preds, split.labels, strict=True)]
        acc = sum(outcomes) / len(split)
        return SplitEval(
            split=split.name, metric="accuracy", value=acc, accuracy=acc, loss=loss_sum / len(split), n=len(split),
            rows=split.rows, outcomes=outcomes, labels=split.labels, preds=preds,
        )  # fmt: skip

    def collapsed(self, value: float, mean_train_loss: float | None, split: Split) -> bool:
        """Eval accuracy at the majority-class rate (it answers one class), or training loss ending
        at chance level, ln K (a near-uniform prediction)."""
        counts = np.bincount(np.asarray(split.labels)) if split.labels else np.zeros(1)
        majority = float(counts.max() / max(counts.sum(), 1))
        chance_loss = float(np.log(max(int((counts > 0).sum()), 2)))
        at_chance = mean_train_loss is not None and mean_train_loss >= 0.97 * chance_loss
        return value <= majority + COLLAPSE_MARGIN or at_chance


def _is_int(v: Any) -> bool:
    if isinstance(v, bool) or v is None:
        return False
    if isinstance(v, (int, np.integer)):
        return True
    if isinstance(v, float):
        return v.is_integer()
    if isinstance(v, str):
        try:
            return float(v).is_integer()
        except ValueError:
            return False
    return False
