"""The one exception type for problems a user can fix (bad input, wrong paths, bad options).

The CLI prints a `GlassError` as a single line and exits non-zero without a traceback;
anything else is a bug and keeps its traceback.
"""


class GlassError(Exception):
    """A problem with the user's input, with a message that names it and says how to fix it."""
