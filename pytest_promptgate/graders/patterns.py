"""Regular expressions matched against outputs, in bounded time.

An output is untrusted text: a pattern such as ``^(a+)+$`` backtracks
catastrophically on ``aaaa…!`` and Python's ``re`` never gives up (34 ``a`` and
a ``!`` hung a session, issue 12). Matching goes through the ``regex`` package
instead: its syntax is a superset of ``re``'s (``VERSION0``, the default, keeps
``re``'s behaviour), and its matches take a ``timeout``. A match that runs out of
time raises :class:`~pytest_promptgate.graders.base.CannotGrade`: the case is an
error case saying so, not a pass or a fail.

``regex`` is imported on first use, so the plugin's start-up stays light.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from .base import CannotGrade

#: Seconds one match may take unless the grader says otherwise.
TIMEOUT = 1.0


class PatternError(ValueError):
    """A pattern that does not compile."""


@lru_cache(maxsize=512)
def compiled(pattern: str, *, ignore_case: bool = False, multiline: bool = False, dotall: bool = False) -> Any:
    """``pattern`` compiled by ``regex`` with these flags; raises :class:`PatternError` with ``regex``'s reason.

    Kept (the last 512): a grader asks for its pattern once per case, and ``regex``'s own cache still
    costs a tenth of a millisecond a look-up (benchmarks/run.py, b1).
    """
    import regex

    flags = (regex.IGNORECASE if ignore_case else 0) | (regex.MULTILINE if multiline else 0) | (
        regex.DOTALL if dotall else 0)
    try:
        return regex.compile(pattern, flags)
    except regex.error as exc:
        raise PatternError(str(exc)) from None


def search(pattern: Any, text: str, timeout: float = TIMEOUT, what: str = "regex") -> Any:
    """``pattern.search(text)`` (a pattern from :func:`compiled`, or text), given up after ``timeout`` seconds."""
    if isinstance(pattern, str):
        pattern = compiled(pattern)
    try:
        return pattern.search(text, timeout=timeout)
    except TimeoutError:
        shown = pattern.pattern if len(pattern.pattern) <= 60 else pattern.pattern[:59] + "…"
        raise CannotGrade(
            f"{what} {shown!r} gave up after {timeout:g} s: the pattern backtracks catastrophically on this output; "
            "simplify it"
        ) from None
