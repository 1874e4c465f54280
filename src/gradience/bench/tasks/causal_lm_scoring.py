"""Scoring a causal LM: batched greedy generation, continuation log-likelihoods, answer matching.

Kept apart from the task so each piece can be checked against a plain per-item
re-implementation: batching (length-sorted, padded) must never change a result, only
its speed. Results come back in the order the inputs were given.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

IGNORE = -100  # labels that carry no loss (prompt and padding)


def fit(prompt: list[int], n_response: int, max_length: int, bos_id: int | None) -> tuple[list[int], int]:
    """Cut (prompt, response) to ``max_length`` tokens, keeping at least one response token.

    The prompt keeps at least ``min(len(prompt), max_length // 2)`` tokens and the response the rest
    (cut from the right); the prompt is cut from the left, since its end is what the answer follows,
    and keeps a leading BOS. Returns the prompt kept and how many response tokens stay."""
    if len(prompt) + n_response <= max_length:
        return prompt, n_response
    n_keep = min(n_response, max_length - min(len(prompt), max_length // 2))
    room = max_length - n_keep
    if len(prompt) > room:
        head = prompt[:1] if bos_id is not None and prompt[:1] == [bos_id] else []
        prompt = head + prompt[len(prompt) - (room - len(head)) :]
    return prompt, n_keep


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices in length order, cut into batches: a fixed order with little padding."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def normalise(text: str) -> str:
    """Casefolded, whitespace collapsed: formatting is not what exact match judges."""
    return " ".join(text.casefold().split())


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=len(text))
    return text[:cut]


def _answer(text: str, pattern: re.Pattern[str]) -> str | None:
    m = pattern.search(text)
    if m is None:
        return None
    return m.group(1) if pattern.groups else m.group(0)


def is_match(prediction: str, reference: str, answer_regex: str | None) -> bool:
    """Equal after normalising; with a regex, its first group (or whole match) of each. A prediction
    without a match is wrong; a reference without one is compared whole."""
    if answer_regex is None:
        return normalise(prediction) == normalise(reference)
    pattern = re.compile(answer_regex)
    pred = _answer(prediction, pattern)
    if pred is None:
        return False
    ref = _answer(reference, pattern)
    return normalise(pred) == normalise(reference if ref is None else ref)


def continuation_logprobs(
    model: Any, seqs: Sequence[list[int]], starts: Sequence[int], batch_size: int, pad_id: int, device: Any,
    advance: Callable[[int], Any] | None = None,
) -> list[tuple[float, int]]:  # fmt: skip
    """For each sequence, the summed log-probability of its tokens from ``start`` on given those
    before, and how many tokens that is. Right padding: a causal model's earlier positions never
    see it."""
    import torch
    import torch.nn.functional as F

    out: list[tuple[float, int]] = [(0.0, 0)] * len(seqs)
    for idx in sorted_batches([len(s) for s in seqs], batch_size):
        width = max(len(seqs[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        target = torch.full((len(idx), width), IGNORE, dtype=torch.long)
        for row, i in enumerate(idx):
            s = seqs[i]
            ids[row, : len(s)] = torch.tensor(s)
            mask[row, : len(s)] = 1
            target[row, starts[i] - 1 : len(s) - 1] = torch.tensor(s[starts[i] :])
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        nll = F.cross_entropy(
            logits.transpose(1, 2), target.to(device), ignore_index=IGNORE, reduction="none"
        )
        sums = (-nll).sum(1).tolist()
        for row, i in enumerate(idx):
            out[i] = (sums[row], len(seqs[i]) - starts[i])
        if advance is not None:
            advance(len(idx))
    return out


def generate_texts(
    model: Any, tokenizer: Any, prompts: Sequence[list[int]], *, batch_size: int, pad_id: int,
    eos_ids: list[int], max_new_tokens: int, stop: Sequence[str], device: Any,
    advance: Callable[[int], Any] | None = None,
) -> list[str]:  # fmt: skip
    """Greedy answers, batched with left padding (so every prompt ends where generation starts);
    decoded from the new tokens up to the first EOS, then cut at the first stop string."""
    import torch
    from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

    class _StopText(StoppingCriteria):
        """Ends a row once its new text holds a stop string (what follows is cut anyway)."""

        def __init__(self, width: int):
            self.width = width

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            texts = tokenizer.batch_decode(input_ids[:, self.width :], skip_special_tokens=True)
            return torch.tensor([any(s in t for s in stop if s) for t in texts], device=input_ids.device)

    gen = GenerationConfig(
        do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=pad_id, eos_token_id=eos_ids
    )
    texts = [""] * len(prompts)
    for idx in sorted_batches([len(p) for p in prompts], batch_size):
        width = max(len(prompts[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            ids[row, width - len(prompts[i]) :] = torch.tensor(prompts[i])
            mask[row, width - len(prompts[i]) :] = 1
        criteria = StoppingCriteriaList([_StopText(width)] if any(stop) else [])
        new = model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=gen,
            stopping_criteria=criteria,
        )[:, width:].tolist()  # fmt: skip
        for row, i in enumerate(idx):
            tokens = new[row]
            end = next((k for k, t in enumerate(tokens) if t in eos_ids), len(tokens))
            texts[i] = cut_at_stop(tokenizer.decode(tokens[:end], skip_special_tokens=True), stop)
        if advance is not None:
            advance(len(idx))
    return texts
