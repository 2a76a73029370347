"""The signals that end a session early: Ctrl-C (SIGINT) and SIGTERM, which CI sends on cancel or timeout.

Python turns only SIGINT into KeyboardInterrupt; SIGTERM kills the process at once, so a
cancelled CI job would keep nothing. While an eval session runs, both raise
KeyboardInterrupt in the main thread, which pytest and the session finish already
handle: the items stop, the cases that finished are logged as a partial run (or spooled).
Each signal is also remembered, so the session ends as interrupted (exit 2, never 0) even
when some code on the way swallowed the KeyboardInterrupt.

Only handlers nobody replaced are taken over (Python's own for SIGINT, the default for
SIGTERM: a harness or plugin that installed its own keeps it), and the previous ones are
put back when the session ends. Runs on the controlling process only.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

#: How a signal is named in the session's summary.
_NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


class Interrupts:
    """The session's handlers of SIGINT and SIGTERM, and the first of them that arrived."""

    def __init__(self) -> None:
        #: ``"Ctrl-C"`` or ``"SIGTERM"`` once one arrived while the handlers were installed.
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Take over SIGINT and SIGTERM where they have their usual handlers (signals go to the main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return
        usual = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
        for signum, handler in usual.items():
            if signal.getsignal(signum) is handler:
                self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        """Put back the handlers :meth:`install` replaced (unless something replaced ours meanwhile)."""
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = self.received or _NAMES.get(signum, signal.Signals(signum).name)
        raise KeyboardInterrupt
