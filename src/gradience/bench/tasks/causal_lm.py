"""Causal language modelling: prompt → response, loss on the response tokens only.

(Being written: tokenisation with response-only labels, left-padded batched greedy
generation for exact_match, option log-likelihoods for choice, per-item NLL.)
"""

from __future__ import annotations

from typing import Any

from gradience.bench.tasks.base import Metric, Task, template_fields

METRICS = {
    "exact_match": Metric("exact_match", "exact match"),
    "choice": Metric("choice", "multiple-choice accuracy"),
    "nll": Metric("nll", "NLL", higher_is_better=False, binary=False, unit="nats"),
}


class CausalLMTask(Task):
    type = "causal_lm"
    peft_task_type = "CAUSAL_LM"
    auto_model = "AutoModelForCausalLM"

    @property
    def metric(self) -> Metric:
        return METRICS[self.cfg.metric_name]

    def required_columns(self) -> list[str]:
        cols = (
            template_fields(self.cfg.prompt_template) if self.cfg.prompt_template else [self.cfg.prompt_field]
        )
        if self.cfg.metric_name == "choice":
            return [*cols, self.cfg.choices_field, self.cfg.label_field]
        return [*cols, self.cfg.response_field]

    def tokenise(self, tokenizer: Any, ds: Any, rows: list[int], name: str) -> Any:
        raise NotImplementedError("causal_lm tokenisation lands with the causal-LM task")
