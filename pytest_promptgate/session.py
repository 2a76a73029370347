"""The controlling process's view of an eval session (the process that is not an xdist worker).

Receives each item's result from its report, learns each eval's settings from
collection (or from the workers, under xdist), and at the end decides the exit
status by tolerance (DESIGN §3) and renders the summary.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from .plugin import REPORT_ATTR, State
from .results import CaseResult, summarize
from .verdicts import EvalCheck, SessionOutcome, check_evals


class EvalSession:
    """Collects results on the controller and turns them into an exit status and a summary."""

    def __init__(self, config: pytest.Config, state: State) -> None:
        self.config = config
        self.state = state
        self.results: list[CaseResult] = []
        self.ordinary_failures = 0
        self.bad_eval_files = 0
        self.checks: list[EvalCheck] = []
        self.outcome: SessionOutcome | None = None
        self.report_problems: list[str] = []

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
            self.results.append(CaseResult.from_dict(data))
        elif report.failed:
            self.ordinary_failures += 1

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if not self.results and not self.bad_eval_files:
            return
        evals = self.state.evals
        # Rows in a stable order (eval name, declared variant order), whatever order workers reported in.
        summaries = sorted(summarize(self.results), key=lambda s: (s.eval, _position(evals.get(s.eval), s.variant)))
        self.checks = check_evals(summaries, evals)
        self.outcome = SessionOutcome(
            below_threshold=sum(not c.passed for c in self.checks),
            failed_gates=sum(len(c.tripped("fail")) for c in self.checks),
            ordinary_failures=self.ordinary_failures,
            bad_eval_files=self.bad_eval_files,
            failed_cases=sum(r.outcome == "failed" for r in self.results),
            error_cases=sum(r.outcome == "error" for r in self.results),
            strict=self.state.strict,
            stopped_early=bool(session.shouldfail or session.shouldstop),
        )
        if exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) and not self.outcome.stopped_early:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED if self.outcome.failed else pytest.ExitCode.OK
        self.report_problems = self._write_reports()
        if self.report_problems and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED  # a CI step waiting for the report would get nothing

    def _write_reports(self) -> list[str]:
        """Write ``--prompt-report`` (JSON) and ``--prompt-report-md`` (also to ``$GITHUB_STEP_SUMMARY``)."""
        from .report import json_report, markdown

        config = self.config
        assert self.outcome is not None
        writes: list[tuple[Path, str, str]] = []
        if config.getoption("prompt_report"):
            body = json.dumps(json_report(self.checks, self.outcome, self.results), indent=2, ensure_ascii=False)
            writes.append((config.invocation_params.dir / config.getoption("prompt_report"), body + "\n", "w"))
        if config.getoption("prompt_report_md"):
            text = markdown(self.checks, self.outcome)
            writes.append((config.invocation_params.dir / config.getoption("prompt_report_md"), text, "w"))
            if os.environ.get("GITHUB_STEP_SUMMARY"):
                writes.append((Path(os.environ["GITHUB_STEP_SUMMARY"]), text, "a"))
        problems = []
        for path, text, mode in writes:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, mode, encoding="utf-8") as file:
                    file.write(text)
            except OSError as exc:
                problems.append(f"promptgate: could not write the report {path}: {exc.strerror or exc}")
        return problems

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.outcome is None:
            return
        from .report import terminal_lines

        terminalreporter.write_sep("=", "promptgate")
        for line in terminal_lines(self.checks, self.outcome):
            terminalreporter.write_line(line)
        for problem in self.report_problems:
            terminalreporter.write_line(problem, red=True)


def _position(info: dict[str, Any] | None, variant: str) -> int:
    variants = (info or {}).get("variants", [])
    return variants.index(variant) if variant in variants else len(variants)
