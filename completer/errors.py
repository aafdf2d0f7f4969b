"""The one exception type a user sees: the CLI prints its message on one line and exits 2."""


class CompleterError(Exception):
    """A problem with the user's input (bad flag, bad file, bad checkpoint), not a bug."""


class SignalExit(BaseException):
    """A second stop signal while the first one's save is under way: stop at once; the CLI exits
    128 + `signum` (the first signal's number), as the first signal alone would have."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
