"""The error type the command line sorts failures by.

`InputError` is a user's input that is wrong (an unknown name, a bad value, missing data, an
output directory that holds another sweep): `pags` prints it as one line and exits 2. It
subclasses ValueError so that code catching ValueError keeps working. Any other exception is a
bug or an infrastructure failure: `pags` exits 1 and keeps its traceback in a log file
(sweep/cli.py), so that an internal error is never mistaken for a typo. The one-line form of
any error is `analysis.errors.one_line` (analysis depends on nothing of ours, so every package
can import it).
"""

from __future__ import annotations


class InputError(ValueError):
    """A user's input is wrong; the message names the bad value and what is allowed."""
