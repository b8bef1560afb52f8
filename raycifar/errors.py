"""The exceptions the command line turns into exit codes.

- :class:`UserError` (exit 2): a problem with the user's input (a file, a key, a value) that
  they can fix; its message is one line naming it.
- :class:`RunFailed` (exit 1): the work ran but produced nothing to promote;
  :class:`PromotionFailed` (exit 1): it ran, but its promotion could not be written.
- :class:`Interrupted` (exit 130): stopped with Ctrl+C; results so far are kept.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (a file, a key, a value) that they can fix."""


class RunFailed(Exception):
    """A sweep or training run ran but left nothing to promote."""


class PromotionFailed(RunFailed):
    """A finished run's promotion could not be written (a full disk, a file where a folder
    should be, the leaderboard lock held by another process). The attempt left nothing behind,
    so promoting again finishes it.

    The message is one line: ``promotion of SUBJECT failed: PROBLEM; FIX, then COMMAND``.
    :meth:`finish_with` names the subject and the command that finishes the promotion where
    the caller knows them better (a sweep: ``raycifar promote``).
    """

    def __init__(self, subject: str, problem: str, fix: str, command: str | None = None) -> None:
        self.subject, self.problem, self.fix, self.command = subject, problem, fix, command
        then = f"run: {command}" if command else "run the same command again"
        super().__init__(f"promotion of {subject} failed: {problem}; {fix}, then {then}")

    def finish_with(self, subject: str, command: str) -> PromotionFailed:
        """The same failure of ``subject`` (e.g. ``sweep NAME``), finished by ``command``."""
        return PromotionFailed(subject, self.problem, self.fix, command)


class Interrupted(Exception):
    """A sweep or training run was stopped (Ctrl+C) before it finished."""
