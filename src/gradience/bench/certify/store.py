"""The --out folder: checked before anything runs, created only when the first result exists,
predictions written as each model finishes (so --resume can reuse them), reports last.

A folder is only ever written into when it is new, empty, or one certify wrote (its marker);
every file is replaced atomically (``files.write_atomic``), and ``certified/`` is written by
``compress_adapter`` through ``files.staged_output``.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from gradience.audit import Adapter
from gradience.bench.certify.models import Predictions
from gradience.files import check_output_dir, is_ours, mark_folder, write_atomic, write_json_atomic

PREDICTIONS = "predictions"
CERTIFIED = "certified"
KIND = "certify"


def check_out(out: Path, peft_dir: Path, resume: bool) -> Path:
    """Fail before any work: a file, a non-empty folder without --resume, or one we did not write."""
    return check_output_dir(
        out,
        [peft_dir],
        accept_existing=resume,
        overwrite_hint="pass --resume to continue a certify run in it",
    )


def adapter_fingerprint(adapter: Adapter) -> str:
    h = hashlib.sha256()
    for path in (adapter.peft_dir / "adapter_config.json", adapter.weights_path):
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def fingerprint(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]


class Store:
    def __init__(self, root: Path, resume: bool) -> None:
        self.root, self.resume = root, resume
        self.reused: list[str] = []
        self.written: set[str] = set()

    def _ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not is_ours(self.root):
            mark_folder(self.root, KIND)

    def rel(self, name: str) -> str:
        return f"{PREDICTIONS}/{name}.json"

    def load(self, name: str, fp: str) -> Predictions | None:
        """With --resume, a prediction file of exactly this model and these settings."""
        path = self.root / self.rel(name)
        if not self.resume or not path.is_file():
            return None
        try:
            pred = Predictions.model_validate_json(path.read_bytes())
        except ValueError:
            return None
        if pred.fingerprint != fp:
            return None
        self.reused.append(name)
        self.written.add(name)
        return pred

    def save(self, pred: Predictions) -> None:
        self._ensure()
        write_json_atomic(self.root / self.rel(pred.name), pred.to_json())
        self.written.add(pred.name)

    def write(self, name: str, data: bytes | str) -> None:
        self._ensure()
        write_atomic(self.root / name, data)

    def drop_stale(self) -> None:
        """Prediction files of an earlier run that this report does not list."""
        folder = self.root / PREDICTIONS
        if folder.is_dir():
            for path in folder.glob("*.json"):
                if path.stem not in self.written:
                    path.unlink()

    def drop_certified(self) -> None:
        """An earlier run's certified/ when this run certifies nothing: it must not look current."""
        path = self.root / CERTIFIED
        if path.is_dir() and is_ours(path):
            shutil.rmtree(path)
