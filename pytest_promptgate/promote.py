"""Commands about what MLflow holds rather than about running evals: promote, rollback, trend (DESIGN §7).

They run on the controlling process, in place of a test session, and reach
MLflow only through :mod:`pytest_promptgate.tracking`. The rules that decide
things are pure functions of plain data; the renderings build text and data and
never write to the terminal themselves; only the command functions do I/O.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pytest

from .places import write_prompt
from .verdicts import PromptChange, format_p, prompt_changes

if TYPE_CHECKING:
    from .tracking import EvalHistory, TrendRun
    from .verdicts import EvalCheck


# =========================================================================== trend (--prompt-trend)

IMPROVING = "improving"
STABLE = "stable"
DEGRADING = "degrading"
#: The direction compares the newest and the oldest of this many complete runs of a variant.
DIRECTION_RUNS = 3
#: A move of no more than this (2 percentage points), or of one case, is stable.
DIRECTION_TOLERANCE = 0.02
#: What ``--prompt-trend`` prints when there is nothing to show.
NO_RUNS = "no eval runs found"
#: Version of the ``--prompt-trend-format json`` layout; bumped when a field changes meaning or goes away.
TREND_JSON_VERSION = 1

# Within this, two pass rates are the same number (0.9 - 0.8 is not quite 0.1 in floating point).
_EPSILON = 1e-9
# Which variant speaks for an eval with several: the one doing worst.
_DIRECTION_RANK = {DEGRADING: 0, STABLE: 1, IMPROVING: 2, None: 3}


def direction(rates: Sequence[float], cases: Sequence[int | None] | None = None) -> str | None:
    """``improving``, ``stable`` or ``degrading`` over the last :data:`DIRECTION_RUNS` pass rates; None with fewer.

    ``rates`` are the pass rates of a variant's complete runs, oldest first, and
    ``cases`` their case counts (same order, None when unknown). The newest of
    the last three is compared with the oldest of them; the one between only
    makes it a three-run window. A move counts when it is larger than
    :data:`DIRECTION_TOLERANCE` (2 pp) and larger than one case of the smaller
    of the two runs (1/20 = 5 pp for a 20-case eval), so that one case flipping
    is not read as a trend.
    """
    if len(rates) < DIRECTION_RUNS:
        return None
    first, last = rates[-DIRECTION_RUNS], rates[-1]
    ends = (cases[-DIRECTION_RUNS], cases[-1]) if cases is not None and len(cases) >= DIRECTION_RUNS else ()
    tolerance = max([DIRECTION_TOLERANCE, *(1 / n for n in ends if n)])
    change = last - first
    if change > tolerance + _EPSILON:
        return IMPROVING
    if change < -tolerance - _EPSILON:
        return DEGRADING
    return STABLE


@dataclass(frozen=True)
class TrendRow:
    """One run in the trend, with the prompt versions that changed since the previous run of its variant."""

    run: TrendRun
    #: None: the variant's first run (nothing to compare with).
    prompts_changed: tuple[PromptChange, ...] | None


@dataclass(frozen=True)
class VariantTrend:
    """Where one variant of an eval stands: its latest complete run and its direction."""

    variant: str
    #: Its newest complete runs, oldest first, at most :data:`DIRECTION_RUNS` (the direction's window).
    compared: tuple[TrendRun, ...]
    direction: str | None

    @property
    def latest(self) -> TrendRun | None:
        """The newest complete run, whose pass rate is the variant's latest; None without one."""
        return self.compared[-1] if self.compared else None


@dataclass(frozen=True)
class EvalTrend:
    """What ``--prompt-trend`` says about one eval."""

    eval: str
    experiment: str
    #: In the order the variants first appear in ``rows``.
    variants: tuple[VariantTrend, ...]
    #: Oldest first.
    rows: tuple[TrendRow, ...]

    @property
    def headline(self) -> VariantTrend:
        """The variant that speaks for the eval: the only one, or the one doing worst.

        Worst is by direction (degrading, stable, improving, unknown), then by the
        lower latest pass rate, so an eval is degrading when any variant of it is.
        """
        return min(self.variants, key=lambda v: (
            _DIRECTION_RANK[v.direction], v.latest.pass_rate if v.latest and v.latest.pass_rate is not None else 2.0,
        ))


def eval_trend(history: EvalHistory) -> EvalTrend:
    """The trend of one eval from the runs :func:`pytest_promptgate.tracking.eval_runs` read (pure)."""
    previous: dict[str, TrendRun] = dict(history.earlier)
    rows = []
    for run in history.runs:
        before = previous.get(run.variant)
        changed = prompt_changes(before.prompt_versions, run.prompt_versions) if before is not None else None
        rows.append(TrendRow(run, changed))
        previous[run.variant] = run
    variants = []
    for variant in dict.fromkeys(run.variant for run in history.runs):
        compared = tuple(run for run in history.complete.get(variant, ()) if run.pass_rate is not None)[-DIRECTION_RUNS:]
        rates = [run.pass_rate or 0.0 for run in compared]  # none is None: filtered above
        variants.append(VariantTrend(variant, compared, direction(rates, [run.total_cases for run in compared])))
    return EvalTrend(history.eval, history.experiment, tuple(variants), tuple(rows))


def trend_table(trends: Sequence[EvalTrend], source: str, limit: int, missing: Sequence[str] = ()) -> list[str]:
    """The terminal rendering: per eval, a line per variant (latest pass rate, direction), then its runs, newest last.

    ``missing`` are evals asked for by name that have no runs (said after the evals that have).
    """
    if not trends:
        return [f"promptgate: {NO_RUNS} in {source}"]
    lines = [f"promptgate trend: {len(trends)} eval(s) in {source}; up to {limit} run(s) per eval, newest last", ""]
    partial = False
    for trend in trends:
        lines += [_variant_line(trend.eval, v) for v in trend.variants]
        lines += _rows_table(trend.rows)
        lines.append("")
        partial = partial or any(not row.run.complete for row in trend.rows)
    if partial:
        lines.append("partial: not every case ran (-k, --lf, deselection, -x, an interrupted session) or a case errored; "
                     "shown, never used for the direction")
    lines.append(f"direction: the newest of the last {DIRECTION_RUNS} complete runs of a variant against the oldest of "
                 f"them; a move of {DIRECTION_TOLERANCE * 100:.0f} pp or less, or of one case, is stable")
    if missing:
        lines.append(f"promptgate: no runs of eval(s) {', '.join(missing)}")
    return lines


def trend_json(trends: Sequence[EvalTrend], source: str, limit: int, missing: Sequence[str] = ()) -> dict[str, Any]:
    """The same as data (``--prompt-trend-format json``): rates as fractions, dates in ISO 8601 UTC."""
    evals = []
    for trend in trends:
        headline = trend.headline
        evals.append({
            "name": trend.eval,
            "experiment": trend.experiment,
            **_variant_json(headline, key="variant"),
            "variants": [_variant_json(v) for v in trend.variants],
            "runs": [_row_json(row) for row in trend.rows],
        })
    return {
        "version": TREND_JSON_VERSION,
        "tracking_uri": source,
        "limit": limit,
        "direction_runs": DIRECTION_RUNS,
        "direction_tolerance": DIRECTION_TOLERANCE,
        "evals": evals,
        "evals_without_runs": list(missing),
    }


def trend(config: pytest.Config) -> int:
    """``pytest --prompt-trend``: print the pass-rate history of the evals in MLflow; runs no tests.

    Exit 0 when the history was read (also when it is empty), 1 when MLflow could
    not be read; the reason is one line on stderr.
    """
    from _pytest.config import create_terminal_writer  # the terminal reporter does not exist yet

    from .state import EVERY_SUITE
    from .session import TrackingSettings
    from .tracking import Tracker, display_uri, eval_runs, tracking_failure

    if config.getoption("prompt_no_tracking"):
        raise pytest.UsageError("promptgate: --prompt-trend reads the runs in MLflow; "
                                "it cannot be combined with --prompt-no-tracking")
    settings = TrackingSettings.from_config(config)
    suites = _names(config.getoption("prompt_suite"))
    evals = _names(config.getoption("prompt_trend_eval"))
    limit = config.getoption("prompt_trend_limit")
    tracker = Tracker(settings.uri, experiment_prefix=settings.experiment_prefix, read_only=True)
    try:
        histories = eval_runs(
            tracker, sorted(evals) if evals else None, () if suites & EVERY_SUITE else sorted(suites),
            limit=limit, complete_runs=DIRECTION_RUNS,
        )
    except Exception as exc:  # a TrackingError; anything else in its words (tracking_failure), never a traceback
        create_terminal_writer(config, sys.stderr).line(
            f"promptgate: --prompt-trend: {tracking_failure(exc, settings.uri)}", red=True)
        return 1
    trends = [eval_trend(history) for history in histories.values()]
    source = display_uri(tracker.uri)
    missing = sorted(evals - set(histories))
    write = create_terminal_writer(config).line
    if config.getoption("prompt_trend_format") == "json":
        write(json.dumps(trend_json(trends, source, limit, missing), indent=2, ensure_ascii=False))
    else:
        for line in trend_table(trends, source, limit, missing):
            write(line)
    return 0


def _names(values: Sequence[str]) -> frozenset[str]:
    """Names from a repeatable option whose values may also be separated by commas."""
    return frozenset(name.strip() for value in values for name in value.split(",") if name.strip())


def _variant_line(eval_name: str, v: VariantTrend) -> str:
    label = f"{eval_name} [{v.variant}]"
    latest = v.latest
    if latest is None:
        return f"{label}: no complete run yet"
    line = f"{label}: pass rate {_rate(latest.pass_rate)}, "
    if v.direction is None:
        return line + f"direction unknown: {len(v.compared)} complete run(s), {DIRECTION_RUNS} needed"
    rates = " -> ".join(_rate(run.pass_rate) for run in v.compared)
    return line + f"{v.direction} ({rates}, last {DIRECTION_RUNS} complete runs)"


def _rows_table(rows: Sequence[TrendRow]) -> list[str]:
    from tabulate import tabulate

    headers = ["run id", "date (UTC)", "variant", "cases", "pass rate", "avg score", "verdict", "prompts changed"]
    cells = [[
        row.run.run_id,
        _date(row.run.start_time).strftime("%Y-%m-%d %H:%M:%S"),
        row.run.variant,
        f"{_number(row.run.total_cases)}{'' if row.run.complete else ' partial'}",
        _rate(row.run.pass_rate),
        "-" if row.run.average_score is None else f"{row.run.average_score:.2f}",
        row.run.verdict or "-",
        _changes(row.prompts_changed),
    ] for row in rows]
    # Headers go in as a row, as in the session summary: tabulate pads given headers by MIN_PADDING.
    rule = ["-" * max(len(row[i]) for row in [headers, *cells]) for i in range(len(headers))]
    align = ["left", "left", "left", "right", "right", "right", "left", "left"]
    return tabulate([headers, rule, *cells], tablefmt="plain", disable_numparse=True, colalign=align).splitlines()


def _changes(changes: tuple[PromptChange, ...] | None) -> str:
    if changes is None:
        return "first run"
    return ", ".join(f"{c.name} {c.before or '(none)'} -> {c.after or '(none)'}" for c in changes)


def _variant_json(v: VariantTrend, key: str = "name") -> dict[str, Any]:
    latest = v.latest
    return {
        key: v.variant,
        "latest_pass_rate": latest.pass_rate if latest else None,
        "latest_run_id": latest.run_id if latest else None,
        "direction": v.direction,
        "direction_run_ids": [run.run_id for run in v.compared],
    }


def _row_json(row: TrendRow) -> dict[str, Any]:
    run = row.run
    return {
        "run_id": run.run_id,
        "date": _date(run.start_time).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "variant": run.variant,
        "complete": run.complete,
        "cases": run.total_cases,
        "pass_rate": run.pass_rate,
        "average_score": run.average_score,
        "verdict": run.verdict,
        "prompt_versions": run.prompt_versions,
        "first_run": row.prompts_changed is None,
        "prompts_changed": [dataclasses.asdict(change) for change in row.prompts_changed or ()],
    }


def _date(milliseconds: int) -> datetime:
    return datetime.fromtimestamp(milliseconds / 1000, tz=timezone.utc)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _number(value: int | None) -> str:
    return "-" if value is None else str(value)


# =========================================================================== promote (--promote)


@dataclass(frozen=True)
class PromoteRequest:
    """``--promote NAME`` and its companions, read and checked once."""

    name: str
    from_alias: str | None
    version: int | None
    to_alias: str
    actor: str
    force: bool

    @property
    def source(self) -> str:
        """Where the candidate comes from, as the user wrote it."""
        return f"{self.name}/{self.version}" if self.version is not None else f"{self.name}@{self.from_alias}"

    @classmethod
    def from_config(cls, config: pytest.Config) -> PromoteRequest | None:
        name = config.getoption("promote")
        if not name:
            return None
        version = config.getoption("promote_version")
        return cls(
            name=name,
            from_alias=None if version is not None else config.getoption("promote_from"),
            version=version,
            to_alias=config.getoption("promote_to"),
            actor=actor(config),
            force=config.getoption("promote_force"),
        )


def actor(config: pytest.Config, env: Mapping[str, str] | None = None) -> str:
    """``--promote-actor``, else the CI's actor (GitHub, GitLab, Buildkite), else the local user."""
    env = os.environ if env is None else env
    given = config.getoption("promote_actor")
    if given:
        return given
    for name in ("GITHUB_ACTOR", "GITLAB_USER_LOGIN", "BUILDKITE_BUILD_CREATOR", "CIRCLE_USERNAME"):
        if env.get(name):
            return env[name]
    try:
        return getpass.getuser()
    except Exception:  # no user database entry (some containers)
        return "unknown"


class Promotion:
    """``--promote NAME``: run the evals that use NAME with the candidate pinned, then move the alias or refuse.

    Registered on the controlling process only. The items of evals that do not use
    NAME are deselected in every process (:func:`deselect_for_promotion`).
    """

    def __init__(self, config: pytest.Config, request: PromoteRequest) -> None:
        self.config = config
        self.request = request
        self.candidate: dict[str, Any] | None = None
        self.current: int | None = None
        self.blocked: list[str] = []
        self.promoted: bool | None = None
        self.messages: list[tuple[str, dict[str, bool]]] = []
        self.rows: list[list[Any]] = []

    def _session(self) -> Any:
        return self.config.pluginmanager.get_plugin("promptgate-session")

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Resolve the candidate and pin it for every eval that uses the prompt, before anything runs."""
        from .tracking import alias_version, resolve_prompt, tracking_failure

        r = self.request
        evals = self._session()
        if not evals.settings.enabled:
            raise pytest.UsageError(f"promptgate: --promote {r.name} needs MLflow tracking, which is switched off "
                                    "(--prompt-no-tracking, ini promptgate_tracking or PROMPTGATE_TRACKING)")
        tracker = evals._open()
        if tracker is None:
            raise pytest.UsageError(f"promptgate: --promote {r.name}: {evals._down}")
        try:
            self.candidate = resolve_prompt(tracker, r.name, alias=r.from_alias, version=r.version)
            self.current = alias_version(tracker, r.name, r.to_alias)
        except Exception as exc:  # a TrackingError; anything else in its words (tracking_failure)
            raise pytest.UsageError(f"promptgate: --promote {r.name}: {tracking_failure(exc, tracker.uri)}") from None
        version = self.candidate["version"]
        if self.current == version:
            pytest.exit(f"promptgate: {r.name} version {version} is already at alias {r.to_alias!r}: nothing to promote",
                        returncode=pytest.ExitCode.OK)
        evals.state.overrides[r.name] = self.candidate

    def will_decide(self, exitstatus: int) -> bool:
        """Whether the session's finish ends in a decision, which then writes the reports (they tell it)."""
        return self.candidate is not None and exitstatus != pytest.ExitCode.INTERRUPTED

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """After the runs are logged (EvalSession): decide, then move the alias and record the audit, or refuse;
        then the session writes its reports, with the decision."""
        if not self.will_decide(exitstatus):
            return
        try:
            self._decide(session)
        finally:
            self._session().finish_reports(session, self.decision())

    def decision(self) -> dict[str, Any] | None:
        """What the promotion did and why, as data for the reports; None before it decided."""
        if self.promoted is None or self.candidate is None:
            return None
        r = self.request
        return {
            "prompt": r.name, "candidate_version": self.candidate["version"], "source": r.source,
            "alias": r.to_alias, "alias_version_before": self.current, "promoted": self.promoted,
            "forced": bool(self.blocked) and self.promoted, "actor": r.actor, "blocked_because": list(self.blocked),
            "problems": [message for message, _ in self.messages],
        }

    def _decide(self, session: pytest.Session) -> None:
        evals = self._session()
        r = self.request
        using = [c for c in evals.checks if r.name in (evals.state.evals.get(c.summary.eval) or {}).get("registry_prompts", [])]
        self.rows = [_gate_row(c) for c in using]
        self.blocked = promotion_blocks(r.name, using, evals.settings.fail_on, evals.bad_eval_files)
        if self.blocked and not r.force:
            self.promoted = False
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            return
        self.promoted = self._promote(evals, [c.run_id for c in using if c.run_id is not None])
        session.exitstatus = pytest.ExitCode.OK if self.promoted else pytest.ExitCode.TESTS_FAILED

    def _promote(self, evals: Any, run_ids: list[str]) -> bool:
        from .tracking import record_audit, set_alias, tracking_failure

        r, candidate = self.request, self.candidate
        assert candidate is not None
        tracker = evals._open()
        if tracker is None:
            self.messages.append((f"promptgate: cannot promote: {evals._down}", {"red": True}))
            return False
        event = {
            "action": "promote", "prompt_name": r.name, "from_version": self.current,
            "to_version": candidate["version"], "alias": r.to_alias, "timestamp": _now(), "actor": r.actor,
            "forced": bool(self.blocked), "runs": run_ids,
        }
        try:
            read_back = set_alias(tracker, r.name, r.to_alias, candidate["version"])
            record_audit(tracker, event, run_ids)
        except Exception as exc:  # a TrackingError; anything else in its words (tracking_failure)
            self.messages.append((f"promptgate: promotion failed: {tracking_failure(exc, tracker.uri)}", {"red": True}))
            return False
        if read_back != candidate["version"]:
            self.messages.append((f"promptgate: alias {r.to_alias!r} reads back as version {read_back}, "
                                  f"not {candidate['version']}", {"red": True}))
            return False
        return True

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """The gate table and the decision, after the eval summary: the last word of the session."""
        if self.promoted is None:
            return
        from .report import promotion_lines

        r, candidate = self.request, self.candidate
        assert candidate is not None
        terminalreporter.write_sep("=", f"promote {r.name}")
        for line, markup in promotion_lines(
            r.name, candidate["version"], self.current, r.to_alias, self.rows, self.blocked, self.promoted, r.force, r.actor,
        ) + self.messages:
            terminalreporter.write_line(line, **markup)


def promotion_blocks(name: str, checks: Sequence[EvalCheck], fail_on: frozenset[str], bad_eval_files: int) -> list[str]:
    """Why promoting ``name`` on the evidence of ``checks`` (the evals that use it) is refused; [] when it is allowed."""
    from .verdicts import fails_session

    blocks = []
    if bad_eval_files:
        blocks.append(f"{bad_eval_files} invalid eval file(s): an eval that uses {name} may not have run")
    if not checks:
        blocks.append(f"no selected eval uses prompt {name!r}")
    for c in checks:
        if c.verdict is not None and fails_session(c.verdict, fail_on):
            blocks.append(f"{c.label}: {c.verdict.kind.value}: {c.verdict.reason}")
        for gate in c.tripped("fail") + c.tripped("block_promote"):
            blocks.append(f"{c.label}: gate ({gate.on_fail}) tripped: {gate.reason}")
        if c.partial:
            blocks.append(f"{c.label}: only {c.summary.cases} of {c.dataset_size} cases ran")
        if c.run_id is None:
            blocks.append(f"{c.label}: its run is not in MLflow, so the promotion would have no recorded evidence")
    return blocks


def _gate_row(c: EvalCheck) -> list[Any]:
    tripped = [g for g in c.gates if not g.passed]
    return [
        c.summary.eval, c.summary.variant, f"{c.summary.pass_rate:.1%}",
        f"{c.threshold:.0%}" if c.threshold is not None else "?",
        c.verdict.kind.value if c.verdict else "?",
        ", ".join(f"{g.metric} ({g.on_fail})" for g in tripped) if tripped else ("ok" if c.gates else "-"),
    ]


def deselect_for_promotion(config: pytest.Config, items: list[pytest.Item], name: str) -> None:
    """Keep only the eval items whose eval uses registry prompt ``name`` (every process runs this)."""
    keep, drop = [], []
    for item in items:
        plan = getattr(item, "plan", None)
        uses = plan is not None and any(
            p.registry_name == name for v in plan.loaded.variants for p in v.prompts.values()
        )
        (keep if uses else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# =========================================================================== rollback (--rollback)


def rollback(config: pytest.Config) -> int:
    """``--rollback NAME --rollback-reason TEXT``: move the alias back to where the last promotion found it. No tests run."""
    from _pytest.config import create_terminal_writer

    from .session import TrackingSettings
    from .tracking import Tracker, alias_version, audit_history, display_uri, record_audit, set_alias, tracking_failure

    write = create_terminal_writer(config).line
    name, alias = config.getoption("rollback"), config.getoption("rollback_alias")
    reason = (config.getoption("rollback_reason") or "").strip()
    if not reason:
        write(f"promptgate: --rollback {name} needs --rollback-reason TEXT: say why, it is recorded with the rollback",
              red=True)
        return 1
    settings = TrackingSettings.from_config(config)
    tracker = Tracker(settings.uri, experiment_prefix=settings.experiment_prefix)
    try:
        tracker.open()
        history = audit_history(tracker, name)
        current = alias_version(tracker, name, alias)
        target = last_promotion(history, alias)
        if target is None or target.get("from_version") is None:
            write(f"promptgate: cannot roll back {name}@{alias}: no previous version in the promotion history "
                  f"(at {display_uri(tracker.uri)})", red=True)
            return 1
        previous = int(target["from_version"])
        read_back = set_alias(tracker, name, alias, previous)
        record_audit(tracker, {
            "action": "rollback", "prompt_name": name, "from_version": current, "to_version": previous,
            "alias": alias, "timestamp": _now(), "actor": actor(config), "reason": reason, "reverts": target["key"],
        })
    except Exception as exc:  # a TrackingError; anything else in its words (tracking_failure)
        write(f"promptgate: rollback of {name}@{alias} failed: {tracking_failure(exc, tracker.uri)}", red=True)
        return 1
    if read_back != previous:
        write(f"promptgate: alias {alias!r} reads back as version {read_back}, not {previous}", red=True)
        return 1
    note = "" if current == target.get("to_version") else (
        f" (the alias pointed at version {current}, not at version {target.get('to_version')} of the last promotion)")
    write(f"promptgate: rolled back {name}@{alias}: version {current} -> {previous}{note}; reason: {reason}", green=True)
    return 0


def last_promotion(history: Sequence[Mapping[str, Any]], alias: str) -> Mapping[str, Any] | None:
    """The latest promotion to ``alias`` that no rollback has undone yet (history oldest first), or None.

    Promotions stack up; each rollback takes off the one it reverted, so two
    rollbacks in a row walk back two promotions.
    """
    stack: list[Mapping[str, Any]] = []
    for event in history:
        if event.get("alias") != alias:
            continue
        if event.get("action") == "promote":
            stack.append(event)
        elif event.get("action") == "rollback":
            stack = [e for e in stack if e.get("key") != event.get("reverts")]
    return stack[-1] if stack else None


# =========================================================================== best variant (--prompt-register-best, --prompt-apply-best)


class BestVariantActions:
    """After an A/B session: register the best variant's prompt in the registry, or write it back to its source.

    Registered on the controlling process when ``--prompt-register-best`` or
    ``--prompt-apply-best`` is given. A winner whose lead is not significant is
    reported as such and acted on only with ``--promote-force``.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.register = config.getoption("prompt_register_best")
        self.apply = config.getoption("prompt_apply_best")
        self.dry_run = config.getoption("prompt_dry_run")
        self.force = config.getoption("promote_force")
        self.lines: list[tuple[str, dict[str, bool]]] = []
        self.refused = False

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        evals = self.config.pluginmanager.get_plugin("promptgate-session")
        if evals is None or evals.outcome is None or exitstatus == pytest.ExitCode.INTERRUPTED:
            return
        if not evals.best:
            self.lines.append(("promptgate: no eval ran several variants: no best variant to act on", {"yellow": True}))
        for best in evals.best:
            self._act(evals, best)
        if self.refused and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _act(self, evals: Any, best: Any) -> None:
        info = evals.state.evals.get(best.eval) or {}
        replaced = (info.get("variant_overrides") or {}).get(best.variant) or []
        label = f"best variant of {best.eval}: {best.variant}"
        if best.decided_by == "nothing":
            self.lines.append((f"{label}: tied with {best.runner_up}; nothing to act on", {}))
            return
        if not replaced:
            self.lines.append((f"{label} uses the eval's own prompts: nothing to register or apply", {}))
            return
        if not best.significant and not self.force:
            self.lines.append((f"{label}: its lead over {best.runner_up} is not significant "
                               f"(decided by {best.decided_by}, {format_p(best.p_value)}); "
                               "--promote-force acts on it anyway", {"red": True}))
            self.refused = True
            return
        run = (info.get("runs") or {}).get(best.variant) or {}
        for name in replaced:
            source = (info.get("prompt_sources") or {}).get(name, {})
            text = (run.get("prompts") or {}).get(name, "")
            messages = (run.get("prompt_messages") or {}).get(name)
            if self.register:
                self._register(evals, best, name, source, text, messages)
            if self.apply:
                self._apply(best, name, source, text, messages)

    def _register(self, evals: Any, best: Any, name: str, source: dict[str, Any], text: str, messages: Any) -> None:
        from .tracking import register_prompt_version, tracking_failure

        registry_name = source.get("registry_name") or f"{best.eval}.{name}"
        tracker = evals._open()
        if tracker is None:
            self.lines.append((f"promptgate: cannot register {registry_name}: {evals._down}", {"red": True}))
            self.refused = True
            return
        runs = [c.run_id for c in evals.checks if c.summary.eval == best.eval and c.run_id
                and c.summary.variant in (best.variant, best.runner_up)]
        tags = {
            "promptgate.best.eval": best.eval, "promptgate.best.variant": best.variant,
            "promptgate.best.runner_up": best.runner_up, "promptgate.best.decided_by": best.decided_by,
            "promptgate.best.p_value": f"{best.p_value:.6g}", "promptgate.best.significant": str(best.significant).lower(),
            "promptgate.best.forced": str(not best.significant).lower(), "promptgate.best.runs": ",".join(runs),
        }
        template = [{"role": role, "content": content} for role, content in messages] if messages else text
        try:
            version = register_prompt_version(
                tracker, registry_name, template, alias="candidate", tags=tags,
                message=f"best variant {best.variant} of eval {best.eval} (pytest-promptgate)",
            )
        except Exception as exc:  # a TrackingError; anything else in its words (tracking_failure)
            self.lines.append((f"promptgate: cannot register {registry_name}: {tracking_failure(exc, tracker.uri)}",
                               {"red": True}))
            self.refused = True
            return
        self.lines.append((f"promptgate: registered {registry_name} version {version} (alias 'candidate') from the "
                           f"best variant {best.variant} of {best.eval}; promote it with pytest --promote {registry_name}",
                           {"green": True}))

    def _apply(self, best: Any, name: str, source: dict[str, Any], text: str, messages: Any) -> None:
        kind = source.get("kind")
        if kind == "registry":
            self.lines.append((f"{best.eval}: prompt {name!r} comes from the registry; --prompt-register-best "
                               "registers the best variant's text instead", {"yellow": True}))
            return
        if kind not in ("file", "inline") or messages:
            self.lines.append((f"{best.eval}: prompt {name!r} is a chat prompt; it is not written back "
                               "(--prompt-register-best registers it)", {"yellow": True}))
            return
        lines, ok = write_prompt(source, text, self.dry_run, owner=best.eval, name=name,
                                 held=f"the best variant's prompt {name!r}",
                                 wrote=f"the best variant {best.variant}'s prompt {name!r}")
        self.lines += lines
        self.refused = self.refused or not ok

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.lines:
            return
        terminalreporter.write_sep("=", "best variant")
        for line, markup in self.lines:
            terminalreporter.write_line(line, **markup)

