"""The one exception type that reaches the user as a single line, never as a traceback."""


class UserError(Exception):
    """A problem with the user's input (config, data, checkpoint, command line).

    The command line prints ``str(error)`` as one line and exits non-zero.
    """
