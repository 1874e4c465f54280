"""The audit's one exception for input it cannot read; the CLI maps it to exit code 2."""


class AdapterError(ValueError):
    """Unreadable or unsupported adapter input (missing files, bad JSON, corrupt weights, wrong shapes)."""
