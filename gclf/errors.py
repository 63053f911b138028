"""The one exception type a user sees: the CLI prints its message on one line, without a traceback."""


class GclfError(Exception):
    """A user-facing error: bad input, a missing file, a step run in the wrong order."""
