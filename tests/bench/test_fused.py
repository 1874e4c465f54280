"""Fused training against the same jobs trained alone by ``train_lora`` (the reference).

Tiny random BERT with every dropout at 0, so the only difference between fused and alone is
float rounding: adapters (LoRA factors and classifier heads) must match to 1e-4 relative after
30 steps, and per-item predictions must be identical.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gradience.bench.fused import FusedJob, FusedUnsupported, build, loss_sum, plan_chunks, train_fused
from gradience.bench.training import lora_config, seed_everything, set_progress_factory, train_lora

TARGETS = ["query", "key", "value", "attention.output.dense"]
JOBS = [  # seed, r, alpha, rank_pattern: different seeds, ranks and a per-layer pattern
    (1, 8, 16.0, {}),
    (2, 4, 8.0, {}),
    (
        3,
        8,
        16.0,
        {"bert.encoder.layer.0.attention.self.query": 2, "bert.encoder.layer.1.attention.self.value": 5},
    ),
]
STEPS, BATCH = 30, 8


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    @contextlib.contextmanager
    def bar(description: str, total: int) -> Iterator[Any]:
        yield lambda n=1, info="": None

    before = set_progress_factory(bar)
    try:
        yield
    finally:
        set_progress_factory(before)


def _model(model_dir: Path, data: Any, seed: int, r: int, alpha: float, pattern: dict[str, int],
           name: str = "default") -> Any:  # fmt: skip
    from peft import get_peft_model

    seed_everything(seed)  # as runs._produce: the head's init and the LoRA init follow the seed
    base = data.task.load_model(str(model_dir), data, torch.device("cpu"))
    return get_peft_model(base, lora_config(r, alpha, TARGETS, 0.0, False, pattern), adapter_name=name)


def _state(model: Any, adapter: str = "default") -> dict[str, torch.Tensor]:
    from peft.utils.save_and_load import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model, adapter_name=adapter).items()}


def _predictions(model: Any, data: Any) -> list[int]:
    model.eval()
    with torch.inference_mode():
        batch = data.task.collate(data.eval, np.arange(len(data.eval)), data.pad_token_id)
        batch.pop("labels")
        return model(**batch).logits.argmax(-1).tolist()


KW = {"steps": STEPS, "batch_size": BATCH, "lr": 5e-3, "weight_decay": 0.0, "warmup_ratio": 0.1}


@pytest.fixture(scope="module")
def alone(no_dropout_bert: Path, data: Any) -> list[tuple[dict[str, torch.Tensor], list[int], float]]:
    out = []
    with _quiet():
        for seed, r, alpha, pattern in JOBS:
            model = _model(no_dropout_bert, data, seed, r, alpha, pattern)
            stats = train_lora(model, data.train, task=data.task, seed=seed, pad_token_id=data.pad_token_id,
                               device=torch.device("cpu"), **KW)  # fmt: skip
            out.append((_state(model), _predictions(model, data), stats.final_loss))
    return out


@pytest.fixture(scope="module")
def fused(no_dropout_bert: Path, data: Any) -> tuple[Any, list[str], list[Any]]:
    names = ["default", "j1", "j2"]
    models = [_model(no_dropout_bert, data, s, r, a, p) for s, r, a, p in JOBS]
    configs = [lora_config(r, a, TARGETS, 0.0, False, p) for _, r, a, p in JOBS]
    model = build(models, configs, names)
    jobs = [FusedJob(adapter=n, seed=s, label=n) for n, (s, *_) in zip(names, JOBS, strict=True)]
    with _quiet():
        stats = train_fused(model, jobs, data.train, task=data.task, pad_token_id=data.pad_token_id,
                            device=torch.device("cpu"), label="fused", **KW)  # fmt: skip
    return model, names, stats


def test_fused_adapters_match_alone_to_1e4(fused: Any, alone: Any) -> None:
    model, names, _ = fused
    worst = 0.0
    for name, (ref, _, _) in zip(names, alone, strict=True):
        got = _state(model, name)
        assert got.keys() == ref.keys()
        for key in ref:
            err = float((got[key] - ref[key]).norm() / ref[key].norm())
            assert err <= 1e-4, (name, key, err)
            worst = max(worst, err)
    print(f"worst relative difference {worst:.2e}")  # 1.1e-05 measured: float rounding of the larger batch


def test_fused_adapters_give_identical_predictions(
    fused: Any, alone: Any, no_dropout_bert: Path, data: Any
) -> None:
    from peft.utils.save_and_load import set_peft_model_state_dict

    model, names, stats = fused
    for name, (seed, r, alpha, pattern), (_, preds, loss), st in zip(names, JOBS, alone, stats, strict=True):
        own = _model(no_dropout_bert, data, seed, r, alpha, pattern)  # a fresh single-adapter model
        set_peft_model_state_dict(own, _state(model, name))
        assert _predictions(own, data) == preds, name
        assert st is not None and st.final_loss == pytest.approx(loss, rel=1e-4)


def test_zero_padded_ranks_keep_real_shapes(fused: Any) -> None:
    model, names, _ = fused
    (_, r0, _, _), (_, r1, _, _), (_, _, _, pattern) = JOBS
    state = {n: _state(model, n) for n in names}
    a_key = "base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight"
    assert [state[n][a_key].shape[0] for n in names] == [
        r0,
        r1,
        pattern["bert.encoder.layer.0.attention.self.query"],
    ]


def test_chunked_loss_is_the_models_own(no_dropout_bert: Path, data: Any) -> None:
    """Two jobs' batches, length-sorted into chunks of 5 rows: Σ sums / Σ counts per job equals
    the model's own mean loss on that job's batch."""
    model = _model(no_dropout_bert, data, 1, 4, 8.0, {})
    idx = [np.arange(0, 8), np.arange(40, 48)]
    width = np.asarray([len(x) for x in data.train.features["input_ids"]])
    plan = plan_chunks([width[i] for i in idx], 5)
    assert sorted(np.concatenate([idx[j][p] for c in plan for j, p in c if j == 0])) == list(idx[0])
    model.eval()
    sums, counts = [0.0, 0.0], [0, 0]
    with torch.no_grad():
        for chunk in plan:
            rows = np.concatenate([idx[j][p] for j, p in chunk])
            assert (
                max(width[rows])
                == data.task.collate(data.train, rows, data.pad_token_id)["input_ids"].shape[1]
            )
            batch = data.task.collate(data.train, rows, data.pad_token_id)
            labels = batch.pop("labels")
            logits, at = model(**batch).logits, 0
            for j, p in chunk:
                s, n = loss_sum(data.task, logits[at : at + len(p)], labels[at : at + len(p)])
                sums[j], counts[j], at = sums[j] + float(s), counts[j] + n, at + len(p)
        for j in range(2):
            own = model(**data.task.collate(data.train, idx[j], data.pad_token_id)).loss
            assert sums[j] / counts[j] == pytest.approx(float(own), rel=1e-5)


def test_a_non_finite_job_fails_alone(no_dropout_bert: Path, data: Any) -> None:
    names = ["default", "j1"]
    models = [_model(no_dropout_bert, data, s, 4, 8.0, {}) for s in (1, 2)]
    model = build(models, [lora_config(4, 8.0, TARGETS, 0.0, False)] * 2, names)
    with torch.no_grad():  # job j1's head blows up: its logits, hence its loss, are infinite
        head = model.base_model.model.classifier.modules_to_save["j1"]
        head.weight.fill_(float("inf"))
    jobs = [FusedJob(adapter=n, seed=s, label=n) for n, s in zip(names, (1, 2), strict=True)]
    with _quiet():
        stats = train_fused(model, jobs, data.train, task=data.task, pad_token_id=data.pad_token_id,
                            device=torch.device("cpu"), label="fused", **{**KW, "steps": 5})  # fmt: skip
    assert stats[0] is not None and np.isfinite(stats[0].final_loss)
    assert stats[1] is None and "non-finite loss at step 1" in str(jobs[1].failure)


def test_seed_dependent_frozen_weights_are_refused(no_dropout_bert: Path, data: Any) -> None:
    models = [_model(no_dropout_bert, data, s, 4, 8.0, {}) for s in (1, 2)]
    with torch.no_grad():
        models[1].base_model.model.bert.pooler.dense.weight.add_(1.0)
    with pytest.raises(FusedUnsupported, match="frozen weights differ"):
        build(models, [lora_config(4, 8.0, TARGETS, 0.0, False)] * 2, ["default", "j1"])


def _bench(root: Path, make_config: Any, model_dir: Path, data_dir: Path, fuse: str) -> tuple[Path, Any]:
    import json

    import yaml
    from typer.testing import CliRunner

    from gradience.cli import app

    cfg = make_config(model_dir, data_dir, compression={"seeds": [7, 8]}, runtime={"fuse": fuse})
    root.mkdir(parents=True)
    (root / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(
        app, ["bench", "--config", str(root / "cfg.yaml"), "--output", str(root / "out"), "--json"]
    )
    assert res.exit_code == 0, res.output
    return root / "out", (json.loads(res.stdout), res.stderr)


def test_a_fused_bench_equals_the_unfused_one(
    tmp_path: Path, make_config: Any, no_dropout_bert: Path, sst2_dir: Path
) -> None:
    """Every probe and retrained variant of two seeds, fused (probes together, then variants
    together) vs one by one: the same per-item predictions in every run, the same verdicts."""
    import json

    alone_dir, (alone, _) = _bench(tmp_path / "alone", make_config, no_dropout_bert, sst2_dir, "off")
    fused_dir, (fused, err) = _bench(tmp_path / "fused", make_config, no_dropout_bert, sst2_dir, "auto")
    assert "fused: training seed_7/probe_r8, seed_8/probe_r8 together" in err
    runs = sorted(p.parent.relative_to(alone_dir) for p in alone_dir.glob("seed_*/*/eval.json"))
    assert runs == sorted(p.parent.relative_to(fused_dir) for p in fused_dir.glob("seed_*/*/eval.json"))
    trained = 0
    for run in runs:
        a = json.loads((alone_dir / run / "eval.json").read_text())["splits"]["eval"]
        f = json.loads((fused_dir / run / "eval.json").read_text())["splits"]["eval"]
        assert a["preds"] == f["preds"], run
        assert f["loss"] == pytest.approx(a["loss"], rel=1e-3), run
        trained += json.loads((fused_dir / run / "result.json").read_text())["spec"]["method"] == "train"
    assert trained >= 4  # two probes and at least one retrained variant per seed
    for name, v in alone["compressed"].items():
        assert fused["compressed"][name]["verdict"]["non_inferiority"] == v["verdict"]["non_inferiority"], (
            name
        )


def test_bf16_runs_the_base_matmuls_in_bf16_and_keeps_fp32_weights(no_dropout_bert: Path, data: Any) -> None:
    """runtime.precision bf16: the base's linear layers compute in bfloat16 (seen by a hook: the
    weight they multiply by; their output is fp32 again), every trainable weight stays fp32, and 5
    steps alone and fused land near the fp32 run."""
    kw = {**KW, "steps": 5}
    seen: set[torch.dtype] = set()

    def run(precision: str, fused: bool) -> dict[str, torch.Tensor]:
        models = [_model(no_dropout_bert, data, s, 4, 8.0, {}) for s in ((1, 2) if fused else (1,))]
        if fused:
            model = build(models, [lora_config(4, 8.0, TARGETS, 0.0, False)] * 2, ["default", "j1"])
            jobs = [FusedJob(adapter=n, seed=s, label=n) for n, s in (("default", 1), ("j1", 2))]
        else:
            model = models[0]
        first = next(m for n, m in model.named_modules() if n.endswith("query.base_layer"))
        hook = first.register_forward_hook(
            lambda mod, inp, out: (
                seen.add(getattr(mod, "_bf16_weight", mod.weight).dtype) or seen.add(out.dtype)
            )
        )
        with _quiet():
            if fused:
                train_fused(model, jobs, data.train, task=data.task, pad_token_id=data.pad_token_id,
                            device=torch.device("cpu"), label="fused", precision=precision, **kw)  # fmt: skip
            else:
                train_lora(model, data.train, task=data.task, seed=1, pad_token_id=data.pad_token_id,
                           device=torch.device("cpu"), precision=precision, **kw)  # fmt: skip
        hook.remove()
        assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
        return _state(model)

    ref = run("fp32", fused=False)
    assert seen == {torch.float32}
    for fused in (False, True):
        seen.clear()
        got = run("bf16", fused)
        assert seen == {torch.bfloat16, torch.float32}
        for k, v in ref.items():
            assert torch.isfinite(got[k]).all()
            # bf16 rounds every activation to 8 bits of mantissa; Adam's first steps amplify it
            assert float((got[k] - v).norm() / v.norm()) < 0.1, (fused, k)
