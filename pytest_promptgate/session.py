"""The controlling process's view of an eval session (the process that is not an xdist worker).

Receives each item's result from its report, learns each eval's settings from
collection (or from the workers, under xdist), and at the end compares each
(eval, variant) with its baseline, logs it to MLflow (or keeps it on disk when
MLflow is down), decides the exit status (DESIGN §3, §5) and renders the summary.
Only this process talks to MLflow, and only once a session has eval results.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .interrupts import Interrupts
from .quarantine import DEFAULT_FLAKY_HISTORY, flaky_across_runs, flaky_history_option, hold
from .state import REPORT_ATTR, State, correction_option, significance_option, switched_off
from .results import CaseResult, summarize
from .verdicts import (
    BestVariant, EvalCheck, FlippedCases, RateInput, SessionOutcome, best_variants, check_evals, correct_session,
    fails_session, flipped_cases, judge, parse_fail_on, prompt_changes,
)

if TYPE_CHECKING:
    from .quarantine import QuarantinedCase
    from .tracking import Journal
    from .tracking import Baseline, Tracker, TrackingStatus
    from .tracking import TrackingAgent


@dataclass(frozen=True)
class TrackingSettings:
    """The options and ini keys of tracking, baselines and verdicts, read and checked once."""

    enabled: bool
    uri: str
    experiment_prefix: str
    required: bool
    baseline_branch: str | None
    pinned: tuple[str, ...]
    significance: float | None
    fail_on: frozenset[str]
    #: When to open MLflow in a tracking agent: ``auto``, ``on`` or ``off`` (``tracking.agent_mode``).
    agent: str = "auto"
    #: ``--prompt-flaky-history``: (K flips, M runs), or () when off.
    flaky_history: tuple[int, ...] = DEFAULT_FLAKY_HISTORY
    #: How the session's p-values are adjusted together (``--prompt-correction``).
    correction: str = "holm"

    @classmethod
    def from_config(cls, config: pytest.Config) -> TrackingSettings:
        """Read from options, ini and environment; a bad ini value or a contradiction is a usage error."""
        from .tracking import anchor_sqlite, resolve_tracking_uri

        enabled = (
            not config.getoption("prompt_no_tracking")
            and config.getini("promptgate_tracking")
            and not switched_off("PROMPTGATE_TRACKING")
        )
        significance = config.getoption("prompt_significance")
        if significance is None and config.getini("promptgate_significance").strip():
            significance = _from_ini(config, "promptgate_significance", significance_option)
        fail_on = config.getoption("prompt_fail_on")
        if fail_on is None:
            fail_on = _from_ini(config, "promptgate_fail_on", parse_fail_on)
        flaky_history = config.getoption("prompt_flaky_history")
        if flaky_history is None:
            flaky_history = DEFAULT_FLAKY_HISTORY
            if config.getini("promptgate_flaky_history").strip():
                flaky_history = _from_ini(config, "promptgate_flaky_history", flaky_history_option)
        correction = config.getoption("prompt_correction") or _from_ini(config, "promptgate_correction", correction_option)
        required = config.getoption("prompt_require_tracking")
        pinned = tuple(dict.fromkeys(config.getoption("prompt_baseline")))
        if not enabled and (required or pinned):
            what = "--prompt-require-tracking" if required else "--prompt-baseline"
            raise pytest.UsageError(f"promptgate: {what} needs tracking, which is switched off "
                                    "(--prompt-no-tracking, ini promptgate_tracking or PROMPTGATE_TRACKING)")
        from .tracking import agent_mode

        try:
            agent = agent_mode()
        except ValueError as exc:
            raise pytest.UsageError(f"promptgate: {exc}") from None
        ini_uri = config.getini("promptgate_tracking_uri").strip()
        if ini_uri and config.inipath is not None:  # a relative SQLite path in the ini file is relative to that file
            ini_uri = anchor_sqlite(ini_uri, config.inipath.parent)
        uri = resolve_tracking_uri(
            config.getoption("prompt_tracking_uri"), ini_uri, os.environ, cwd=config.invocation_params.dir,
        )
        # A relative SQLite path is relative to where pytest was run, whichever process opens it, whenever.
        uri = anchor_sqlite(uri, config.invocation_params.dir)
        return cls(
            enabled=bool(enabled),
            uri=uri,
            experiment_prefix=config.getini("promptgate_experiment_prefix").strip() or "promptgate",
            required=required,
            baseline_branch=config.getoption("prompt_baseline_branch") or config.getini("promptgate_baseline_branch").strip() or None,
            pinned=pinned,
            significance=significance,
            fail_on=fail_on,
            agent=agent,
            flaky_history=flaky_history,
            correction=correction,
        )


def _from_ini(config: pytest.Config, name: str, parse: Any) -> Any:
    """An ini value parsed as its option would be; a bad one is a usage error naming the key."""
    text = config.getini(name).strip()
    try:
        return parse(text)
    except Exception as exc:  # argparse.ArgumentTypeError or ValueError, whose message says what is expected
        raise pytest.UsageError(f"promptgate: ini {name}: {exc}") from None


class EvalSession:
    """Collects results on the controller and turns them into verdicts, MLflow runs, an exit status and a summary."""

    def __init__(self, config: pytest.Config, state: State) -> None:
        self.config = config
        self.state = state
        self.settings = TrackingSettings.from_config(config)
        self.session_id = uuid.uuid4().hex
        self.started_ms = int(time.time() * 1000)
        #: The results as objects, during the session finish only (before and after it, ``_case_data`` is kept).
        self.results: list[CaseResult] = []
        self._case_data: list[dict[str, Any]] = []  # each result as its report carried it (CaseResult.to_dict)
        self.ordinary_failures = 0
        self.bad_eval_files = 0
        self.checks: list[EvalCheck] = []
        self.best: list[BestVariant] = []
        #: ``--prompt-optimize``'s rounds, once they ran (:class:`pytest_promptgate.improve.Optimization`).
        self.optimization: Any = None
        #: The flipped cases against each baseline, read only when a report shows them (:meth:`_shows_flips`).
        self.flipped: list[FlippedCases] = []
        self._runs: dict[tuple[str, str], dict[str, tuple[int, int]]] = {}  # (runs passed, runs) per case, at the finish
        self.outcome: SessionOutcome | None = None
        self.tracking: TrackingStatus | None = None
        self.report_problems: list[str] = []
        #: What --prompt-label-template and --prompt-export wrote, a line each for the terminal.
        self.written: list[str] = []
        #: What people's labels say, and how far the model judges agree with them (``improve.Findings``).
        self.findings: Any = None
        #: For the HTML report: ``{eval: EvalHistory}`` of its recent runs, and what ``--promote`` decided.
        self.history: dict[str, Any] = {}
        self.promotion: dict[str, Any] | None = None
        self._tracker: Tracker | None = None  # opened in this process
        self._agent: TrackingAgent | None = None  # or in the tracking agent, while the items run
        self._agent_started = False  # one agent per session at most
        self._connected = False  # the store answered (in the agent or here)
        self.tracking_interrupted = False
        self._down: str | None = None  # why MLflow cannot be reached; once set, it is not called again
        self._pins: dict[str, Baseline] = {}
        self._tags: dict[str, str] | None = None  # git and CI tags, read once
        self._every_outcome: dict[tuple[str, str], dict[str, bool]] = {}  # quarantined cases too, for the history
        self._read_outcomes: dict[str, dict[str, bool]] = {}  # run id -> its cases' outcomes, read for its baseline
        #: Eval items selected to run (None until collection says), for "interrupted after N of M cases".
        self.eval_items: int | None = None
        self._journal: Journal | None = None  # opened at the first case when tracking is on
        self._recovered = 0  # runs of killed sessions' journals spooled at the start
        self._journal_problems: list[str] = []
        #: How --junitxml shows the failed cases a threshold tolerates (``fail`` or ``skip``), and which failed.
        self.junit_tolerated = _junit_tolerated(config)
        self._failed_cases: dict[str, tuple[str, str]] = {}  # node id -> (eval, variant)
        if getattr(config.option, "xmlpath", None):  # --junitxml, and pytest's junitxml plugin is loaded
            config.pluginmanager.register(JUnitCompletion(self), "promptgate-junit")
        self.interrupts = Interrupts()  # SIGTERM raises KeyboardInterrupt, as Ctrl-C does, until unconfigure
        self.interrupts.install()
        state.prompt_source = self.resolve_prompt

    # ------------------------------------------------------------------ before the session

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Check up front what the user asked to rely on: a pinned baseline, or tracking itself.

        Runs before xdist starts its workers and before any eval costs money.
        Otherwise MLflow is not touched (nor imported) until the session has results.
        """
        if session.config.pluginmanager.has_plugin("dsession"):  # xdist: workers collect, and never call MLflow
            self._pin_registry_prompts()
        settings = self.settings
        if settings.enabled:
            self._recover_journals()
        if not (settings.pinned or settings.required):
            return
        from .tracking import TrackingError, pinned_baseline

        tracker = self._open()
        if tracker is None:
            if settings.required:
                raise pytest.UsageError(f"promptgate: --prompt-require-tracking: {self._down}")
            return
        for run_id in settings.pinned:
            try:
                baseline = self._call(lambda run_id=run_id: pinned_baseline(tracker, run_id))
            except TrackingError as exc:  # BaselineError, or the store refused to say
                raise pytest.UsageError(f"promptgate: --prompt-baseline: {exc}") from None
            if baseline is None:
                return
            if baseline.eval in self._pins:
                raise pytest.UsageError(
                    f"promptgate: --prompt-baseline: runs {self._pins[baseline.eval].run_id} and {run_id} are both "
                    f"runs of eval {baseline.eval!r}; pin one run per eval"
                )
            self._pins[baseline.eval] = baseline

    def _recover_journals(self) -> None:
        """Spool the cases of killed sessions (their journals) as partial runs; this session's finish sends them."""
        from .tracking import recover
        from .tracking import spool_dir

        recovered = recover(self.config.rootpath, spool_dir(self.config.rootpath))
        self._recovered = recovered.runs
        self._journal_problems += recovered.problems

    def _pin_registry_prompts(self) -> None:
        """Resolve the registry prompts of the selected eval files now, before xdist starts the workers."""
        from .collect import eval_files
        from .schema import registry_refs

        for path in eval_files(self.config, self.state):
            suites, refs = registry_refs(path)
            if self.state.selects(suites):
                for ref in sorted(refs):
                    self.state.registry_prompt(ref)

    def resolve_prompt(self, ref: str) -> dict[str, Any]:
        """A registry reference → the version to pin (``tracking.resolve_prompt``'s data), or ``{"error": why}``."""
        from .schema import parse_registry_ref
        from .tracking import TrackingError, resolve_prompt

        parsed = parse_registry_ref(ref)
        if parsed is None:
            return {"error": f"not a registry reference: {ref!r}"}
        name, alias, version = parsed
        if name in self.state.overrides:  # --promote NAME: the candidate, wherever the eval points
            return self.state.overrides[name]
        if not self.settings.enabled:
            return {"error": f"registry prompt {ref!r} needs MLflow tracking, which is switched off "
                             "(--prompt-no-tracking, ini promptgate_tracking or PROMPTGATE_TRACKING)"}
        tracker = self._open()
        if tracker is None:
            return {"error": f"registry prompt {ref!r} cannot be resolved: {self._down}"}
        try:
            found = self._call(lambda: resolve_prompt(tracker, name, alias=alias, version=version))
        except TrackingError as exc:
            return {"error": str(exc)}
        if found is None:
            return {"error": f"registry prompt {ref!r} cannot be resolved: {self._down}"}
        return found

    # ------------------------------------------------------------------ during the session

    def pytest_collect_file(self, file_path: Path, parent: pytest.Collector) -> None:
        """Collection meets an eval file: start the tracking agent, which imports MLflow while pytest reads it."""
        if not self._agent_started and self.state.is_eval_file(file_path.name):
            self._start_agent()

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Eval items will run: the tracking agent opens the store while they do. None will: it is stopped."""
        if self.state.evals:  # else no selected eval file was collected (and collect.py is not even imported)
            from .collect import EvalItem

            self.eval_items = sum(isinstance(item, EvalItem) for item in session.items)
        if self._agent is None:
            return
        if self.eval_items:
            self._agent.go()
            return
        self._stop_agent()  # it has only imported modules, and is killed

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """Under xdist, the controller learns here (from the first worker) that eval items will run, and how many."""
        if self.eval_items is None:  # every worker collects the same items
            self.eval_items = sum(self.state.is_eval_file(nodeid.split("::", 1)[0].rsplit("/", 1)[-1]) for nodeid in ids)
        if not self._agent_started and any(
            self.state.is_eval_file(nodeid.split("::", 1)[0].rsplit("/", 1)[-1]) for nodeid in ids
        ):  # every worker reports its whole collection: scanned until the agent is started
            self._start_agent()
            if self._agent is not None:
                self._agent.go()

    def _start_agent(self) -> None:
        """Start the tracking agent (:mod:`pytest_promptgate.tracking.agent`), once per session, when eval items may run.

        Not when MLflow is open here already or tracking is off; with ``auto``, not when MLflow is
        imported in this process already (opening it here costs little then), nor when the session
        registers the best variant (which opens it here). A session that opens MLflow here meanwhile
        (a registry prompt) stops the agent then.
        """
        if self._agent_started:
            return
        self._agent_started = True
        settings = self.settings
        if self._tracker is not None or self._down is not None or self._connected:
            return
        if not settings.enabled or settings.agent == "off" or self.config.option.collectonly:
            return
        if settings.agent == "auto" and ("mlflow" in sys.modules or self.config.getoption("prompt_register_best")):
            return
        from .tracking import AgentGone, TrackingAgent

        try:
            self._agent = TrackingAgent(settings.uri, settings.experiment_prefix)
        except (OSError, AgentGone):  # no agent: MLflow is opened here at the end, as without one
            self._agent = None

    def _stop_agent(self) -> None:
        if self._agent is not None:
            self._agent.close()
            self._agent = None

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if not report.failed:
            return
        if self.state.is_eval_file(report.nodeid.rsplit("/", 1)[-1].split("::")[0]):
            self.bad_eval_files += 1
        else:  # a broken test module (seen when --continue-on-collection-errors lets the session run)
            self.ordinary_failures += 1

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Any:
        """An invalid eval file is a collection error for that file only: the other files still run.

        pytest's own loop stops the session on any collection error
        (``_pytest.main.pytest_runtestloop``); invalid eval files are kept out of
        that count while it looks, and put back after, so the exit status still
        reports them.
        """
        hidden = self.bad_eval_files if session.testsfailed == self.bad_eval_files else 0
        session.testsfailed -= hidden
        try:
            return (yield)
        finally:
            session.testsfailed += hidden

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = getattr(report, REPORT_ATTR, None)
        if data is not None:
            self._case_data.append(data)  # pytest keeps the report, and so its data, to the end anyway
            if report.failed:
                self._failed_cases[report.nodeid] = (data["eval"], data["variant"])
            self._journal_case(data)
        elif report.failed:
            self.ordinary_failures += 1

    def _journal_case(self, data: dict[str, Any]) -> None:
        """Keep a finished case on disk at once (:mod:`journal`): a killed session's next session logs it."""
        if self._journal is None:
            if not self.settings.enabled or self._journal_problems:
                return
            from .tracking import Journal, journal_dir
            from .tracking import display_uri

            header = {"pid": os.getpid(), "started_ms": self.started_ms,
                      "tracking_uri": display_uri(self.settings.uri), "experiment_prefix": self.settings.experiment_prefix}
            try:
                self._journal = Journal(journal_dir(self.config.rootpath), self.session_id, header)
            except OSError as exc:
                self._journal_problems.append(f"no journal of this session's cases ({exc.strerror or exc}): "
                                              "a killed session would lose them")
                return
        self._journal.case(data, self.state.evals.get(data["eval"]))

    def _close_journal(self) -> None:
        """Remove the journal once every run is logged or spooled; kept (for the next session) when one was lost."""
        if self._journal is not None:
            if self._journal.problem:
                self._journal_problems.append(self._journal.problem)
            self._journal.close(keep=self.tracking is None or self.tracking.lost > 0)
            self._journal = None

    # ------------------------------------------------------------------ after the session

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if not self._case_data and not self.bad_eval_files:
            self._stop_agent()
            return
        # Result objects for the finish only: 10 000 items make some 70 000 objects, which every garbage
        # collection of the session (and of its teardown) would otherwise visit.
        self.results = [CaseResult.from_dict(data) for data in self._case_data]
        try:
            self._finish(session, exitstatus)
        except KeyboardInterrupt:  # a second Ctrl-C or SIGTERM outside the calls into MLflow
            self.interrupts.received = self.interrupts.received or "Ctrl-C"
            session.exitstatus = pytest.ExitCode.INTERRUPTED
            self.outcome = None
            self.report_problems = [f"promptgate: session INTERRUPTED again while it finished, after {self._ran()}: "
                                    f"its cases stay in {self._journal_place()}; the next session logs them"]
        finally:
            self.results = []
            self._stop_agent()

    def _finish(self, session: pytest.Session, exitstatus: int) -> None:
        evals = self.state.evals
        counted, quarantined = hold(self.results, self.state.quarantine, datetime.date.today())
        # Rows in a stable order (eval name, declared variant order), whatever order workers reported in.
        summaries = sorted(summarize(counted), key=lambda s: (s.eval, _position(evals.get(s.eval), s.variant)))
        stopped_early = bool(session.shouldfail or session.shouldstop)
        signalled = exitstatus == pytest.ExitCode.INTERRUPTED or self.interrupts.received is not None
        outcomes = _outcomes(counted)
        self._every_outcome = _outcomes(self.results)
        self._runs = _run_counts(counted)
        checks = [_with_quarantine(check, quarantined) for check in check_evals(summaries, evals)]
        # The agent stays up for the HTML report's trend and for logging the page; the finish stops it in any case.
        self.checks = self._judge_and_log(checks, outcomes, stopped_early or signalled)
        self.history = self._recent_runs()
        self._close_journal()
        self.best = best_variants(self.checks, outcomes, self.settings.significance)
        from .improve import label_findings

        self.findings = label_findings(self._case_data)
        optimization = self.config.pluginmanager.get_plugin("promptgate-optimize")
        if optimization is not None and not (stopped_early or signalled):
            optimization.run(self, session)  # its candidates run now, after the items (docs/optimize.md)
            self.optimization = optimization
        fail_on = self.settings.fail_on
        self.outcome = SessionOutcome(
            failing_verdicts=sum(c.verdict is not None and fails_session(c.verdict, fail_on) for c in self.checks),
            failed_gates=sum(len(c.tripped("fail")) for c in self.checks),
            ordinary_failures=self.ordinary_failures,
            bad_eval_files=self.bad_eval_files,
            failed_cases=sum(r.outcome == "failed" for r in counted),
            error_cases=sum(r.outcome == "error" for r in counted),
            strict=self.state.strict,
            stopped_early=stopped_early,
            fail_on=fail_on,
            tracking_required=self._down if self.settings.required and self._down else None,
            lost_runs=self.tracking.lost if self.tracking is not None else 0,
            interrupted=self._interruption(signalled),
            cases_ran=len(self.results),
            cases_selected=self.eval_items,
            logged_runs=self.tracking.logged if self.tracking is not None else 0,
            spooled_runs=self.tracking.spooled if self.tracking is not None else 0,
            journal=self._journal_place() if self.tracking is not None and self.tracking.lost else None,
            quarantined_cases=len(self.results) - len(counted),
        )
        if exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) and not self.outcome.stopped_early:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED if self.outcome.failed else pytest.ExitCode.OK
        if self.optimization is not None and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
            session.exitstatus = self.optimization.exit_status()  # the current prompt failing is why one optimizes
        if self.outcome.interrupted:
            session.exitstatus = pytest.ExitCode.INTERRUPTED
        promotion = self.config.pluginmanager.get_plugin("promptgate-promote")
        if promotion is None or not promotion.will_decide(exitstatus):
            self.finish_reports(session)
        self._stop_agent()

    def finish_reports(self, session: pytest.Session, promotion: dict[str, Any] | None = None) -> None:
        """Write the reports, then log the HTML page with the session's runs.

        Called by the session's finish, or, with ``--promote``, by the promotion once it
        decided (``promotion``: what it did and why), so the reports tell that too.
        """
        if self.outcome is None:  # interrupted again while finishing: nothing to report
            return
        self.promotion = promotion
        self.report_problems = self._write_reports()
        if self.interrupts.received is not None and self.outcome.interrupted is None:  # while writing the reports
            self.outcome = dataclasses.replace(self.outcome, interrupted=self.interrupts.received)
            session.exitstatus = pytest.ExitCode.INTERRUPTED
        if self.report_problems and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED  # a CI step waiting for the report would get nothing
        if not self.report_problems and self.outcome.interrupted is None:
            self._log_html_report()

    def _recent_runs(self) -> dict[str, Any]:
        """The recent runs of the session's evals (``{eval: EvalHistory}``) for the HTML report's trend, read
        after this session's runs are logged; {} without an HTML report or without MLflow."""
        from .tracking import TrackingError

        if self._html_report_path() is None or not self.checks or not self._connected:
            return {}
        if self.interrupts.received is not None or self.tracking_interrupted:  # the user wants out, not a chart
            return {}
        names = sorted({check.summary.eval for check in self.checks})
        limit = self.config.getoption("prompt_trend_limit")
        try:
            return self._call(lambda: self._via("eval_runs", names, limit=limit, complete_runs=1)) or {}
        except TrackingError as exc:
            self._tracking_note(f"the HTML report shows no trend: {exc}")
            return {}

    def _log_html_report(self) -> None:
        """Log the HTML page as an artifact of each of the session's runs; say which runs it could not reach."""
        from .tracking import TrackingError

        path = self._html_report_path()
        if path is None or self.tracking is None or self.tracking.state == "off":
            return
        logged = [check.run_id for check in self.checks if check.run_id is not None]
        kept = len(self.checks) - len(logged)
        if kept:
            self._tracking_note(f"the HTML report is not logged with the {kept} run(s) kept on disk "
                                f"(MLflow was not reached); it is at {path}")
        if not logged:
            return
        try:
            if self._call(lambda: self._via("log_report", str(path), logged)) is None:
                self._tracking_note(f"the HTML report is not logged with the session's runs: {self._down}; "
                                    f"it is at {path}")
        except TrackingError as exc:
            self._tracking_note(f"the HTML report is not logged with the session's runs: {exc}; it is at {path}")

    def _tracking_note(self, line: str) -> None:
        """Add ``line`` to what the summary says about tracking."""
        if self.tracking is not None:
            self.tracking.problems.append(line)

    def _interruption(self, signalled: bool) -> str | None:
        """What interrupted the session (``Ctrl-C``, ``SIGTERM``), or None when nothing did."""
        if not (signalled or self.tracking_interrupted):
            return None
        return self.interrupts.received or "Ctrl-C"

    def _ran(self) -> str:
        selected = f" of {self.eval_items}" if self.eval_items is not None else ""
        return f"{len(self._case_data)}{selected} case(s)"

    def _journal_place(self) -> str:
        from .tracking import journal_dir

        return str(journal_dir(self.config.rootpath))

    def _judge_and_log(
        self, checks: list[EvalCheck], outcomes: dict[tuple[str, str], dict[str, bool]], interrupted: bool
    ) -> list[EvalCheck]:
        """Compare each check with its baseline, give its verdict, and log it as an MLflow run (or spool it)."""
        settings = self.settings
        if not checks:  # only invalid eval files: nothing to compare or log
            return checks
        if not settings.enabled:
            from .tracking import TrackingStatus

            self.tracking = TrackingStatus(state="off")
            return [judge(c, None, None, settings.significance, no_baseline="tracking off",
                          case_runs=self._case_runs(c)) for c in checks]

        from .tracking import TrackingError, TrackingStatus, display_uri, rejected_spool, spool_dir, spooled

        spool = spool_dir(self.config.rootpath)
        status = self.tracking = TrackingStatus(state="logged", uri=display_uri(settings.uri), spool=str(spool),
                                                recovered=self._recovered)
        status.problems += self._journal_problems
        if self._down is not None:  # found down before the session (--prompt-baseline): say so here too
            status.state = "unavailable"
            status.problems.append(self._down)
        if self._connect() and spooled(spool):
            refused = len(rejected_spool(spool))
            try:
                sent = self._call(lambda: self._via("send_spooled", spool))
            except TrackingError as exc:  # the spool itself failed (the store's failures are the calls' own)
                status.problems.append(str(exc))
                sent = None
            status.sent_earlier = len(sent or ())
            status.problems += getattr(sent, "problems", [])
            refused = len(rejected_spool(spool)) - refused
            if refused:
                status.problems.append(f"{refused} run(s) kept by earlier sessions were refused by MLflow and moved to "
                                       f"{spool / 'rejected'}, each with its reason beside it")
        judged = [self._flaky(self._judge(check, outcomes)) for check in checks]
        judged = correct_session(judged, settings.correction, settings.significance)
        logged = [self._log(check, interrupted) for check in judged]
        status.waiting = len(spooled(spool))
        return logged

    def _judge(self, check: EvalCheck, outcomes: dict[tuple[str, str], dict[str, bool]]) -> EvalCheck:
        from .tracking import TrackingError

        s, settings = check.summary, self.settings
        case_runs = self._case_runs(check)
        baseline = self._pins.get(s.eval)
        if baseline is None and self._connect():
            try:
                baseline = self._call(lambda: self._via(
                    "find_baseline", s.eval, s.variant, branch=settings.baseline_branch, exclude_session=self.session_id,
                    exclude_verdicts=sorted({"REGRESSION", *(name.upper() for name in settings.fail_on)}),
                ))
            except TrackingError as exc:
                return self._problem(judge(check, None, None, settings.significance, case_runs=case_runs,
                                           no_baseline="baseline unavailable"), str(exc))
        if baseline is None:
            why = "baseline unavailable" if self._down else None  # the summary says why, once
            return judge(check, None, None, settings.significance, no_baseline=why, case_runs=case_runs)
        cases = self._baseline_cases(check, baseline)
        before = {case: passed for case, (passed, _, _) in cases.items()}
        self._read_outcomes[baseline.run_id] = before
        counts = case_counts(baseline, before)
        if counts is None:
            why = f"baseline run {baseline.run_id} has no case counts"
            return judge(check, None, None, settings.significance, no_baseline=why, case_runs=case_runs)
        now = outcomes.get((s.eval, s.variant), {})
        shared = [case for case in now if case in before]
        paired = [(before[case], now[case]) for case in shared]
        runs = self._runs.get((s.eval, s.variant), {})
        paired_runs = [(cases[case][1:], runs[case]) for case in shared]
        judged = judge(check, counts, paired, settings.significance, paired_runs=paired_runs, case_runs=case_runs)
        return dataclasses.replace(
            judged, baseline_run_id=baseline.run_id,
            prompts_changed=prompt_changes(baseline.prompt_versions, self._prompt_versions(s.eval, s.variant)),
        )

    def _flaky(self, check: EvalCheck) -> EvalCheck:
        """``check`` with its cases flaky across runs: one bounded read of its recent complete runs (the
        baseline's results, read already, are not read again).

        Not when ``--prompt-flaky-history off`` or MLflow cannot be reached (the summary says so already).
        """
        from .tracking import TrackingError

        s, history = check.summary, self.settings.flaky_history
        if not history or not self._connect():
            return check
        min_flips, runs = history
        baseline = check.baseline_run_id
        known = {baseline: self._read_outcomes[baseline]} if baseline in self._read_outcomes else {}
        try:
            earlier = self._call(lambda: self._via("recent_outcomes", s.eval, s.variant, runs - 1, known=known)) or []
        except TrackingError as exc:
            return self._problem(check, str(exc))
        flaky = flaky_across_runs(earlier, self._every_outcome.get((s.eval, s.variant), {}), min_flips, runs)
        return dataclasses.replace(check, flaky_across_runs=flaky)

    def _baseline_cases(self, check: EvalCheck, baseline: Baseline) -> dict[str, tuple[bool, int, int]]:
        """``{case_id: (passed, runs passed, runs)}`` of the baseline (``tracking.case_runs``); when a report shows
        the flipped cases, they are kept too (:attr:`flipped`), from the same download of its results table."""
        from .tracking import RESULTS_FILE, TrackingError, case_runs, result_rows

        s = check.summary
        name = "run_cases" if self._shows_flips() else "baseline_cases"
        try:
            found = self._call(lambda: self._via(name, baseline.run_id))
            problem = self._down or f"baseline run {baseline.run_id} has no results table ({RESULTS_FILE})"
        except TrackingError as exc:
            self._problem(check, str(exc))
            found, problem = None, str(exc)
        if name == "baseline_cases":
            return found or {}
        now = result_rows([data for data in self._case_data if data["eval"] == s.eval and data["variant"] == s.variant])
        cases = None if found is None else tuple(flipped_cases(found, now))
        self.flipped.append(FlippedCases(eval=s.eval, variant=s.variant, before_run_id=baseline.run_id, after_run_id=None,
                                         cases=cases, problem=None if cases is not None else problem))
        return case_runs(found or ())

    def _shows_flips(self) -> bool:
        """Whether a report that shows the flipped cases is asked for: the HTML report, or the JSON report."""
        return bool(self.config.getoption("prompt_report")) or self._html_report_path() is not None

    def _case_runs(self, check: EvalCheck) -> list[tuple[int, int]]:
        """(runs passed, runs) of each case of ``check`` this session, for a repeated eval's clustered interval."""
        return list(self._runs.get((check.summary.eval, check.summary.variant), {}).values())

    def _log(self, check: EvalCheck, interrupted: bool) -> EvalCheck:
        """Log ``check`` as one MLflow run; when MLflow is down or refuses it, keep it in the spool."""
        from .tracking import TrackingError, results_json, spool, spool_dir

        record = self._record(check, interrupted)
        status = self.tracking
        assert status is not None
        if self._connect():
            try:  # the results table as text: the agent gets megabytes of text, not thousands of dicts
                run_id = self._call(lambda: self._via(
                    "log_eval_run", dataclasses.replace(record, cases=[]), results_json(record.cases),
                ))
            except TrackingError as exc:  # refused (a deleted experiment, a value MLflow rejects)
                self._problem(check, str(exc))
                run_id = None
            if run_id is not None:
                status.logged += 1
                experiment = f"{self.settings.experiment_prefix}/{check.summary.eval}"
                if experiment not in status.experiments:
                    status.experiments.append(experiment)
                return dataclasses.replace(check, run_id=run_id)
        try:
            spool(spool_dir(self.config.rootpath), record)
            status.spooled += 1
        except Exception as exc:  # OSError mostly; whatever it is, the run is lost, and the session says so
            status.lost += 1
            why = f"{exc.strerror}: {exc.filename}" if isinstance(exc, OSError) and exc.strerror else repr(exc)
            status.problems.append(f"could not keep the run of {check.label} on disk: {why}: the run is lost")
        status.state = "unavailable"
        return check

    def _record(self, check: EvalCheck, interrupted: bool) -> Any:
        from .tracking import TrackedRun, ci_tags, display_uri, git_tags, summary_metrics

        from .tracking import record_id, run_params

        s = check.summary
        info = self.state.evals.get(s.eval) or {}
        run = (info.get("runs") or {}).get(s.variant, {})
        if self._tags is None:
            self._tags = {**git_tags(self.config.rootpath), **ci_tags(os.environ)}
        selected = self.state.suites
        suites = [name for name in info.get("suites", []) if name in selected or selected & {"all", "full"}]
        complete = not interrupted and not check.partial and s.errors == 0 and check.threshold is not None
        tags = dict(self._tags)
        blocking = check.tripped("block_promote")
        # Read by --promote: a tripped block_promote gate refuses promoting the prompts this run used.
        tags["promptgate.block_promote"] = "true" if blocking else "false"
        tags["promptgate.eval_suites"] = ",".join(info.get("suites", []))  # every suite the eval belongs to
        tripped = [gate for gate in check.gates if not gate.passed]
        if tripped:
            tags["promptgate.gates_tripped"] = "; ".join(f"{gate.on_fail}: {gate.reason}" for gate in tripped)
        return TrackedRun(
            eval=s.eval, variant=s.variant, suite=",".join(suites), session=self.session_id,
            params=run_params(info, s.variant), metrics=summary_metrics(s), tags=tags,
            cases=[data for data in self._case_data if data["eval"] == s.eval and data["variant"] == s.variant],
            prompts=dict(run.get("prompts") or {}), complete=complete,
            verdict=check.verdict.kind.value if check.verdict else None, baseline_run_id=check.baseline_run_id,
            start_time_ms=self.started_ms, end_time_ms=int(time.time() * 1000),
            tracking_uri=display_uri(self.settings.uri), experiment_prefix=self.settings.experiment_prefix,
            linked_prompts=list(run.get("linked_prompts") or []), record_id=record_id(self.session_id, s.eval, s.variant),
            **_comparison_fields(check),
        )

    def _prompt_versions(self, eval_name: str, variant: str) -> dict[str, str]:
        run = ((self.state.evals.get(eval_name) or {}).get("runs") or {}).get(variant, {})
        return dict(run.get("prompt_versions") or {})

    # ------------------------------------------------------------------ MLflow, carefully

    def _open(self) -> Tracker | None:
        """The tracker of this process, opened on first use; None when MLflow cannot be reached (``_down`` says why)."""
        if self._tracker is None and self._down is None:
            self._call(self._local, opening=True)
        return self._tracker

    def _local(self) -> Tracker:
        """The tracker of this process, opened on first use; raises TrackingError as ``Tracker.open`` does."""
        if self._tracker is None:
            from .tracking import Tracker

            self._stop_agent()  # MLflow is needed here (a registry prompt, a promotion): no use opening it twice
            tracker = Tracker(self.settings.uri, experiment_prefix=self.settings.experiment_prefix)
            self._tracker = tracker.open()
        return self._tracker

    def _connect(self) -> bool:
        """Whether MLflow answers: asked once, of the tracking agent when it runs, else by opening it here."""
        if not self._connected and self._down is None:
            self._connected = self._call(lambda: self._via("open"), opening=True) is not None
        return self._connected and self._down is None

    def _via(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """``tracking.{name}(tracker, *args, **kwargs)``, in the tracking agent when it runs, else here.

        ``open`` opens the store (and returns True). When the agent has died, the call is
        made here instead (MLflow is opened here), except logging a run: the agent may have
        logged it just before it died, so that run is kept on disk rather than logged twice.
        """
        from . import tracking
        from .tracking import AgentGone

        if self._agent is not None:
            try:
                result = self._agent.call(name, *args, **kwargs)
                return True if name == "open" else result
            except AgentGone as exc:
                self._stop_agent()
                if name == "log_eval_run":
                    raise tracking.TrackingUnavailable(f"{exc}, while logging a run") from None
                if self.tracking is not None:
                    self.tracking.problems.append(f"{exc}; MLflow was opened in pytest's process instead")
        tracker = self._local()
        return True if name == "open" else getattr(tracking, name)(tracker, *args, **kwargs)

    def _call(self, action: Any, *, opening: bool = False) -> Any:
        """``action()``; None once MLflow is unreachable, which is remembered so it is not asked again.

        The safety net of every call into MLflow (here or in the agent): whatever ``action``
        raises comes out as a :class:`~pytest_promptgate.tracking.TrackingError` for the
        caller to report (:func:`~pytest_promptgate.tracking.tracking_failure`), or, when it
        means the store cannot be used (:class:`TrackingUnavailable`, or any failure while
        ``opening`` it), as None with the reason in ``_down``: the session then compares
        with no baseline and keeps its runs on disk.

        Ctrl-C while the session finish talks to MLflow counts as unreachable: the runs not
        logged yet are kept on disk, and the session ends as interrupted (``tracking_interrupted``).
        """
        from .tracking import TrackingUnavailable, tracking_failure

        if self._down is not None:
            return None
        try:
            return action()
        except Exception as exc:
            failure = tracking_failure(exc, self.settings.uri)
            if not (opening or isinstance(failure, TrackingUnavailable)):
                if failure is exc:
                    raise
                raise failure from exc
            self._down = str(failure)
        except KeyboardInterrupt:
            if self.tracking is None:  # before the session: nothing to keep yet
                raise
            self.tracking_interrupted = True
            self._down = "interrupted (Ctrl-C) while talking to MLflow"
            if self._agent is not None:
                self._agent.abandon()  # it finishes its call; a run it logs and we keep is not sent twice
                self._agent = None
        if self.tracking is not None:
            self.tracking.state = "unavailable"
            self.tracking.problems.append(self._down)
        return None

    def _problem(self, check: EvalCheck, message: str) -> EvalCheck:
        if self.tracking is not None:
            self.tracking.problems.append(f"{check.label}: {message}")
        return check

    # ------------------------------------------------------------------ output

    def _write_reports(self) -> list[str]:
        """Write ``--prompt-report`` (JSON), ``--prompt-report-md`` (also to ``$GITHUB_STEP_SUMMARY``) and
        ``--prompt-report-html``."""
        from .report import html_report, json_report, markdown_report

        config = self.config
        assert self.outcome is not None
        writes: list[tuple[Path, str, str]] = []
        if config.getoption("prompt_report"):
            data = json_report(self.checks, self.outcome, self._case_data, self.best, self.tracking, self.findings,
                               self.flipped, self.history, self.promotion)
            if self.optimization is not None:
                from .improve import optimization_json

                data["optimization"] = optimization_json(self.optimization)
            body = json.dumps(data, indent=2, ensure_ascii=False)
            writes.append((config.invocation_params.dir / config.getoption("prompt_report"), body + "\n", "w"))
        if config.getoption("prompt_report_md"):
            text = markdown_report(self.checks, self.outcome, self.best, self.tracking, self.findings)
            if self.optimization is not None:
                from .improve import optimization_markdown

                text += "\n" + optimization_markdown(self.optimization)
            writes.append((config.invocation_params.dir / config.getoption("prompt_report_md"), text, "w"))
            if os.environ.get("GITHUB_STEP_SUMMARY"):
                writes.append((Path(os.environ["GITHUB_STEP_SUMMARY"]), text, "a"))
        html_path = self._html_report_path()
        if html_path is not None:
            extra = []
            if self.optimization is not None:
                from .improve import optimization_html

                extra.append(optimization_html(self.optimization))
            page = html_report(self.checks, self.outcome, self._case_data, self.best, self.tracking, self.findings,
                               self.flipped, self.history, self.promotion, extra)
            writes.append((html_path, page, "w"))
        problems = self._write_datasets()
        for path, text, mode in writes:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, mode, encoding="utf-8") as file:
                    file.write(text)
            except OSError as exc:
                problems.append(f"promptgate: could not write the report {path}: {exc.strerror or exc}")
            except KeyboardInterrupt:  # the runs are kept already; the session ends as interrupted
                self.interrupts.received = self.interrupts.received or "Ctrl-C"
                problems.append(f"promptgate: interrupted ({self.interrupts.received}) while writing the report {path}: "
                                "it and any report after it are not written")
                break
        return problems

    def _write_datasets(self) -> list[str]:
        """Write ``--prompt-label-template DIR`` and ``--prompt-export PATH`` (:mod:`pytest_promptgate.improve`);
        what could not be written, a line each."""
        from .improve import export_rows, write_export, write_label_templates

        config, problems = self.config, []
        template_dir, export = config.getoption("prompt_label_template"), config.getoption("prompt_export")
        if template_dir:
            directory = config.invocation_params.dir / template_dir
            try:
                written = write_label_templates(directory, self._case_data)
            except OSError as exc:
                problems.append(f"promptgate: could not write the labels template in {directory}: {exc.strerror or exc}")
            else:
                self.written += [f"promptgate: {count} output(s) to label in {path}" for path, count in written]
                if not written:
                    self.written.append(f"promptgate: no new failed or flaky output to label in {directory}")
        if export:
            path = config.invocation_params.dir / export
            run_ids = {(c.summary.eval, c.summary.variant): c.run_id for c in self.checks}
            try:
                count = write_export(path, export_rows(self._case_data, self.state.evals, run_ids, self.session_id))
            except OSError as exc:
                problems.append(f"promptgate: could not write the export {path}: {exc.strerror or exc}")
            else:
                self.written.append(f"promptgate: exported {count} output(s) to {path}")
        return problems

    def _html_report_path(self) -> Path | None:
        """``--prompt-report-html`` (relative to where pytest started), else ini ``promptgate_report_html``
        (relative to the ini file, like the other ini paths), else None."""
        config = self.config
        option, ini = config.getoption("prompt_report_html"), (config.getini("promptgate_report_html") or "").strip()
        if option:
            return Path(config.invocation_params.dir, option)
        if ini:
            return Path(config.inipath.parent if config.inipath else config.rootpath, ini)
        return None

    def complete_junit(self, session: pytest.Session) -> None:
        """Add the verdicts to the JUnit XML pytest wrote (:mod:`pytest_promptgate.report.junit`)."""
        from _pytest.junitxml import xml_key

        from .report import complete_junit

        xml = self.config.stash.get(xml_key, None)
        if xml is None or self.outcome is None:  # no JUnit XML, or no eval ran, or interrupted while finishing
            return
        path = Path(xml.logfile)
        try:
            text = complete_junit(path.read_text(encoding="utf-8"), self.checks, self.outcome,
                                  session_failed=session.exitstatus != pytest.ExitCode.OK,
                                  tolerated=self._tolerated_cases(xml.prefix))
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            self.report_problems.append(f"promptgate: could not add the verdicts to the JUnit XML {path}: "
                                        f"{exc.strerror or exc}")
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _tolerated_cases(self, prefix: str | None) -> dict[tuple[str, str], str]:
        """JUnit (classname, name) -> skip message, of the failed cases to report as tolerated (none unless ``skip``)."""
        from _pytest.junitxml import mangle_test_address

        from .report import failing, tolerated_reason

        outcome = self.outcome
        assert outcome is not None
        if self.junit_tolerated != "skip" or outcome.strict or outcome.stopped_early or outcome.interrupted:
            return {}
        passing = {(c.summary.eval, c.summary.variant): c for c in self.checks if not failing(c, outcome.fail_on)}
        tolerated = {}
        for nodeid, key in self._failed_cases.items():
            if key in passing:
                names = mangle_test_address(nodeid)  # as pytest's junitxml names the case
                classname = ".".join(([prefix] if prefix else []) + names[:-1])
                tolerated[(classname, names[-1])] = tolerated_reason(passing[key])
        return tolerated

    def pytest_unconfigure(self) -> None:
        """Stop the agent and keep the journal of a session that ended before its finish; put the signal
        handlers back."""
        self._stop_agent()  # a session that ended before its finish (an internal error, an exit in a hook)
        if self._journal is not None:
            self._journal.close(keep=True)
        self.interrupts.restore()

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.outcome is not None:
            from .report import terminal_lines

            terminalreporter.write_sep("=", "promptgate")
            # A width only when the terminal's is known: a log that is not a terminal (CI) keeps the full table.
            known = terminalreporter.isatty or os.environ.get("COLUMNS", "").strip()
            width = terminalreporter.config.get_terminal_writer().fullwidth if known else None
            for line in terminal_lines(self.checks, self.outcome, self.best, self.tracking, width=width,
                                       findings=self.findings):
                terminalreporter.write_line(line)
        for line in self.written:
            terminalreporter.write_line(line)
        for problem in self.report_problems:  # also the one line of a finish that was interrupted
            terminalreporter.write_line(problem, red=True)


class JUnitCompletion:
    """Completes the JUnit XML once pytest's junitxml plugin has written it. Registered only with --junitxml.

    ``LogXML.pytest_sessionfinish`` (``_pytest/junitxml.py``) writes the file; this
    implementation runs after it (``trylast``), and after the session's verdicts.
    """

    def __init__(self, eval_session: EvalSession) -> None:
        self.eval_session = eval_session

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.eval_session.complete_junit(session)


def _junit_tolerated(config: pytest.Config) -> str:
    """``--prompt-junit-tolerated``, else the ini key; a bad ini value is a usage error."""
    from .report import TOLERATED_CHOICES

    chosen = config.getoption("prompt_junit_tolerated") or config.getini("promptgate_junit_tolerated").strip() or "fail"
    if chosen not in TOLERATED_CHOICES:
        raise pytest.UsageError(f"promptgate: ini promptgate_junit_tolerated: {chosen!r} is not one of "
                                f"{', '.join(TOLERATED_CHOICES)}")
    return chosen


def sync_spool(config: pytest.Config) -> int:
    """``pytest --prompt-sync``: send the spooled runs now; 0 when none is left waiting, else 1."""
    from .tracking import (
        Tracker, display_uri, rejected_spool, same_store, send_spooled, spool_dir, spooled, tracking_failure,
    )

    from _pytest.config import create_terminal_writer  # the terminal reporter does not exist yet

    if config.getoption("prompt_no_tracking"):
        raise pytest.UsageError("promptgate: --prompt-sync sends runs to MLflow; it cannot be combined with --prompt-no-tracking")
    settings = TrackingSettings.from_config(config)
    write = create_terminal_writer(config).line
    directory = spool_dir(config.rootpath)
    _recover_for_sync(config, directory, write)
    waiting = _waiting_uris(spooled(directory))
    if not waiting:
        write(f"promptgate: no runs waiting in {directory}")
        return 0
    here = display_uri(settings.uri)
    if not any(uri == "?" or same_store(uri, here) for uri in waiting):  # nothing for this store: do not create it
        for uri, count in sorted(waiting.items()):
            write(f"promptgate: {count} run(s) wait for MLflow at {uri}, not at {here}; "
                  "choose the store with --prompt-tracking-uri", yellow=True)
        return 1
    tracker = Tracker(settings.uri, experiment_prefix=settings.experiment_prefix)
    try:
        sent = send_spooled(tracker.open(), directory)
    except Exception as exc:  # TrackingError; anything else in its words too (tracking_failure): never a traceback
        write(f"promptgate: {tracking_failure(exc, settings.uri)}", red=True)
        write(f"promptgate: {len(spooled(directory))} run(s) still waiting in {directory}")
        return 1
    write(f"promptgate: sent {len(sent)} run(s) to MLflow at {display_uri(settings.uri)}")
    for problem in sent.problems:
        write(f"promptgate: {problem}", red=True)
    left = _waiting_uris(spooled(directory))
    for uri, count in sorted(left.items()):
        if uri == "?":  # unreadable: said in the problems above
            continue
        shown = uri if "***" not in uri else f"'{uri}' (with its password in place of ***)"
        write(f"promptgate: {count} run(s) wait for MLflow at {uri}; send them with "
              f"pytest --prompt-sync --prompt-tracking-uri {shown}", yellow=True)
    rejected = rejected_spool(directory)
    if rejected:
        write(f"promptgate: {len(rejected)} run(s) refused by MLflow are kept in {directory / 'rejected'} "
              "with the reason beside each", red=True)
    return 1 if left or rejected or sent.problems else 0


def _recover_for_sync(config: pytest.Config, directory: Path, write: Any) -> None:
    """Spool the cases of killed sessions (their journals) as partial runs, so that ``--prompt-sync`` sends them."""
    from .tracking import recover

    recovered = recover(config.rootpath, directory)
    if recovered.runs:
        write(f"promptgate: recovered {recovered.runs} partial run(s) of {recovered.journals} killed session(s) "
              "from their journals")
    for problem in recovered.problems:
        write(f"promptgate: {problem}", red=True)


def _waiting_uris(paths: list[Path]) -> dict[str, int]:
    """How many spooled runs wait for each tracking URI (runs another sender took meanwhile are not counted)."""
    counts: dict[str, int] = {}
    for path in paths:
        try:
            uri = json.loads(path.read_text(encoding="utf-8")).get("tracking_uri") or "?"
        except FileNotFoundError:
            continue
        except (OSError, ValueError, AttributeError):  # AttributeError: JSON that is not an object
            uri = "?"
        counts[uri] = counts.get(uri, 0) + 1
    return counts


def _comparison_fields(check: EvalCheck) -> dict[str, Any]:
    """What a run's name and MLflow note say of its verdict and baseline (:class:`TrackedRun` fields)."""
    c = check.comparison
    fields: dict[str, Any] = {"verdict_reason": check.verdict.reason if check.verdict else None,
                              "threshold": check.threshold}
    if c is not None:
        fields.update(pass_rate_ci=list(c.current_ci), baseline_pass_rate=c.baseline_rate, delta=c.delta,
                      p_value=c.p_value, broke=c.broke, fixed=c.fixed)
    return fields


def _with_quarantine(check: EvalCheck, quarantined: dict[tuple[str, str], tuple[QuarantinedCase, ...]]) -> EvalCheck:
    """``check`` with its quarantined cases; held cases leave its dataset too, so a full run stays complete."""
    cases = quarantined.get((check.summary.eval, check.summary.variant), ())
    if not cases:
        return check
    held = sum(case.status == "held" for case in cases)
    size = check.dataset_size - held if check.dataset_size is not None else None
    return dataclasses.replace(check, quarantined=cases, dataset_size=size)


def _outcomes(results: list[CaseResult]) -> dict[tuple[str, str], dict[str, bool]]:
    """``{(eval, variant): {case_id: passed}}`` of this session."""
    outcomes: dict[tuple[str, str], dict[str, bool]] = {}
    for r in results:
        outcomes.setdefault((r.eval, r.variant), {})[r.case_id] = r.outcome == "passed"
    return outcomes


def _run_counts(results: list[CaseResult]) -> dict[tuple[str, str], dict[str, tuple[int, int]]]:
    """``{(eval, variant): {case_id: (runs passed, runs)}}`` of this session."""
    counts: dict[tuple[str, str], dict[str, tuple[int, int]]] = {}
    for r in results:
        counts.setdefault((r.eval, r.variant), {})[r.case_id] = r.run_counts
    return counts


def case_counts(baseline: Baseline, outcomes: dict[str, bool]) -> RateInput | None:
    """A recorded run's passed and total cases: from its metrics, else from its results table's ``outcomes``."""
    passed, total = baseline.metrics.get("passed_cases"), baseline.metrics.get("total_cases")
    if passed is not None and total is not None and 0 <= passed <= total:
        return RateInput(int(passed), int(total))
    if outcomes:
        return RateInput(sum(outcomes.values()), len(outcomes))
    return None


def _position(info: dict[str, Any] | None, variant: str) -> int:
    variants = (info or {}).get("variants", [])
    return variants.index(variant) if variant in variants else len(variants)
