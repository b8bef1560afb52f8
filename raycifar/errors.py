"""The one exception type for bad user input: the CLI prints it as one line and exits 2."""


class UserError(Exception):
    """A problem with the user's input (a file, a key, a value) that they can fix."""
