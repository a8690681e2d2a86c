"""The one exception type for mistakes a user can fix.

Every check of user input raises `UserInputError` with a message that says what was wrong and what to
change, so the ComfyUI nodes and the CLI can show it as it is instead of a traceback.
"""


class UserInputError(ValueError):
    """Bad input (a path, a size, a setting); the message tells the user what to change."""


class OutOfMemoryError(UserInputError):
    """The accelerator ran out of memory; the message says which setting to lower."""
