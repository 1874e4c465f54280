"""`--base-model NAME_OR_PATH` → a local folder of safetensors: the audit reads files, never a hub."""

from __future__ import annotations

from pathlib import Path


def resolve_base(name: str) -> Path:
    """A local folder as given; the embedded MiniLM by alias (bench's resolver); a hub id only if
    it is already in the local Hugging Face cache (nothing is downloaded)."""
    from gradience.audit import AdapterError

    if Path(name).is_dir():
        return Path(name)
    from gradience.bench.config import MINILM_ALIASES, resolve_model_path

    if name.lower() in MINILM_ALIASES:
        return Path(resolve_model_path(name))
    try:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(name, local_files_only=True, allow_patterns=["*.safetensors", "*.json"])
        )
    except Exception:  # noqa: BLE001 - any hub failure means: not available locally
        raise AdapterError(
            f"--base-model {name!r}: not a local folder, and not in the local Hugging Face cache "
            "(download the model's safetensors first, e.g. huggingface-cli download NAME)"
        ) from None
