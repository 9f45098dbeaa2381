"""Exceptions carrying a one-line message meant for the user.

The command-line interface prints ``error: <message>`` for these and exits with status 2,
never a traceback.  Library callers can catch :class:`AstrorecoError`.
"""


class AstrorecoError(Exception):
    """Base class of every error astroreco reports to a user."""


class InputError(AstrorecoError, ValueError):
    """A file, field or argument does not hold what was expected.

    The message names the file/field and what was expected, on one line.
    """
