"""Causal language modelling: prompt → response, loss on the response tokens only.

An item is a prompt (a field, or ``task.prompt_template`` rendered on the row, optionally
wrapped in the tokenizer's chat template) and a response: its tokens (no special tokens)
then EOS. Training sees prompt + response with labels −100 on every prompt token, so
only the answer is learned. Items longer than ``task.max_length`` are cut by
``causal_lm_scoring.fit``: the prompt from the left, never the whole response.

Metrics, per item: ``exact_match`` (greedy answer vs reference, 0/1), ``choice`` (the
option the model finds most likely vs the correct one, 0/1; each option is scored as an
answer is trained, its tokens then EOS, so an option that is a prefix of another is not
favoured) and ``nll`` (mean response-token NLL, lower is better). Every split's ``loss``
is the mean per-item response NLL, whatever the metric.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradience.bench import BenchInputError
from gradience.bench.tasks.base import (
    Metric,
    Split,
    SplitEval,
    Task,
    TaskData,
    load_auto_model,
    render_template,
    template_fields,
)
from gradience.bench.tasks.causal_lm_scoring import (
    IGNORE,
    continuation_logprobs,
    fit,
    generate_texts,
    is_match,
)

METRICS = {
    "exact_match": Metric("exact_match", "exact match"),
    "nll": Metric("nll", "NLL", higher_is_better=False, binary=False, unit="nats"),
}
CHOICE_TITLES = {
    "mean": "multiple-choice accuracy (options by mean token log-likelihood)",
    "sum": "multiple-choice accuracy (options by summed log-likelihood)",
}


class CausalLMTask(Task):
    type = "causal_lm"
    peft_task_type = "CAUSAL_LM"
    auto_model = "AutoModelForCausalLM"

    def __init__(self, cfg: Any):
        super().__init__(cfg)
        self.tokenizer: Any = None  # set by prepare; evaluation decodes with it

    @property
    def metric(self) -> Metric:
        if self.cfg.metric_name == "choice":
            return Metric("choice", CHOICE_TITLES[self.cfg.choice_scoring])
        return METRICS[self.cfg.metric_name]

    def required_columns(self) -> list[str]:
        cols = (
            template_fields(self.cfg.prompt_template) if self.cfg.prompt_template else [self.cfg.prompt_field]
        )
        if self.cfg.metric_name == "choice":
            return [*cols, self.cfg.choices_field, self.cfg.label_field]
        return [*cols, self.cfg.response_field]

    def prepare(self, tokenizer: Any, train_ds: Any) -> None:
        if tokenizer.eos_token_id is None:
            raise BenchInputError("the model's tokenizer has no EOS token; causal_lm responses end with one")
        if self.cfg.chat_template and not getattr(tokenizer, "chat_template", None):
            raise BenchInputError("task.chat_template is true but the model's tokenizer has no chat template")
        self.tokenizer = tokenizer

    def prompt_text(self, row: dict[str, Any]) -> str:
        """The prompt as the model reads it: the field or template, then the chat template if asked."""
        text = (
            render_template(self.cfg.prompt_template, row)
            if self.cfg.prompt_template
            else row[self.cfg.prompt_field]
        )
        text = "" if text is None else str(text)
        if self.cfg.chat_template:
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )
        return text

    def _ids(self, text: str, special: bool) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def _choice(self, row: dict[str, Any], split: str, r: int) -> tuple[list[str], int]:
        options, label = row[self.cfg.choices_field], row[self.cfg.label_field]
        where = f"{split} split, row {r}"
        if not isinstance(options, (list, tuple)):
            raise BenchInputError(
                f"{where}: column '{self.cfg.choices_field}' holds {options!r}, not a list of options"
            )
        options = ["" if o is None else str(o) for o in options]
        if len(options) < 2 or any(not o.strip() for o in options):
            raise BenchInputError(f"{where}: choice items need at least 2 non-empty options, got {options}")
        if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
            if not 0 <= int(label) < len(options):
                raise BenchInputError(
                    f"{where}: label {label} is not an index of its {len(options)} options (an integer label is "
                    "the option's index; write the option's text as a string instead)"
                )
            return options, int(label)
        if isinstance(label, str) and label in options:
            return options, options.index(label)
        raise BenchInputError(
            f"{where}: label {label!r} in column '{self.cfg.label_field}' is neither an option index nor one of "
            f"the options {options}"
        )

    def tokenise(self, tokenizer: Any, ds: Any, rows: list[int], name: str) -> Split:
        """``features``: input_ids (prompt + response + EOS, cut to max_length) and labels. ``items``:
        prompt (text), prompt_ids (what generation and scoring condition on), reference (response
        text; choice: the correct option), and for choice options, option_ids (each + EOS) and answer."""
        if self.tokenizer is None:  # tokenise without prepare (a caller of its own)
            self.tokenizer = tokenizer
        bos, eos, max_len = tokenizer.bos_token_id, tokenizer.eos_token_id, self.cfg.max_length
        choice = self.cfg.metric_name == "choice"
        features: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
        items: list[dict[str, Any]] = []
        for r, row in zip(rows, ds.select(rows), strict=True):
            prompt = self.prompt_text(row)
            prompt_ids = self._ids(
                prompt, special=not self.cfg.chat_template
            )  # templates write their own BOS
            if not prompt_ids:
                raise BenchInputError(
                    f"{name} split, row {r}: the prompt is empty (and the tokenizer adds no BOS)"
                )
            item: dict[str, Any] = {"prompt": prompt}
            if choice:
                options, answer = self._choice(row, name, r)
                option_ids = [self._ids(o, special=False) + [eos] for o in options]
                prompt_ids, n = fit(prompt_ids, max(map(len, option_ids)), max_len, bos)
                item.update(options=options, option_ids=[o[:n] for o in option_ids], answer=answer)
                reference, response = options[answer], item["option_ids"][answer]
            else:
                value = row[self.cfg.response_field]
                reference = "" if value is None else str(value)
                tokens = self._ids(reference, special=False)
                if not reference.strip() or not tokens:
                    raise BenchInputError(
                        f"{name} split, row {r}: empty response in column '{self.cfg.response_field}'"
                    )
                prompt_ids, n = fit(prompt_ids, len(tokens) + 1, max_len, bos)
                response = (tokens + [eos])[:n]
            item.update(prompt_ids=prompt_ids, reference=reference)
            items.append(item)
            features["input_ids"].append(prompt_ids + response)
            features["labels"].append([IGNORE] * len(prompt_ids) + response)
        return Split(name, list(rows), features, items=items)

    def collate(self, split: Split, idx: Any, pad_token_id: int) -> dict[str, Any]:
        """Right padding: input_ids with the pad id, labels with −100, attention_mask 0 there."""
        import torch

        seqs = [split.features["input_ids"][i] for i in idx]
        labels = [split.features["labels"][i] for i in idx]
        width = max(map(len, seqs))
        return {
            "input_ids": torch.tensor(
                [s + [pad_token_id] * (width - len(s)) for s in seqs], dtype=torch.long
            ),
            "attention_mask": torch.tensor(
                [[1] * len(s) + [0] * (width - len(s)) for s in seqs], dtype=torch.long
            ),
            "labels": torch.tensor([la + [IGNORE] * (width - len(la)) for la in labels], dtype=torch.long),
        }

    def load_model(self, model_path: str, data: TaskData, device: Any) -> Any:
        return load_auto_model(self.auto_model, model_path, device)

    def response_nll(self, model: Any, split: Split, batch_size: int, pad_token_id: int, device: Any,
                     advance: Any = None) -> list[float]:  # fmt: skip
        """Each item's mean NLL per response token (EOS included), given its prompt."""
        starts = [len(it["prompt_ids"]) for it in split.items]
        scores = continuation_logprobs(model, split.features["input_ids"], starts, batch_size, pad_token_id,
                                       device, advance)  # fmt: skip
        return [-s / n for s, n in scores]

    def option_scores(self, model: Any, split: Split, batch_size: int, pad_token_id: int, device: Any,
                      advance: Any = None) -> list[list[float]]:  # fmt: skip
        """Each item's options, scored by summed or mean (``task.choice_scoring``) log-likelihood."""
        pairs = [(i, k) for i, it in enumerate(split.items) for k in range(len(it["option_ids"]))]
        seqs = [split.items[i]["prompt_ids"] + split.items[i]["option_ids"][k] for i, k in pairs]
        starts = [len(split.items[i]["prompt_ids"]) for i, _ in pairs]
        scored = continuation_logprobs(model, seqs, starts, batch_size, pad_token_id, device, advance)
        out: list[list[float]] = [[] for _ in split.items]
        for (i, _), (s, n) in zip(pairs, scored, strict=True):
            out[i].append(s / n if self.cfg.choice_scoring == "mean" else s)
        return out

    def generate(self, model: Any, split: Split, batch_size: int, pad_token_id: int, device: Any,
                 advance: Any = None) -> list[str]:  # fmt: skip
        """Greedy answers; generation ends at the tokenizer's EOS or any of the model's own."""
        extra = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        extra = [] if extra is None else [extra] if isinstance(extra, int) else list(extra)
        eos_ids = list(dict.fromkeys([self.tokenizer.eos_token_id, *extra]))
        return generate_texts(
            model, self.tokenizer, [it["prompt_ids"] for it in split.items], batch_size=batch_size,
            pad_id=pad_token_id, eos_ids=eos_ids, max_new_tokens=self.cfg.max_new_tokens, stop=self.cfg.stop,
            device=device, advance=advance,
        )  # fmt: skip

    def evaluate(self, model: Any, split: Split, batch_size: int, pad_token_id: int, device: Any,
                 label: str) -> SplitEval:  # fmt: skip
        import torch

        from gradience.bench.training import progress

        name = self.cfg.metric_name
        model.eval()
        texts = None
        second = {"nll": 0, "exact_match": len(split)}.get(name)
        if second is None:  # choice: every (item, option) sequence
            second = sum(len(it["option_ids"]) for it in split.items)
        with torch.inference_mode(), progress(label, len(split) + second) as advance:  # sequences scored
            nll = self.response_nll(model, split, batch_size, pad_token_id, device, advance)
            if name == "exact_match":
                texts = self.generate(model, split, batch_size, pad_token_id, device, advance)
                outcomes = [float(is_match(t, it["reference"], self.cfg.answer_regex))
                            for t, it in zip(texts, split.items, strict=True)]  # fmt: skip
            elif name == "choice":
                scores = self.option_scores(model, split, batch_size, pad_token_id, device, advance)
                outcomes = [
                    float(int(np.argmax(s)) == it["answer"])
                    for s, it in zip(scores, split.items, strict=True)
                ]
            else:
                outcomes = nll
        return SplitEval(
            split=split.name, metric=name, value=float(np.mean(outcomes)), loss=float(np.mean(nll)), n=len(split),
            rows=split.rows, outcomes=outcomes, texts=texts,
        )  # fmt: skip
