"""Per-process plugin state, the keys the controller and xdist workers share, and option values.

Every room that runs or aggregates eval items reads the state of its process
through :func:`get_state`; the plugin (``plugin.py``) only creates it. The
option converters are here because more than one room reads those options
(the plugin for ``--help`` and argument types, the session for ini values).
Light, like the plugin: imports nothing beyond pytest and the quarantine's rules
(:mod:`pytest_promptgate.quarantine`, standard library only) at module level.
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from .quarantine import QuarantineEntry, parse_quarantine, quarantine_of

if TYPE_CHECKING:
    from .collect import Schedule
    from .graders import GraderRegistry
    from .runner import Runner

#: Suite names that select every eval.
EVERY_SUITE = frozenset({"all", "full"})
#: Target calls under way at once when neither --prompt-concurrency nor promptgate_concurrency says.
DEFAULT_CONCURRENCY = 8
#: Attribute of a TestReport carrying the item's CaseResult as plain data.
REPORT_ATTR = "promptgate"
#: Key of ``config.workeroutput`` carrying what a worker collected to the controller.
WORKEROUTPUT_KEY = "promptgate_evals"
#: Key of ``workerinput`` carrying the registry prompts the controller pinned for the session.
PINNED_KEY = "promptgate_pinned_prompts"
#: Key of ``workerinput`` carrying xdist's ``--dist`` mode (xdist resets the option on workers).
DIST_KEY = "promptgate_dist"
#: Values of a ``PROMPTGATE_*`` switch that turn it off (any other value leaves it on).
OFF_WORDS = ("off", "false", "0", "no")
#: Stash key of an item's ``nextitem``: under ``--dist load`` the only item a worker knows it runs next.
NEXT_ITEM = pytest.StashKey["pytest.Item | None"]()

#: Stash key of the process's :class:`State` (``config.stash``), set by the plugin at ``pytest_configure``.
STATE_KEY = pytest.StashKey["State"]()


@dataclass
class State:
    """Per-process plugin state: what is selected, and what collection found."""

    suites: frozenset[str]
    patterns: tuple[str, ...]
    strict: bool
    #: ``--prompt-concurrency``: target calls under way at once in this process.
    concurrency: int = 1
    #: eval files seen by collection, selected or not.
    found: int = 0
    #: suite names listed by the eval files collected, selected or not.
    suites_seen: set[str] = field(default_factory=set)
    #: whether the counts above came from xdist workers (the controller does not collect).
    from_workers: bool = False
    #: how far the xdist workers could look ahead (``collect.Schedule`` modes they used).
    worker_lookahead: set[str] = field(default_factory=set)
    #: eval name → info of every selected eval collected in this process.
    evals: dict[str, dict[str, Any]] = field(default_factory=dict)
    _registry: GraderRegistry | None = None
    #: why the grader registry could not be built (a configuration mistake, reported once).
    registry_error: str | None = None
    _runner: Runner | None = None
    #: The eval items this process runs, in order (made at the first item that looks ahead).
    schedule: Schedule | None = None
    _prices: dict[str, tuple[float, float]] | None = None
    #: Registry prompt reference (``name@alias``, ``name/3``) → the version pinned for the session
    #: (``tracking.resolve_prompt``'s data) or ``{"error": why}``; on workers, from the controller.
    pinned: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Resolves a reference the first time it is used; only the controlling process has one.
    prompt_source: Callable[[str], dict[str, Any]] | None = None
    #: ``--promote NAME``: every reference to prompt NAME, whatever its alias or version, is the candidate.
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: ``promptgate_quarantine``: the cases kept out of pass rates, gates and verdicts until a date.
    quarantine: tuple[QuarantineEntry, ...] = ()

    def selects(self, suites: list[str]) -> bool:
        """Whether an eval listing ``suites`` runs in this session."""
        return bool(self.suites & EVERY_SUITE) or bool(self.suites.intersection(suites))

    def is_eval_file(self, name: str) -> bool:
        """Whether a file name matches ``promptgate_files``."""
        return any(fnmatch.fnmatch(name, pattern) for pattern in self.patterns)

    def registry(self, config: pytest.Config) -> GraderRegistry | None:
        """Grader types: built-ins, the register hook, entry points; built once. ``None`` if that failed."""
        if self._registry is None and self.registry_error is None:
            from .graders import GraderRegistry, load_entry_points, load_from_hook

            try:
                registered = load_from_hook(config.hook.pytest_promptgate_register_graders(config=config))
                self._registry = GraderRegistry.build(registered + load_entry_points())
            except Exception as exc:  # a plugin's mistake: a clash, a wrong return, an entry point that fails to load
                # One configuration mistake, not a problem of each eval file: reported once,
                # as a usage error, when collection finishes (pytest_collection_finish).
                self.registry_error = f"promptgate: {exc}"
        return self._registry

    def registry_prompt(self, ref: str) -> Any:
        """The pinned text of a ``registry:`` reference (a ``schema.PromptText``), or why there is none (a str).

        Each reference is resolved once per session and kept: every item, and every
        xdist worker (through ``workerinput``), sees the same version even when the
        alias moves while the session runs.
        """
        from .schema import PromptText

        key = ref.strip()
        if key not in self.pinned:
            if self.prompt_source is None:
                return (f"registry prompt {key!r} was not resolved by the controlling process before the workers "
                        "started (workers never call MLflow); is the eval file outside the paths given to pytest?")
            self.pinned[key] = self.prompt_source(key)
        entry = self.pinned[key]
        if "error" in entry:
            return entry["error"]
        messages = tuple((role, content) for role, content in entry["messages"]) if entry["messages"] else None
        return PromptText(entry["name"], template=entry["template"], messages=messages,
                          source=f"prompts:/{entry['name']}/{entry['version']}", registry_name=entry["name"],
                          version=entry["version"])

    def quarantined(self, eval_name: str, case_id: str) -> QuarantineEntry | None:
        """The quarantine entry in force today for this case, or None."""
        if not self.quarantine:
            return None
        today = datetime.date.today()
        entry = quarantine_of(self.quarantine, eval_name, case_id, today)
        return entry if entry is not None and entry.active(today) else None

    def runner(self) -> Runner:
        """The process's runner, made on first use."""
        if self._runner is None:
            from .runner import Runner

            self._runner = Runner(self.concurrency)
        return self._runner

    def prices(self, config: pytest.Config) -> dict[str, tuple[float, float]]:
        """Built-in token prices overridden by the ``promptgate_pricing`` ini lines."""
        if self._prices is None:
            from .targets.pricing import DEFAULT_PRICES, parse_ini

            try:
                self._prices = {**DEFAULT_PRICES, **parse_ini(config.getini("promptgate_pricing"))}
            except ValueError as exc:
                raise pytest.UsageError(str(exc)) from None
        return self._prices


def get_state(config: pytest.Config) -> State:
    """The plugin's state for this config."""
    return config.stash[STATE_KEY]



def at_least_one(unit: str) -> Callable[[str], int]:
    """An option type: a whole number of ``unit``, 1 or more."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(f"expected a whole number of {unit}, 1 or more; got {text!r}")
        return value

    return convert


#: ``--prompt-concurrency``, ``--prompt-trend-limit``.
concurrency_option, trend_limit_option = at_least_one("calls"), at_least_one("runs")
candidates_option, rounds_option = at_least_one("candidates"), at_least_one("rounds")


def budget_option(text: str) -> float:
    """``--optimize-budget-usd``: a positive number of US dollars."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of US dollars, such as 0.50; got {text!r}")
    return value


def concurrency(config: pytest.Config) -> int:
    """``--prompt-concurrency``, else the ``promptgate_concurrency`` ini key (a bad value is a usage error)."""
    given = config.getoption("prompt_concurrency")
    if given is not None:
        return int(given)
    try:
        return concurrency_option(str(config.getini("promptgate_concurrency")).strip())
    except argparse.ArgumentTypeError as exc:
        raise pytest.UsageError(f"promptgate_concurrency: {exc}") from None


def quarantine(config: pytest.Config) -> tuple[QuarantineEntry, ...]:
    """The ``promptgate_quarantine`` ini lines as entries; a malformed line is a usage error naming it."""
    try:
        return parse_quarantine(config.getini("promptgate_quarantine"))
    except ValueError as exc:
        raise pytest.UsageError(f"promptgate: ini promptgate_quarantine {exc}") from None


def significance_option(text: str) -> float:
    """``--prompt-significance``: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1 (exclusive), such as 0.05; got {text!r}")
    return value


def correction_option(text: str) -> str:
    """``--prompt-correction``: how p-values are adjusted across the session (holm, bh or none)."""
    from .verdicts import CORRECTIONS

    name = text.strip().lower()
    if name not in CORRECTIONS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(CORRECTIONS)}; got {text!r}")
    return name


def fail_on_option(text: str) -> frozenset[str]:
    """``--prompt-fail-on``: verdict names (see :func:`pytest_promptgate.verdicts.parse_fail_on`)."""
    from .verdicts import parse_fail_on

    try:
        return parse_fail_on(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def switched_off(variable: str) -> bool:
    """Whether the environment variable ``variable`` (a ``PROMPTGATE_*`` switch) holds one of :data:`OFF_WORDS`."""
    return os.environ.get(variable, "").strip().lower() in OFF_WORDS
