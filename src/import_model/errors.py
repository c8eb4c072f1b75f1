"""The one exception type the CLI turns into a single line and an exit code."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix: bad input, unreachable model, refused action.

    The message is one line that names the problem and what to do about it.
    ``exit_code`` is what the CLI returns (2 unless a command says otherwise).
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message
