"""Reading a task's rows from anywhere: a file, a folder of files, or a hub dataset.

Every source becomes ``{"train": Dataset, "validation": Dataset?}``. Local files are
read by their suffix; a folder holds ``train.*`` and optionally ``dev.*`` or
``validation.*`` (GLUE's layout keeps working); ``task.splits`` names other files or
split names. The hub is used only when the source is not a local path, and offline it
fails with one line saying how to pass local files instead.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gradience.bench import BenchInputError
from gradience.bench.config import TaskConfig

_log = logging.getLogger(__name__)

READERS = {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
VALIDATION_STEMS = ("dev", "validation", "valid", "val", "test")


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[Any]:
    """datasets' own bars and logged parser errors would interleave with ours (one-line errors)."""
    import datasets

    was_disabled = datasets.utils.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    ds_logger = logging.getLogger("datasets")
    level = ds_logger.level
    ds_logger.setLevel(logging.CRITICAL)
    try:
        yield datasets
    finally:
        ds_logger.setLevel(level)
        if not was_disabled:
            datasets.enable_progress_bars()


def _first_line(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    for e in (cause, exc):
        if e is not None and str(e).strip():
            return str(e).strip().splitlines()[0][:200]
    return type(exc).__name__


def read_file(path: Path) -> Any:
    """One file as a Dataset, by suffix. TSV is read with QUOTE_NONE: GLUE TSVs contain bare quote
    characters that must stay part of the text."""
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise BenchInputError(
            f"cannot read {path}: file type '{path.suffix or '(none)'}' is not one of {', '.join(READERS)}"
        )
    if not path.is_file():
        raise BenchInputError(f"data file {path} does not exist (relative paths are read from {Path.cwd()})")
    if reader != "parquet" and _data_lines(path, 2 if reader == "csv" else 1) == 0:
        raise BenchInputError(f"{path} has no rows" + (" below its header" if reader == "csv" else ""))
    kwargs: dict[str, Any] = {"delimiter": "\t", "quoting": 3} if path.suffix.lower() == ".tsv" else {}
    with _quiet_datasets() as datasets:
        try:
            ds = datasets.load_dataset(reader, data_files={"x": str(path)}, keep_in_memory=True, **kwargs)[
                "x"
            ]
        except Exception as exc:  # ragged rows, bad JSON, bad encoding: the file is the problem, not the code
            hint = " (a header row, then the same number of columns in every row)" if reader == "csv" else ""
            raise BenchInputError(
                f"cannot read {path} as {path.suffix.lstrip('.')}{hint}: {_first_line(exc)}"
            ) from None
    if len(ds) == 0:
        raise BenchInputError(f"{path} has no rows")
    return ds


def _data_lines(path: Path, need: int) -> int:
    """0 when the text file has fewer than ``need`` non-blank lines (header included for CSV)."""
    seen = 0
    with path.open("rb") as f:
        for line in f:
            seen += bool(line.strip())
            if seen >= need:
                return seen
    return 0


def _in_folder(folder: Path, stems: tuple[str, ...]) -> Path | None:
    for stem in stems:
        for suffix in READERS:
            if (folder / f"{stem}{suffix}").is_file():
                return folder / f"{stem}{suffix}"
    return None


def _read_folder(folder: Path, splits: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, stems in (("train", ("train",)), ("validation", VALIDATION_STEMS)):
        wanted = splits.get(name)
        if wanted is not None:
            path = Path(wanted) if Path(wanted).is_file() else _in_folder(folder, (wanted,))
            if path is None:
                raise BenchInputError(
                    f"task.splits.{name} '{wanted}' is neither a file nor a file stem in {folder}"
                )
        else:
            path = _in_folder(folder, stems)
        if path is not None:
            out[name] = read_file(path)
    if "train" not in out:
        raise BenchInputError(
            f"no train file in {folder} (train.tsv, train.csv, train.jsonl, train.json or train.parquet; "
            "or name one in task.splits.train)"
        )
    return out


def _read_hub(name: str, config: str | None, splits: dict[str, str]) -> dict[str, Any]:
    with _quiet_datasets() as datasets:
        try:
            ds = datasets.load_dataset(name, config)
        except Exception as exc:  # offline, unknown name, …: all one user-facing problem
            where = f"{name}/{config}" if config else name
            raise BenchInputError(
                f"cannot load {where} from the hub ({_first_line(exc)[:160]}); offline, pass local files instead: "
                "--data FILE_OR_DIR or --data-dir DIR (task.data; .csv .tsv .jsonl .json .parquet)"
            ) from None
    available = dict(ds)
    out: dict[str, Any] = {}
    for role, default in (("train", ("train",)), ("validation", ("validation", "dev", "test"))):
        names = (splits[role],) if role in splits else default
        found = next((available[n] for n in names if n in available), None)
        if found is None and role in splits:
            raise BenchInputError(f"{name} has no split '{splits[role]}' (it has {sorted(available)})")
        if found is not None:
            out[role] = found
    if "train" not in out:
        raise BenchInputError(
            f"dataset {name} has no train split (it has {sorted(available)}); set task.splits.train"
        )
    return out


def _fall_back(task: TaskConfig) -> bool:
    """A built-in config's folder is where we keep SST-2; elsewhere its hub copy stands in."""
    if task.data_dir_fallback != "hub" or Path(task.data_dir or "").is_dir():
        return False
    where = f"{task.dataset}/{task.subset}" if task.subset else task.dataset
    _log.warning(
        "%s not found; loading %s from the hub (--data-dir DIR reads a local copy)", task.data_dir, where
    )
    return True


def read_source(task: TaskConfig) -> tuple[dict[str, Any], str]:
    """The task's splits and a name for the source (resolved path or ``hub:id/config``)."""
    splits = dict(task.splits)
    if task.data_dir and not task.data and _fall_back(task):
        task = task.model_copy(update={"data_dir": None})
    if task.data_dir and not task.data:  # the GLUE-era key: always a local folder
        folder = Path(task.data_dir)
        if not folder.is_dir():
            raise BenchInputError(
                f"task.data_dir '{folder}' does not exist (relative paths are read from {Path.cwd()}); "
                "point --data-dir at a folder holding train.tsv and dev.tsv (or a train file of another type)"
            )
        return _read_folder(folder, splits), str(folder.resolve())
    if task.data:
        path = Path(task.data)
        if path.is_dir():
            return _read_folder(path, splits), str(path.resolve())
        if (
            path.is_file()
            or path.suffix.lower() in READERS
            or path.is_absolute()
            or task.data.startswith(".")
        ):
            out = {"train": read_file(path)}
            if "validation" in splits:
                out["validation"] = read_file(Path(splits["validation"]))
            return out, str(path.resolve())
        return _read_hub(task.data, task.data_config or None, splits), f"hub:{task.data}"
    if all(Path(v).is_file() for v in splits.values()) and "train" in splits:
        return {k: read_file(Path(v)) for k, v in splits.items()}, str(Path(splits["train"]).resolve())
    config = task.data_config or task.subset
    return _read_hub(
        task.dataset, config, splits
    ), f"hub:{task.dataset}/{config}" if config else f"hub:{task.dataset}"
