"""The one-line form of an error, for messages that must stay one line (`pags: error: ...`,
a failed trial's `error` column, a bad file in a report). It lives in `analysis` because that
package depends on nothing of ours, so the trial side, the sweep and the analysis share it.
"""

from __future__ import annotations


def one_line(err: BaseException, *, last: bool = False, limit: int = 300) -> str:
    """`err` as one line of at most `limit` characters: its whitespace collapsed, or with
    `last` its last non-empty line (a Ray task error ends with the cause after a traceback)."""
    text = str(err)
    if last:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        text = lines[-1] if lines else ""
    text = " ".join(text.split())
    return text[:limit] or type(err).__name__
