"""`GradienceCallback`: record a Hugging Face `Trainer` run as gradience telemetry.

What it writes (default file `<output_dir>/run.jsonl`, appended, never truncated):
`run_start` (ConfigSnapshot from TrainingArguments + the PEFT config), `train_step` per log,
`eval` per evaluation (split `val`, or `test` for a `test_` prefix) followed by an `eval`
on split `train` measured the same way (eval mode, no dropout) on a fixed train subset
so the generalisation gap is computable, `metrics(kind="lora_audit")` from the live LoRA
weights every `audit_every` steps and at the end, guard events when the guard is on,
and `run_end`. A Trainer calls no callback when training raises, so wrap `train()` with
`callback.track()` or use `train_with_telemetry(trainer)` to get `run_end(status="error")`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from gradience.telemetry import RunStatus, TelemetryWriter, perplexity

from .guard import GuardConfig, LoRAGuard
from .snapshot import build_snapshot

_THROUGHPUT = ("runtime", "samples_per_second", "steps_per_second")


def _versions() -> dict[str, str]:
    import peft
    import transformers

    from gradience import __version__

    return {
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "torch": torch.__version__,
        "gradience": __version__,
    }


def _number(value: Any) -> float | None:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def split_eval_metrics(metrics: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """HF eval metrics → [(split, prefix, telemetry metrics)], one per `<prefix>_loss` key."""
    prefixes = [k[: -len("_loss")] for k in metrics if k.endswith("_loss")]
    out = []
    for prefix in prefixes:
        body = {k[len(prefix) + 1 :]: v for k, v in metrics.items() if k.startswith(prefix + "_")}
        loss = _number(body.pop("loss"))
        row: dict[str, Any] = {"loss": loss}
        ppl = _number(body.pop("perplexity", body.pop("ppl", None)))
        if ppl is None and loss is not None:
            ppl = perplexity(loss)
        row["ppl"] = ppl
        acc = _number(body.pop("accuracy", None))
        if acc is not None:
            row["accuracy" if 0.0 <= acc <= 1.0 else "accuracy_raw"] = acc
        for k, v in body.items():
            num = _number(v)
            if num is not None and not k.endswith(_THROUGHPUT) and "/" not in k:
                row[k] = num
        split = "test" if prefix.startswith("test") else "train" if prefix == "train" else "val"
        out.append((split, prefix, row))
    return out


class GradienceCallback(TrainerCallback):
    """Telemetry (and optionally the experimental guard) for a `transformers.Trainer` run."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        run_id: str | None = None,
        audit_every: int | None = 50,
        guard: GuardConfig | bool | None = None,
        model_name: str | None = None,
        dataset_name: str | None = None,
        task_profile: str | None = None,
        notes: str | None = None,
        train_eval_samples: int = 256,
        train_eval_dataset: Any = None,
        adapter_name: str = "default",
        allowed_ranks: list[int] | None = None,
        allow_text: bool = False,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.run_id = run_id
        self.audit_every = audit_every if audit_every and audit_every > 0 else None
        self.guard_config = GuardConfig() if guard is True else (guard or None)
        self.labels = {"model_name": model_name, "dataset_name": dataset_name, "task_profile": task_profile}
        self.notes = notes
        self.train_eval_samples = train_eval_samples
        self.train_eval_dataset = train_eval_dataset
        self.adapter_name = adapter_name
        self.allowed_ranks = allowed_ranks
        self.allow_text = allow_text
        self.meta = dict(meta or {})
        self.writer: TelemetryWriter | None = None
        self.guard: LoRAGuard | None = None
        self._is_zero = True
        self._last_audit: int | None = None
        self._audit_ok = True
        self._last_train_loss: float | None = None

    # --- writer -----------------------------------------------------------------------------

    def _open(self, args: Any) -> TelemetryWriter:
        path = self.path or Path(args.output_dir) / "run.jsonl"
        self.writer = TelemetryWriter(path, run_id=self.run_id, allow_text=self.allow_text)
        return self.writer

    def _w(self) -> TelemetryWriter | None:
        return self.writer if self._is_zero else None

    def _guard_emit(self, severity: str, step: int, code: str, message: str, metrics: dict[str, Any]) -> None:
        w = self._w()
        if w is None:
            return
        w.metrics(step, "guard", metrics)
        if code:
            w.alert(severity, code, message, context=metrics, step=step)

    # --- lifecycle --------------------------------------------------------------------------

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):  # type: ignore[override]
        self._is_zero = bool(getattr(state, "is_world_process_zero", True))
        self._last_audit, self._audit_ok = None, True
        if self.audit_every:
            import gradience.audit  # noqa: F401  (import once here, not inside a timed training step)
        w = self._open(args)
        snap = build_snapshot(args, model, max_steps=state.max_steps, notes=self.notes, **self.labels)
        meta = {
            "framework": "huggingface",
            **_versions(),
            "guard": self.guard_config is not None,
            **self.meta,
        }
        if self._is_zero:
            w.run_start(snap, meta=meta, step=state.global_step)
        if self.guard_config is not None and model is not None:
            self.guard = LoRAGuard(self.guard_config, self._guard_emit)
            self.guard.attach(model, optimizer, state.global_step, fp16=bool(getattr(args, "fp16", False)))

    def on_step_begin(self, args, state, control, **kwargs):  # type: ignore[override]
        if self.guard is not None:
            self.guard.begin_step()

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):  # type: ignore[override]
        if self.guard is not None and self.guard.before_optimizer_step(state.global_step + 1, optimizer):
            control.should_training_stop = True
        return control

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):  # type: ignore[override]
        if self.guard is not None:
            self.guard.after_step(state.global_step, optimizer)
        if self.audit_every and state.global_step % self.audit_every == 0:
            self._audit(model, state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[override]
        w = self._w()
        if w is None or not logs or any(k.startswith(("eval_", "test_")) for k in logs):
            return  # evaluation logs are recorded by on_evaluate
        nums = {k: n for k, v in logs.items() if (n := _number(v)) is not None}
        if "train_runtime" in logs or "train_loss" in logs:
            w.metrics(state.global_step, "train_summary", nums)
            return
        loss = nums.pop("loss", None)
        if loss is not None and math.isfinite(loss):
            self._last_train_loss = loss
        lr = logs.get("learning_rate")
        nums.pop("learning_rate", None)
        w.train_step(
            state.global_step,
            loss=loss,
            lr=lr if isinstance(lr, list) else _number(lr),
            grad_norm=nums.pop("grad_norm", None),
            epoch=nums.pop("epoch", None),
            **nums,
        )

    def on_evaluate(self, args, state, control, metrics=None, model=None, train_dataloader=None, **kwargs):  # type: ignore[override]
        w = self._w()
        if w is None or not metrics:
            return
        rows = split_eval_metrics(metrics)
        eval_dl = kwargs.get("eval_dataloader")
        if len(rows) == 1 and eval_dl is not None and hasattr(getattr(eval_dl, "dataset", None), "__len__"):
            rows[0][2].setdefault("n", len(eval_dl.dataset))
        for split, prefix, row in rows:
            w.eval(state.global_step, split, row, prefix=prefix)
        if rows and model is not None and not any(split == "train" for split, _, _ in rows):
            self._train_side_eval(args, state, model, train_dataloader)

    def on_train_end(self, args, state, control, model=None, **kwargs):  # type: ignore[override]
        if self.audit_every and self._last_audit != state.global_step:
            self._audit(model, state.global_step)
        w = self._w()
        aborted = self.guard is not None and self.guard.aborted
        if self.guard is not None:
            self.guard.detach()
        if w is not None and not w.ended:
            if aborted:
                w.run_end(RunStatus.ABORTED, reason="guard: rollbacks exhausted", step=state.global_step)
            elif state.max_steps and state.global_step < state.max_steps:
                reason = f"stopped early at step {state.global_step} of {state.max_steps}"
                w.run_end(RunStatus.OK, reason=reason, step=state.global_step)
            else:
                w.run_end(RunStatus.OK, step=state.global_step)
        if w is not None:
            w.close()  # reopened lazily by a later evaluate()

    def fail(self, exc: BaseException, args: Any = None) -> None:
        """Record that training raised: `run_end(status="error")` (or "aborted" on Ctrl-C)."""
        if self.guard is not None:
            self.guard.detach()
        w = self.writer or (self._open(args) if args is not None or self.path is not None else None)
        if w is None or w.ended or not self._is_zero:
            return
        status = RunStatus.ABORTED if isinstance(exc, KeyboardInterrupt) else RunStatus.ERROR
        w.run_end(status, reason=f"{type(exc).__name__}: {exc}"[:256])
        w.close()

    @contextmanager
    def track(self, args: Any = None) -> Iterator[GradienceCallback]:
        """`with callback.track(): trainer.train()` — an exception writes run_end(status="error")."""
        try:
            yield self
        except BaseException as exc:
            self.fail(exc, args)
            raise

    # --- measurements -----------------------------------------------------------------------

    def _audit(self, model: Any, step: int) -> None:
        w = self._w()
        if w is None or model is None or not self._audit_ok:
            return
        from gradience.audit import AdapterError, audit_model

        t0 = time.perf_counter()
        try:
            report = audit_model(model, self.adapter_name, allowed_ranks=self.allowed_ranks)
        except AdapterError as exc:
            self._audit_ok = False
            w.alert("info", "audit_unavailable", f"no live LoRA audit: {exc}", step=step)
            return
        metrics = report.telemetry_metrics()
        metrics["audit_seconds"] = time.perf_counter() - t0
        w.metrics(step, "lora_audit", metrics, source="live")
        self._last_audit = step

    def _train_side_eval(self, args: Any, state: Any, model: Any, train_dl: Any) -> None:
        w = self._w()
        if w is None:
            return
        measured = train_subset_loss(
            model,
            self.train_eval_dataset
            if self.train_eval_dataset is not None
            else getattr(train_dl, "dataset", None),
            train_dl,
            args,
            self.train_eval_samples,
        )
        if measured is not None:
            w.eval(state.global_step, "train", measured, source="train_subset")
        elif self._last_train_loss is not None:
            loss = self._last_train_loss
            row = {"loss": loss, "ppl": perplexity(loss)}
            w.eval(state.global_step, "train", row, source="running_train_loss")


def train_subset_loss(
    model: Any, dataset: Any, train_dl: Any, args: Any, limit: int
) -> dict[str, Any] | None:
    """Loss/ppl (and accuracy for classification) on the first `limit` training examples.

    Eval mode and no_grad, like the held-out eval, so the two are comparable. Batches are
    collated by hand (no DataLoader) so the training RNG stream is left untouched.
    """
    if dataset is None or not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        return None
    collate = getattr(train_dl, "collate_fn", None)
    if collate is None:
        from transformers import default_data_collator as collate
    n = min(limit, len(dataset))
    bs = max(1, int(getattr(args, "per_device_eval_batch_size", 8) or 8))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count, correct, acc_ok = 0.0, 0, 0, True
    try:
        with torch.no_grad():
            for start in range(0, n, bs):
                batch = collate([dataset[i] for i in range(start, min(n, start + bs))])
                batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
                out = model(**batch)
                loss = out.get("loss") if isinstance(out, dict) else getattr(out, "loss", None)
                if loss is None:
                    return None
                size = min(n, start + bs) - start
                total += float(loss) * size
                count += size
                logits, labels = getattr(out, "logits", None), batch.get("labels")
                if (
                    isinstance(logits, torch.Tensor)
                    and isinstance(labels, torch.Tensor)
                    and logits.dim() == 2
                    and labels.dim() == 1
                ):
                    correct += int((logits.argmax(-1) == labels).sum())
                else:
                    acc_ok = False
    finally:
        model.train(was_training)
    if not count:
        return None
    loss = total / count
    row: dict[str, Any] = {"loss": loss, "ppl": perplexity(loss), "n": count}
    if acc_ok:
        row["accuracy"] = correct / count
    return row


def train_with_telemetry(trainer: Any, **train_kwargs: Any) -> Any:
    """`trainer.train(**kw)` that records `run_end(status="error")` if training raises."""
    callbacks = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, GradienceCallback)]
    if not callbacks:
        raise ValueError("trainer has no GradienceCallback; add one with trainer.add_callback(...)")
    with callbacks[0].track(trainer.args):
        return trainer.train(**train_kwargs)
