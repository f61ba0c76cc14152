"""Errors that name the problem in one line."""
from __future__ import annotations


class DataError(ValueError):
    """A bad input file or line: ``file:line: reason``.

    >>> str(DataError("a.csv", 3, "expected 6 columns, got 5"))
    'a.csv:3: expected 6 columns, got 5'
    """

    def __init__(self, path: object, line: int | None, reason: str) -> None:
        self.path, self.line, self.reason = str(path), line, reason
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")
