"""The compressor's one exception for bad input or plans; the CLI maps it to exit code 2."""


class CompressError(ValueError):
    """A plan or an adapter that cannot be compressed faithfully (bad strategy, DoRA, NaN factors, …)."""
