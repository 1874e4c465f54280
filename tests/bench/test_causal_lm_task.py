"""The causal-LM task: response-only labels, and each metric equal to a plain per-item computation.

Batched scoring (length-sorted, left-padded generation, right-padded forward passes)
must give what one unpadded item at a time gives; LoRA through the bench's own loop
must really teach the tiny model a new op.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from causal_fixtures import BOS, EOS, PAD, TEMPLATE, apply_op, char_ids, char_tokenizer, op_rows, write_jsonl

from gradience.bench import BenchInputError
from gradience.bench.config import TaskConfig
from gradience.bench.tasks import TaskData, load_task_data
from gradience.bench.tasks.causal_lm_scoring import is_match
from gradience.bench.training import lora_config, seed_everything, set_progress_factory, train_lora

CPU = torch.device("cpu")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(autouse=True)
def silent_progress() -> Iterator[None]:
    @contextlib.contextmanager
    def bar(description: str, total: int) -> Iterator[Any]:
        yield lambda n=1, info="": None

    set_progress_factory(bar)
    yield
    set_progress_factory(None)


def load(model_dir: Path, rows: list[dict[str, Any]], tmp_path: Path, n_eval: int, **task: Any) -> TaskData:
    path = write_jsonl(tmp_path / "data.jsonl", rows)
    task.setdefault("prompt_template", TEMPLATE)
    task.setdefault("response_field", "y")
    cfg = TaskConfig(type="causal_lm", data=str(path), **task)
    return load_task_data(str(model_dir), cfg, len(rows) - n_eval, n_eval, smoke=False, selection=False)


def model_for(model_dir: Path, data: TaskData) -> Any:
    assert data.task is not None
    return data.task.load_model(str(model_dir), data, CPU).eval()


def by_hand_logprob(model: Any, prompt: list[int], cont: list[int]) -> tuple[float, int]:
    """log p(cont | prompt) from one unpadded forward pass and an explicit log-softmax."""
    seq = prompt + cont
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([seq])).logits[0].double(), -1)
    return sum(float(logp[t - 1, seq[t]]) for t in range(len(prompt), len(seq))), len(cont)


def test_response_only_labels_token_by_token(tmp_path: Path) -> None:
    tok_dir = tmp_path / "tok"
    char_tokenizer().save_pretrained(str(tok_dir))
    rows = op_rows(["copy", "inc", "dec"], 30, seed=3, lengths=(2, 7))
    data = load(tok_dir, rows, tmp_path, 10)
    assert data.task is not None and data.pad_token_id == PAD
    split = data.train
    for i, r in enumerate(split.rows):
        prompt = TEMPLATE.format(**rows[r])
        item = split.items[i]
        assert item["prompt"] == prompt and item["reference"] == rows[r]["y"]
        assert item["prompt_ids"] == [BOS, *char_ids(prompt)]
    idx = list(range(8))
    batch = data.task.collate(split, idx, PAD)
    width = batch["input_ids"].shape[1]
    for row, i in enumerate(idx):
        r = split.rows[i]
        prompt = [BOS, *char_ids(TEMPLATE.format(**rows[r]))]
        response = [*char_ids(rows[r]["y"]), EOS]
        n = len(prompt) + len(response)
        assert width == max(len(split.features["input_ids"][j]) for j in idx)
        for t in range(width):
            ids, mask, label = (int(batch[k][row, t]) for k in ("input_ids", "attention_mask", "labels"))
            if t < len(prompt):
                assert (ids, mask, label) == (prompt[t], 1, -100)
            elif t < n:
                assert (ids, mask, label) == (response[t - len(prompt)], 1, response[t - len(prompt)])
            else:
                assert (ids, mask, label) == (PAD, 0, -100)


def test_truncation_cuts_the_prompt_from_the_left_and_keeps_the_answer(tmp_path: Path) -> None:
    tok_dir = tmp_path / "tok"
    char_tokenizer().save_pretrained(str(tok_dir))
    rows = [
        {"prompt": "p" * k + " end", "response": "r" * m} for k, m in [(30, 3), (2, 40), (30, 40), (3, 3)] * 3
    ]
    data = load(tok_dir, rows, tmp_path, 4, prompt_template=None, response_field="response", max_length=16)
    for split in (data.train, data.eval):
        for i, r in enumerate(split.rows):
            full_p, full_r = char_ids(rows[r]["prompt"]), [*char_ids(rows[r]["response"]), EOS]
            ids, labels = split.features["input_ids"][i], split.features["labels"][i]
            n_prompt = len(split.items[i]["prompt_ids"])
            assert ids[:n_prompt] == split.items[i]["prompt_ids"] and ids[0] == BOS  # BOS survives the cut
            kept_p, kept_r = ids[1:n_prompt], ids[n_prompt:]
            assert len(ids) == min(16, 1 + len(full_p) + len(full_r)) and len(kept_r) >= 1
            assert full_p[len(full_p) - len(kept_p) :] == kept_p  # the prompt's end is kept
            assert full_r[: len(kept_r)] == kept_r and labels == [-100] * n_prompt + kept_r
            if len(full_p) + len(full_r) + 1 > 16:  # too long: the prompt keeps at least half the budget
                assert n_prompt >= min(1 + len(full_p), 8)


@pytest.mark.parametrize(("extra", "batch"), [({}, 24), ({"stop": ["7"], "answer_regex": r"(\d+)"}, 5)])
def test_exact_match_equals_unbatched_generation(
    causal_lm_dir: Path, tmp_path: Path, extra: dict[str, Any], batch: int
) -> None:
    rows = op_rows(["copy", "inc", "dec"], 40, seed=5, lengths=(1, 8))  # one batch of 24: up to 9 pads
    data = load(causal_lm_dir, rows, tmp_path, 24, max_new_tokens=7, **extra)
    model, tok = model_for(causal_lm_dir, data), char_tokenizer()
    ev = data.task.evaluate(model, data.eval, batch, PAD, CPU, "eval")
    stop = extra.get("stop", [])
    expected_texts, expected = [], []
    for r, item in zip(data.eval.rows, data.eval.items, strict=True):
        ids = torch.tensor([item["prompt_ids"]])
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=7,
                                 pad_token_id=PAD, eos_token_id=EOS)[0, ids.shape[1] :]  # fmt: skip
        text = tok.decode(out.tolist(), skip_special_tokens=True)
        for s in stop:
            text = text.split(s)[0]
        if "answer_regex" in extra:
            found = re.search(r"\d+", text)
            ok = found is not None and found.group(0) == rows[r]["y"]
        else:
            ok = text.strip().lower() == rows[r]["y"]
        expected_texts.append(text)
        expected.append(float(ok))
    assert ev.texts == expected_texts and ev.outcomes == expected and ev.rows == data.eval.rows
    assert ev.value == pytest.approx(sum(expected) / len(expected)) and ev.n == 24
    assert 0 < ev.value < 1  # copy and inc right, dec (never trained) wrong: both kinds of item are checked
    nll = [-s / n for s, n in (by_hand_logprob(model, it["prompt_ids"], [*char_ids(rows[r]["y"]), EOS])
                               for r, it in zip(data.eval.rows, data.eval.items, strict=True))]  # fmt: skip
    assert ev.loss == pytest.approx(sum(nll) / len(nll), rel=1e-5)


def test_nll_equals_a_forward_pass_per_item(causal_lm_dir: Path, tmp_path: Path) -> None:
    rows = [{**r, "y": r["y"][: 1 + i % 5]} for i, r in enumerate(op_rows(["copy", "dec"], 30, seed=6))]
    data = load(causal_lm_dir, rows, tmp_path, 20, metric="nll")
    model = model_for(causal_lm_dir, data)
    ev = data.task.evaluate(model, data.eval, 3, PAD, CPU, "eval")
    expected = []
    for r, item in zip(data.eval.rows, data.eval.items, strict=True):
        s, n = by_hand_logprob(model, item["prompt_ids"], [*char_ids(rows[r]["y"]), EOS])
        expected.append(-s / n)
    assert ev.outcomes == pytest.approx(expected, rel=1e-5) and ev.texts is None
    assert ev.value == pytest.approx(sum(expected) / 20, rel=1e-5) and ev.loss == pytest.approx(ev.value)
    assert data.task.metric.higher_is_better is False


@pytest.mark.parametrize(("scoring", "by_index"), [("sum", True), ("mean", False)])
def test_choice_equals_a_forward_pass_per_option(
    causal_lm_dir: Path, tmp_path: Path, scoring: str, by_index: bool
) -> None:
    rows = []
    for i, r in enumerate(op_rows(["copy", "inc"], 30, seed=7)):
        wrong = [apply_op("dec", r["x"]), r["y"][:3], r["y"] + "5"]  # a prefix and an extension of the answer
        options = [*wrong[: 1 + i % 3], r["y"]][::-1] if i % 2 else [r["y"], *wrong]
        label: Any = options.index(r["y"]) if by_index else r["y"]  # an index or the option's text
        rows.append({"op": r["op"], "x": r["x"], "choices": options, "answer": label})
    data = load(
        causal_lm_dir, rows, tmp_path, 20, metric="choice", label_field="answer", choice_scoring=scoring
    )
    assert data.task is not None and ("mean" in data.task.metric.title) == (scoring == "mean")
    model = model_for(causal_lm_dir, data)
    scores = data.task.option_scores(model, data.eval, 4, PAD, CPU)
    ev = data.task.evaluate(model, data.eval, 4, PAD, CPU, "eval")
    expected = []
    for r, item, got in zip(data.eval.rows, data.eval.items, scores, strict=True):
        options = rows[r]["choices"]
        by_hand = []
        for o in options:
            s, n = by_hand_logprob(model, item["prompt_ids"], [*char_ids(o), EOS])
            by_hand.append(s / n if scoring == "mean" else s)
        assert got == pytest.approx(by_hand, rel=1e-5, abs=1e-6)
        best = max(range(len(options)), key=lambda k: by_hand[k])
        expected.append(float(options[best] == apply_op(rows[r]["op"], rows[r]["x"])))
    assert ev.outcomes == expected and ev.metric == "choice"
    assert ev.value >= 0.9  # the model knows copy and inc; EOS keeps the prefix option from winning


def test_lora_teaches_a_related_op(causal_lm_dir: Path, tmp_path: Path) -> None:
    from peft import get_peft_model

    data = load(causal_lm_dir, op_rows(["dec"], 700, seed=8), tmp_path, 100, max_new_tokens=6)
    assert data.task is not None
    seed_everything(1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        model = get_peft_model(
            model_for(causal_lm_dir, data), lora_config(8, 16, TARGETS, 0.0, False, task_type="CAUSAL_LM")
        )
    before = data.task.evaluate(model, data.eval, 50, PAD, CPU, "before")
    train_lora(model, data.train, task=data.task, steps=60, batch_size=32, lr=5e-3, weight_decay=0.0, seed=1,
               pad_token_id=PAD, device=CPU)  # fmt: skip
    after = data.task.evaluate(model, data.eval, 50, PAD, CPU, "after")
    assert before.value <= 0.05 < 0.9 <= after.value  # measured: 0.00 → 1.00
    assert after.loss < before.loss / 5


CHAT = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}<|bot|>{% endif %}"


def test_chat_template_wraps_the_prompt(tmp_path: Path) -> None:
    tok = char_tokenizer()
    tok.chat_template = CHAT
    tok.save_pretrained(str(tmp_path / "chat"))
    rows = op_rows(["copy"], 12, seed=9)
    data = load(tmp_path / "chat", rows, tmp_path, 4, chat_template=True)
    for split in (data.train, data.eval):
        for r, item, ids in zip(split.rows, split.items, split.features["input_ids"], strict=True):
            text = f"<|user|>{TEMPLATE.format(**rows[r])}\n<|bot|>"
            assert item["prompt"] == text and item["prompt_ids"] == char_ids(
                text
            )  # the template's own BOS: none
            assert ids == char_ids(text) + char_ids(rows[r]["y"]) + [EOS]


def _bad(tmp_path: Path, rows: list[dict[str, Any]], **task: Any) -> str:
    tok_dir = tmp_path / "tok"
    char_tokenizer().save_pretrained(str(tok_dir))
    with pytest.raises(BenchInputError) as err:
        load(tok_dir, rows * 4, tmp_path, 2, **task)
    assert "\n" not in str(err.value)
    return str(err.value)


CHOICE = {"metric": "choice", "label_field": "answer", "prompt_template": None}


@pytest.mark.parametrize(
    ("row", "task", "message"),
    [
        ({"prompt": "q", "choices": ["a", "b"], "answer": "c"}, CHOICE, "neither an option index nor one of"),
        ({"prompt": "q", "choices": ["a", "b"], "answer": 2}, CHOICE, "not an index of its 2 options"),
        ({"prompt": "q", "choices": ["a"], "answer": 0}, CHOICE, "at least 2 non-empty options"),
        ({"prompt": "q", "choices": ["a", " "], "answer": 0}, CHOICE, "at least 2 non-empty options"),
        ({"prompt": "q", "choices": "a|b", "answer": 0}, CHOICE, "not a list of options"),
        ({"op": "copy", "x": "12", "y": " "}, {}, "empty response in column 'y'"),
        ({"op": "copy", "x": "12", "y": "1"}, {"chat_template": True}, "has no chat template"),
        ({"op": "copy", "x": "12"}, {}, "no column(s) ['y']"),
    ],
)
def test_bad_inputs_are_one_line_errors(
    tmp_path: Path, row: dict[str, Any], task: dict[str, Any], message: str
) -> None:
    assert message in _bad(tmp_path, [row], **task)


def test_answer_matching() -> None:
    assert is_match("  The  ANSWER\n", "the answer", None) and not is_match("the answer.", "the answer", None)
    assert is_match("so it is 42.", "#### 42", r"(\d+)") and not is_match("no digits", "42", r"(\d+)")
    assert is_match("x = 7", "7 apples?", r"\d") and is_match("seven", "Seven!", r"(\w+)")
    assert not is_match("it is 41", "it is 42", r"(\d+)")
    assert is_match("it is 42", "forty-two", r"\d+") is False and is_match("it is 42", "42", r"\d+")
