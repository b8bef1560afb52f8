"""The exceptions the command line turns into exit codes.

- :class:`UserError` (exit 2): a problem with the user's input (a file, a key, a value) that
  they can fix; its message is one line naming it.
- :class:`RunFailed` (exit 1): the work ran but produced nothing to promote.
- :class:`Interrupted` (exit 130): stopped with Ctrl+C; results so far are kept.
"""


class UserError(Exception):
    """A problem with the user's input (a file, a key, a value) that they can fix."""


class RunFailed(Exception):
    """A sweep or training run ran but left nothing to promote."""


class Interrupted(Exception):
    """A sweep or training run was stopped (Ctrl+C) before it finished."""
