"""Cases with a history: flaky across runs, and the quarantine that keeps named cases out of verdicts (DESIGN §5.1).

Pure: plain data in, plain data out; no pytest, no MLflow. Workers use it too:
the quarantine decides how a quarantined case's failure shows in pytest's own
outcome (xfailed), on whichever process ran the item.
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: ``--prompt-flaky-history`` when neither the option nor the ini says: 3 flips in the last 5 runs.
DEFAULT_FLAKY_HISTORY = (3, 5)
#: At most this many runs are read back per (eval, variant): each is one artifact download.
MAX_FLAKY_RUNS = 20

_ENTRY_SHAPE = "expected 'EVAL/CASE YYYY-MM-DD REASON' (fnmatch globs in EVAL and CASE)"


@dataclass(frozen=True)
class QuarantineEntry:
    """One line of ``promptgate_quarantine``: the cases it names, why, and the last day it holds."""

    pattern: str
    until: datetime.date
    reason: str

    def matches(self, eval_name: str, case_id: str) -> bool:
        """Whether case ``case_id`` of eval ``eval_name`` is named (case-sensitive globs, eval and case apart)."""
        eval_glob, case_glob = self.pattern.split("/", 1)
        return fnmatch.fnmatchcase(eval_name, eval_glob) and fnmatch.fnmatchcase(case_id, case_glob)

    def active(self, today: datetime.date) -> bool:
        """In force through its expiry date; the day after, its cases count again."""
        return today <= self.until


def parse_quarantine(lines: Sequence[str]) -> tuple[QuarantineEntry, ...]:
    """The entries of the ``promptgate_quarantine`` ini lines; a ValueError naming the first bad line.

    Each line is ``EVAL/CASE YYYY-MM-DD REASON``: a pattern without spaces, the
    expiry date, then the reason (the rest of the line, required). Lines starting
    with ``#`` are comments.
    """
    entries = []
    for number, line in enumerate(lines, 1):
        if line.lstrip().startswith("#"):
            continue
        words = line.split(None, 2)
        where = f"line {number} ({line.strip()!r})"
        if len(words) < 2 or "/" not in words[0] or not all(words[0].split("/", 1)):
            raise ValueError(f"{where}: {_ENTRY_SHAPE}")
        try:
            until = datetime.date.fromisoformat(words[1])
        except ValueError:
            raise ValueError(f"{where}: {words[1]!r} is not a date YYYY-MM-DD; {_ENTRY_SHAPE}") from None
        if len(words) < 3 or not words[2].strip():
            raise ValueError(f"{where}: no reason; {_ENTRY_SHAPE}")
        entries.append(QuarantineEntry(words[0], until, words[2].strip()))
    return tuple(entries)


def quarantine_of(
    entries: Iterable[QuarantineEntry], eval_name: str, case_id: str, today: datetime.date
) -> QuarantineEntry | None:
    """The entry naming this case: the first one in force, else the first expired one, else None."""
    named = [entry for entry in entries if entry.matches(eval_name, case_id)]
    return next((entry for entry in named if entry.active(today)), named[0] if named else None)


@dataclass(frozen=True)
class QuarantinedCase:
    """A case of this session that the quarantine names, and whether it was left out of its verdict."""

    case_id: str
    #: ``passed``, ``failed`` or ``error``: what it did, reported whether it counts or not.
    outcome: str
    entry: QuarantineEntry
    #: ``held`` (left out of pass rate, gates and verdict), ``expired`` (counted again), or ``counted``:
    #: every case of its eval and variant is quarantined, and a verdict needs at least one case.
    status: str


def hold(
    results: Sequence[Any], entries: Sequence[QuarantineEntry], today: datetime.date
) -> tuple[list[Any], dict[tuple[str, str], tuple[QuarantinedCase, ...]]]:
    """The results that count, and per (eval, variant) its cases the quarantine names.

    ``results`` are :class:`~pytest_promptgate.results.CaseResult`-like (``eval``,
    ``variant``, ``case_id``, ``outcome``). A case named by an entry in force is
    held out; one named only by expired entries counts again, and is listed so
    that the summary can say the quarantine expired.
    """
    if not entries:
        return list(results), {}
    named: dict[tuple[str, str], list[tuple[Any, QuarantineEntry]]] = {}
    totals: dict[tuple[str, str], int] = {}
    for result in results:
        key = (result.eval, result.variant)
        totals[key] = totals.get(key, 0) + 1
        entry = quarantine_of(entries, result.eval, result.case_id, today)
        if entry is not None:
            named.setdefault(key, []).append((result, entry))
    held: set[int] = set()
    listed: dict[tuple[str, str], tuple[QuarantinedCase, ...]] = {}
    for key, found in named.items():
        every = sum(entry.active(today) for _, entry in found) == totals[key]
        cases = []
        for result, entry in found:
            status = "expired" if not entry.active(today) else "counted" if every else "held"
            if status == "held":
                held.add(id(result))
            cases.append(QuarantinedCase(result.case_id, result.outcome, entry, status))
        listed[key] = tuple(cases)
    return [result for result in results if id(result) not in held], listed


def flaky_history_option(text: str) -> tuple[int, ...]:
    """``--prompt-flaky-history``: ``K/M`` as ``(K, M)`` (K flips in the last M runs, 1 <= K < M <= 20), or ``off``
    as ``()``."""
    if text.strip().lower() in ("off", "0", "none"):
        return ()
    flips, _, runs = text.strip().partition("/")
    try:
        k, m = int(flips), int(runs)
    except ValueError:
        k = m = 0
    if not 1 <= k < m <= MAX_FLAKY_RUNS:
        raise argparse.ArgumentTypeError(f"expected K/M, K flips in the last M runs with 1 <= K < M <= {MAX_FLAKY_RUNS} "
                         f"(such as 3/5), or off; got {text!r}")
    return k, m


@dataclass(frozen=True)
class FlakyCase:
    """A case whose outcome flipped ``flips`` times over the last ``runs`` runs it ran in (this one included)."""

    case_id: str
    flips: int
    runs: int


def flaky_across_runs(
    earlier: Sequence[Mapping[str, bool]], now: Mapping[str, bool], min_flips: int, runs: int
) -> tuple[FlakyCase, ...]:
    """The cases of ``now`` that flipped at least ``min_flips`` times over the last ``runs`` runs.

    ``earlier`` holds ``{case_id: passed}`` of earlier complete runs, oldest
    first; ``now`` is this session's. A flip is a run whose outcome differs from
    the case's outcome in the run before it; runs in which the case did not run
    are passed over. Ordered by flips, most first, then by case id.
    """
    window = [*earlier[-(runs - 1):], now] if runs > 1 else [now]
    found = []
    for case_id in now:
        seen = [outcomes[case_id] for outcomes in window if case_id in outcomes]
        flips = sum(a != b for a, b in itertools.pairwise(seen))
        if flips >= min_flips:
            found.append(FlakyCase(case_id, flips, len(seen)))
    return tuple(sorted(found, key=lambda f: (-f.flips, f.case_id)))
