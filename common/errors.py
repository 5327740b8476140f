"""Errors about a user's files; the CLI prints their message (which names the file) without a traceback."""


class UserInputError(ValueError):
    """Bad input from the user; the message names the file or field and what was expected."""


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used; the message names the file."""


class ExportError(RuntimeError):
    """An export that would not give back the trained model (the message says why)."""
