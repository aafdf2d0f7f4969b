"""The one exception type a user sees: the CLI prints its message on one line and exits 2."""


class CompleterError(Exception):
    """A problem with the user's input (bad flag, bad file, bad checkpoint), not a bug."""
