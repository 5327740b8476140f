"""One family of errors for what a user gave us: a file, a field, an argument.

`mtl` prints any `UserInputError` as one line, `mtl: error: <message>`, and exits with status 1; the
message names the file or field, what was expected and what was found. The traceback is printed only
with `MTL_DEBUG=1`, because for a bad input it only hides that line. Every domain's data and format
errors derive from `UserInputError` (`FwiDataError`, `RoofDataError`, `ChatDataError`, `MergeError`,
`PatchFormatError`), so a fifth domain gets the same behaviour by deriving from it too.

`UserInputError` is a `ValueError`, and `MissingInputError` also a `FileNotFoundError`, so code that
catches the built-in kinds keeps working.
"""


class UserInputError(ValueError):
    """Bad input from the user; the message names the file or field and what was expected."""


class MissingInputError(UserInputError, FileNotFoundError):
    """A file or directory the user named (or a recipe points to) does not exist."""


class CheckpointError(UserInputError):
    """A checkpoint file that cannot be used; the message names the file."""


class ExportError(UserInputError):
    """An export that would not give back the trained model, or a bundle that cannot be read."""


def user_error_behind(error: BaseException) -> UserInputError | None:
    """The `UserInputError` that caused `error`, if any (jsonargparse wraps errors raised while it
    instantiates a recipe's classes in a ValueError of its own)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, UserInputError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
