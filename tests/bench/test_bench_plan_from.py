"""`gradience bench plan --from DIR`: planner inputs measured on a bench folder (written with the bench's own run models)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gradience.cli import app


def _reference(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Two-way ANOVA written out cell by cell, independent of the library."""
    d = np.stack([v.astype(float) - p.astype(float) for p, v in pairs], axis=1)
    n, s = d.shape
    g, rows, cols = d.mean(), d.mean(axis=1), d.mean(axis=0)
    ms_e = sum((d[i, j] - rows[i] - cols[j] + g) ** 2 for i in range(n) for j in range(s)) / (
        (n - 1) * (s - 1)
    )
    common = max(s * np.var(rows, ddof=1) - ms_e, 0) / s
    return {
        "discordance": float((d != 0).mean()),
        "seed_sd": float(np.sqrt(max(n * np.var(cols, ddof=1) - ms_e, 0) / n)),
        "item_share": float(common / (common + ms_e)) if common + ms_e else 1.0,
    }


def _correct(run: Path) -> np.ndarray:
    ev = json.loads((run / "eval.json").read_text())["splits"]["eval"]
    return np.asarray(ev["preds"]) == np.asarray(ev["labels"])


def _write_run(
    seed_dir: Path, name: str, variant: str, seed: int, labels: np.ndarray, correct: np.ndarray
) -> None:
    """One run folder exactly as the bench writes it (its own models), from given per-item outcomes."""
    from gradience.bench.runs import RunResult, RunSpec, SplitMetrics
    from gradience.bench.training import TrainStats

    run = seed_dir / name
    run.mkdir(parents=True)
    preds = np.where(correct, labels, 1 - labels)
    split = {"split": "heldout", "accuracy": float(correct.mean()), "loss": 0.4, "n": int(labels.size),
             "rows": list(range(labels.size)), "labels": labels.tolist(), "preds": preds.tolist()}  # fmt: skip
    (run / "eval.json").write_text(json.dumps({"run": name, "seed": seed, "splits": {"eval": split}}))
    spec = RunSpec(name=name, variant=variant, seed=seed, method="train", r=4, alpha=8.0)
    res = RunResult(spec=spec, fingerprint="f", status="ok",
                    eval={"eval": SplitMetrics(accuracy=float(correct.mean()), loss=0.4, n=int(labels.size))},
                    train=TrainStats(steps=10, final_loss=0.3, mean_loss_last_10pct=0.3, wall_s=1.0, train_tokens=1))  # fmt: skip
    (run / "result.json").write_text(res.model_dump_json())


@pytest.fixture(scope="module")
def two_seed_bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seeds × (probe, two variants) with known per-item outcomes; seed 8's uniform_median
    run answers one class (collapsed), so that variant keeps one usable seed."""
    from gradience.verdicts.simulate import simulate_correctness

    out = tmp_path_factory.mktemp("plan_from") / "out"
    rng = np.random.default_rng(0)
    labels = (rng.random(400) < 0.5).astype(int)
    probe, trunc = simulate_correctness(rng, 1, 400, 2, delta=-0.01, discordance=0.08, item_share=0.6)
    _, uni = simulate_correctness(rng, 1, 400, 2, delta=0.0)
    for k, seed in enumerate((7, 8)):
        seed_dir = out / f"seed_{seed}"
        _write_run(seed_dir, "probe_r8", "probe", seed, labels, probe[0, :, k])
        _write_run(seed_dir, "truncate_median_r4", "truncate_median", seed, labels, trunc[0, :, k])
        majority = labels == np.bincount(labels).argmax()
        _write_run(
            seed_dir,
            "uniform_median_r4",
            "uniform_median",
            seed,
            labels,
            majority if seed == 8 else uni[0, :, k],
        )
    return out


def test_plan_from_a_finished_bench_uses_its_measured_inputs(two_seed_bench: Path) -> None:
    res = CliRunner().invoke(app, ["bench", "plan", "--from", str(two_seed_bench), "--json"])
    assert res.exit_code in (0, 1), res.output
    out = json.loads(res.stdout)
    est = out["estimated_from"]["estimate"]
    for row in est["variants"]:
        pairs = []
        for seed in (7, 8):
            seed_dir = two_seed_bench / f"seed_{seed}"
            probe = next(p for p in seed_dir.iterdir() if p.name.startswith("probe_"))
            variant = next(p for p in seed_dir.iterdir() if p.name.startswith(row["variant"]))
            pairs.append((_correct(probe), _correct(variant)))
        ref = _reference(pairs)
        for key, value in ref.items():
            assert row[key] == pytest.approx(value, abs=1e-12), (row["variant"], key)
    assert [r["variant"] for r in est["variants"]] == ["truncate_median"]
    assert out["estimated_from"]["left_out"] == [
        "seed_8/uniform_median_r4 (collapsed)",
        "uniform_median (only 1 usable seed)",
    ]
    assert out["baseline_acc"] == pytest.approx(est["baseline_acc"])
    assert out["discordance"] == pytest.approx(est["discordance"])
    assert out["item_share"] == pytest.approx(est["item_share"]) and not out["item_share_worst_case"]
    flagged = CliRunner().invoke(
        app, ["bench", "plan", "--from", str(two_seed_bench), "--discordance", "0.2", "--json"]
    )
    assert json.loads(flagged.stdout)["discordance"] == 0.2  # a flag given wins over the measurement
    text = CliRunner().invoke(app, ["bench", "plan", "--from", str(two_seed_bench)])
    assert "Measured on" in text.stdout and "as few as 2 seeds" in text.stdout


def test_plan_from_a_folder_that_is_no_bench_is_one_line_exit_2(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["bench", "plan", "--from", str(tmp_path)])
    assert (
        res.exit_code == 2
        and "no seed_* run folders" in res.output
        and len(res.output.strip().splitlines()) == 1
    )
    (tmp_path / "seed_1" / "probe_r4").mkdir(parents=True)
    (tmp_path / "seed_1" / "probe_r4" / "eval.json").write_text("{")
    (tmp_path / "seed_1" / "probe_r4" / "result.json").write_text("{}")
    res = CliRunner().invoke(app, ["bench", "plan", "--from", str(tmp_path)])
    assert (
        res.exit_code == 2
        and "not a bench run folder" in res.output
        and len(res.output.strip().splitlines()) == 1
    )
    res = CliRunner().invoke(app, ["bench", "plan"])
    assert res.exit_code == 2 and "--baseline-acc" in res.output


def test_plan_for_a_real_valued_metric_takes_item_sd() -> None:
    import json as _json

    from typer.testing import CliRunner

    from gradience.cli import app
    from gradience.verdicts import plan

    res = CliRunner().invoke(
        app, ["bench", "plan", "--margin", "0.02", "--item-sd", "0.3", "--seed-sd", "0.01", "--json"]
    )
    assert res.exit_code == 0, res.output
    got = _json.loads(res.stdout)
    want = plan(0.02, 0.8, None, seed_sd=0.01, item_sd=0.3).to_json()
    assert (got["recommended_seeds"], got["recommended_eval_items"]) == (
        want["recommended_seeds"],
        want["recommended_eval_items"],
    )
    assert got["item_sd"] == 0.3 and got["baseline_acc"] is None
    bad = CliRunner().invoke(app, ["bench", "plan", "--margin", "0.02", "--item-sd", "0.3"])
    assert bad.exit_code == 2 and "--seed-sd" in bad.stderr and bad.stderr.count("\n") == 1
