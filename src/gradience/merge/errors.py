"""The merge package's one exception for input it cannot merge faithfully; the CLI maps it to exit 2."""


class MergeError(ValueError):
    """Adapters that cannot be compared or merged (different bases, bad weights, unknown method, …)."""
