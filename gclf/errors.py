"""The one exception type a user sees: the CLI prints its message on one line, without a traceback."""


class GclfError(Exception):
    """A user-facing error: bad input, a missing file, a step run in the wrong order."""


class BadAudio(GclfError):
    """An audio file that cannot be used, with a short ``reason`` that summaries count files by."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason
