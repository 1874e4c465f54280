"""Weight swapping against PEFT itself: the same merged weights, the base restored bit for bit,
the factors compress writes, and batch-by-batch scoring equal to one task.evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from gradience.audit import open_adapter
from gradience.bench.certify import evaluate_truncations
from gradience.bench.certify.evaluate import evaluate_items
from gradience.bench.certify.items import load_eval_items
from gradience.bench.certify.ladder import candidate, factors, scan
from gradience.bench.certify.swap import WeightSwap, load_carried
from gradience.bench.config import TaskConfig
from gradience.compress import CompressionPlan, compress_adapter

CPU = torch.device("cpu")
PLAN = CompressionPlan(budget_ratio=0.25)


@pytest.fixture(scope="module")
def setup(
    tiny_dir: Path, trained_adapter: Path, eval_tsv: Path, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    items = load_eval_items(str(tiny_dir), TaskConfig(data=str(eval_tsv)), None)
    adapter = open_adapter(trained_adapter)
    layers = scan(adapter)
    cand = candidate(layers, "budget_25", "budget", 0.25, PLAN)
    folder = tmp_path_factory.mktemp("compressed") / "budget_25"
    compress_adapter(trained_adapter, folder, PLAN)
    return items, adapter, layers, cand, folder


def _base(items: Any, tiny_dir: Path) -> Any:
    return items.task.load_model(str(tiny_dir), items.data, CPU)


def _peft_merged(items: Any, tiny_dir: Path, adapter_dir: Path) -> dict[str, torch.Tensor]:
    from peft import PeftModel

    merged = PeftModel.from_pretrained(_base(items, tiny_dir), str(adapter_dir)).merge_and_unload()
    return {k: v.detach().clone() for k, v in merged.state_dict().items()}


def test_factors_are_the_ones_compress_writes(setup: Any) -> None:
    _, adapter, layers, cand, folder = setup
    written = load_file(str(folder / "adapter_model.safetensors"))
    for la in adapter.layers:
        a, b = factors(adapter, layers, cand.ranks)[la.name]
        assert torch.equal(a, written[la.a_key]) and torch.equal(b, written[la.b_key]), la.name


@pytest.mark.parametrize("which", ["original", "budget_25"])
def test_merged_weights_equal_peft_merge_and_restore_bit_for_bit(
    setup: Any, tiny_dir: Path, trained_adapter: Path, which: str
) -> None:
    items, adapter, layers, cand, folder = setup
    model = load_carried(_base(items, tiny_dir), trained_adapter)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    swap = WeightSwap(model, adapter)
    ranks = None if which == "original" else cand.ranks
    reference = _peft_merged(items, tiny_dir, trained_adapter if which == "original" else folder)
    with swap.merged(factors(adapter, layers, ranks)) as merged:
        now = merged.state_dict()
        assert now.keys() == reference.keys()
        for key, value in reference.items():
            assert torch.equal(now[key], value), key
        assert not all(torch.equal(now[k], before[k]) for k in before)  # something really was swapped in
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_restored_even_when_the_evaluation_fails(setup: Any, tiny_dir: Path, trained_adapter: Path) -> None:
    items, adapter, layers, cand, _ = setup
    model = load_carried(_base(items, tiny_dir), trained_adapter)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    swap = WeightSwap(model, adapter)
    with pytest.raises(KeyboardInterrupt), swap.merged(factors(adapter, layers, cand.ranks)):
        raise KeyboardInterrupt
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_batchwise_scoring_equals_one_task_evaluate(
    setup: Any, tiny_dir: Path, trained_adapter: Path
) -> None:
    from peft import PeftModel

    items = setup[0]
    peft_model = PeftModel.from_pretrained(_base(items, tiny_dir), str(trained_adapter))
    whole = items.task.evaluate(peft_model, items.split, 32, items.data.pad_token_id, CPU, "whole")
    batched, stopped = evaluate_items(items.task, peft_model, items.split, batch_size=32,
                                      pad_token_id=items.data.pad_token_id, device=CPU, label="batched")  # fmt: skip
    assert not stopped
    assert batched.preds == whole.preds and batched.outcomes == whole.outcomes and batched.rows == whole.rows
    assert batched.value == whole.value and batched.loss == pytest.approx(whole.loss, rel=1e-6)
    part, stopped = evaluate_items(items.task, peft_model, items.split, batch_size=32,
                                   pad_token_id=items.data.pad_token_id, device=CPU, label="part",
                                   keep_going=lambda seen: len(seen) < 64)  # fmt: skip
    assert stopped and part.n == 64
    assert all(part.preds[i] == whole.preds[whole.rows.index(r)] for i, r in enumerate(part.rows))


def test_evaluate_truncations_for_the_bench(setup: Any, tiny_dir: Path, trained_adapter: Path) -> None:
    """What bench's truncate_* variants would call: per plan, the SplitEval a PEFT load of the
    compressed folder gives (predictions equal; here on the task's own batched evaluation)."""
    from peft import PeftModel

    items, _, _, _, folder = setup
    got = evaluate_truncations(_base(items, tiny_dir), trained_adapter, {"budget_25": PLAN}, task=items.task,
                               split=items.split, batch_size=32, pad_token_id=items.data.pad_token_id, device=CPU)  # fmt: skip
    ref_model = PeftModel.from_pretrained(_base(items, tiny_dir), str(folder))
    ref = items.task.evaluate(ref_model, items.split, 32, items.data.pad_token_id, CPU, "ref")
    assert got["budget_25"].preds == ref.preds and got["budget_25"].value == ref.value
