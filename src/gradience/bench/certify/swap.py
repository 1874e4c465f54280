"""One base model in memory; each candidate's merged update swapped into its weights and out again.

Reloading a model per candidate costs a load and a PEFT wrap each time, and an unmerged LoRA
runs two extra matmuls per adapted layer per token. Here the adapter's non-LoRA tensors (the
classifier head of ``modules_to_save``, trained biases) are loaded once by PEFT itself — so
they land exactly where PEFT puts them — and the LoRA layers are unloaded again; each candidate
then adds W += (B'·A')·s into the adapted weights, computed the way PEFT's own merge computes
it, and the pristine weights are copied back afterwards and compared bit for bit.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from gradience.audit import Adapter
from gradience.bench import BenchInputError


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        if "size mismatch" in line or "shape" in line:
            return line.strip()[:240]
    return (text.splitlines() or [type(exc).__name__])[0][:240]


def load_carried(base: Any, adapter_dir: Path) -> Any:
    """The base model with every non-LoRA tensor of the adapter loaded, and no LoRA layer left."""
    from peft import PeftModel

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wrapped = PeftModel.from_pretrained(base, str(adapter_dir))
    except (RuntimeError, ValueError, KeyError) as exc:  # size mismatch, missing target modules, …
        raise BenchInputError(
            f"the adapter {adapter_dir} does not fit the base model ({_first_line(exc)}); check --base-model, "
            "and for a classifier --labels (the head's label order and count)"
        ) from None
    return wrapped.unload()


class WeightSwap:
    """The adapted weights of one model, kept pristine between candidates."""

    def __init__(self, model: Any, adapter: Adapter):
        self.model = model
        self.layers = adapter.layers
        fan_in_fan_out = bool(adapter.config.fan_in_fan_out)
        self.params: dict[str, torch.nn.Parameter] = {}
        self.transpose: dict[str, bool] = {}
        self.scale: dict[str, float] = {}
        for la in adapter.layers:
            if la.kind == "conv":
                raise BenchInputError(
                    f"layer {la.name} is a convolution; certify swaps Linear and Embedding LoRA layers"
                )
            try:
                module = model.get_submodule(la.name)
            except AttributeError:
                raise BenchInputError(
                    f"the base model has no module {la.name} (adapted by the adapter)"
                ) from None
            weight = getattr(module, "weight", None)
            if not isinstance(weight, torch.Tensor):
                raise BenchInputError(f"module {la.name} of the base model has no weight to merge into")
            conv1d = type(module).__name__ == "Conv1D"  # GPT-2 style: weight is (in, out)
            self.transpose[la.name] = la.kind == "embedding" or fan_in_fan_out or conv1d
            shape = (
                (la.in_features, la.out_features)
                if self.transpose[la.name]
                else (la.out_features, la.in_features)
            )
            if tuple(weight.shape) != shape:
                raise BenchInputError(
                    f"layer {la.name}: the adapter's update is {list(shape)} but the base model's weight is "
                    f"{list(weight.shape)}; is --base-model the model the adapter was trained on?"
                )
            self.params[la.name] = weight
            self.scale[la.name] = la.scale
        keep = "cpu"  # off the accelerator: the copies cost host memory, not device memory
        self.pristine = {n: p.detach().to(keep, copy=True) for n, p in self.params.items()}

    def delta(self, name: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """PEFT's get_delta_weight: transpose(B @ A, fan_in_fan_out) * scaling, in fp32."""
        w = self.params[name]
        a = a.to(device=w.device, dtype=torch.float32)
        b = b.to(device=w.device, dtype=torch.float32)
        d = b @ a
        if self.transpose[name]:
            d = d.T
        return (d * self.scale[name]).to(w.dtype)

    @contextlib.contextmanager
    def merged(self, factors: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> Iterator[Any]:
        """The model with W + s·B·A in every adapted layer; pristine weights restored on exit."""
        try:
            with torch.no_grad():
                for name, (a, b) in factors.items():
                    self.params[name].add_(self.delta(name, a, b))
            yield self.model
        finally:
            self.restore()

    def restore(self) -> None:
        with torch.no_grad():
            for name, p in self.params.items():
                p.copy_(self.pristine[name])
        if not self.is_pristine():
            raise RuntimeError("weight swap: the base weights were not restored exactly")

    def is_pristine(self) -> bool:
        return all(torch.equal(p.detach().cpu(), self.pristine[n]) for n, p in self.params.items())
