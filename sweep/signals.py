"""One home for SIGTERM: a batch scheduler's preemption, `timeout` or `kill` stops a command as
Ctrl-C does, so what finished is written and a rerun resumes (instead of dying at once,
writing nothing)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable


@contextlib.contextmanager
def on_sigterm(stop: Callable[[object], None]):
    """Within the block, SIGTERM calls `stop(previous)` (`previous`: the handler before, to
    restore or chain); afterwards the previous handler is back. Only the main thread may set
    handlers (the `pags` CLI runs there); elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    previous = signal.SIG_DFL if previous is None else previous  # None: set outside Python
    signal.signal(signal.SIGTERM, lambda *_: stop(previous))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def raise_keyboard_interrupt(_previous) -> None:
    """A `stop` for `on_sigterm`: the command's own Ctrl-C handling takes over."""
    raise KeyboardInterrupt
