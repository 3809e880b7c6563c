"""The error vocabulary every package shares: `InputError` and `one_line`.

`InputError` is a user's input that is wrong (an unknown name, a bad value, missing data, an
output directory that holds another sweep): `pags` prints it as one line and exits 2. It
subclasses ValueError so that code catching ValueError keeps working. Any other exception is a
bug or an infrastructure failure: `pags` exits 1 and keeps its traceback in a log file
(sweep/cli.py), so that an internal error is never mistaken for a typo.

`one_line` is the one-line form of any error, for messages that must stay one line
(`pags: error: ...`, a failed trial's `error` column, a bad file in a report).
"""

from __future__ import annotations


class InputError(ValueError):
    """A user's input is wrong; the message names the bad value and what is allowed."""


def one_line(err: BaseException, *, last: bool = False, limit: int = 300) -> str:
    """`err` as one line of at most `limit` characters: its whitespace collapsed, or with
    `last` its last non-empty line (a Ray task error ends with the cause after a traceback)."""
    text = str(err)
    if last:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        text = lines[-1] if lines else ""
    text = " ".join(text.split())
    return text[:limit] or type(err).__name__
