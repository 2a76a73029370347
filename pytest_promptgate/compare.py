"""``pytest --prompt-compare RUN_A [RUN_B]``: two recorded runs of one eval and variant, compared (DESIGN §8).

RUN_A is *before* and RUN_B *after*: the delta is after minus before, and a case
that passed in RUN_A and fails in RUN_B is newly failing. Without RUN_B, *after*
is the newest complete run of RUN_A's eval and variant other than RUN_A. Runs no
tests: everything comes from MLflow, the per-case outcomes from each run's
results table. Controller only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .verdicts import RecordedRun, RunComparison, compare_runs

if TYPE_CHECKING:
    from .tracking import Baseline, Tracker


def compare(config: pytest.Config) -> int:
    """Print the comparison of the two runs (and write ``--prompt-report`` / ``--prompt-report-html`` when asked).

    Exit 0 when the comparison was made; anything that keeps it from being made
    (an unknown run, runs of different evals, tracking unreachable) is a usage
    error of one line.
    """
    from _pytest.config import create_terminal_writer  # the terminal reporter does not exist yet

    from .report import compare_lines
    from .session import TrackingSettings
    from .tracking import Tracker, display_uri

    run_ids = config.getoption("prompt_compare")
    if len(run_ids) > 2:
        _usage(f"give one or two run ids (before, after), not {len(run_ids)}")
    if config.getoption("prompt_no_tracking"):
        _usage("it reads the runs in MLflow; it cannot be combined with --prompt-no-tracking")
    settings = TrackingSettings.from_config(config)
    tracker = Tracker(settings.uri, experiment_prefix=settings.experiment_prefix, read_only=True)
    rc = _read(tracker, run_ids)
    write = create_terminal_writer(config).line
    for line in compare_lines(rc, display_uri(tracker.uri)):
        write(line)
    problems = _write_reports(config, rc)
    for problem in problems:
        create_terminal_writer(config, sys.stderr).line(problem, red=True)
    return 1 if problems else 0


def _usage(message: str) -> None:
    raise pytest.UsageError(f"promptgate: --prompt-compare: {message}")


def _read(tracker: Tracker, run_ids: list[str]) -> RunComparison:
    """Both runs, checked to be of one eval and variant, and their results tables; usage errors say what is wrong."""
    from .tracking import TrackingError, display_uri, sqlite_path, tracking_failure

    database = sqlite_path(tracker.uri)
    if database is not None and not database.exists():  # nothing recorded there: say so rather than create it
        _usage(f"no MLflow store at {display_uri(tracker.uri)}: choose it with --prompt-tracking-uri")
    try:
        before = _run(tracker, run_ids[0])
        after = _run(tracker, run_ids[1]) if len(run_ids) == 2 else _default_after(tracker, before)
        if (before.eval, before.variant) != (after.eval, after.variant):
            _usage(f"run {before.run_id} is of {before.eval} [{before.variant}] and run {after.run_id} of "
                   f"{after.eval} [{after.variant}]: compare runs of one eval and variant")
        rows, problem = {}, None
        for run in (before, after):
            rows[run.run_id], why = _cases(tracker, run.run_id)
            problem = problem or why
    except TrackingError as exc:  # BaselineError (unknown run, not ours), or the store's own failure
        _usage(str(exc))
    except pytest.UsageError:
        raise
    except Exception as exc:  # anything else in its words (tracking_failure): never a traceback
        _usage(str(tracking_failure(exc, tracker.uri)))
    return compare_runs(before.eval, before.variant, _recorded(before), _recorded(after),
                        rows[before.run_id], rows[after.run_id], problem)


def _run(tracker: Tracker, run_id: str) -> Baseline:
    from .tracking import pinned_baseline

    return pinned_baseline(tracker, run_id, role="run")


def _default_after(tracker: Tracker, before: Baseline) -> Baseline:
    """The newest complete run of ``before``'s eval and variant other than ``before``."""
    from .tracking import newest_complete_run

    found = newest_complete_run(tracker, before.eval, before.variant, other_than=before.run_id)
    if found is None:
        _usage(f"no other complete run of {before.eval} [{before.variant}] to compare run {before.run_id} with: "
               "name the second run (--prompt-compare RUN_A RUN_B)")
    return _run(tracker, found.run_id)


def _cases(tracker: Tracker, run_id: str) -> tuple[list[dict[str, Any]] | None, str | None]:
    """The run's results table rows, or None and why (no table, or not a readable one)."""
    from .tracking import RESULTS_FILE, TrackingError, TrackingUnavailable, run_cases

    try:
        rows = run_cases(tracker, run_id)
    except TrackingUnavailable:
        raise
    except TrackingError as exc:
        return None, str(exc)
    return rows, None if rows is not None else f"run {run_id} has no results table ({RESULTS_FILE})"


def _recorded(run: Baseline) -> RecordedRun:
    """The run as the comparison needs it; its counts from its metrics (from its rows later, when it has none)."""
    from .session import case_counts

    return RecordedRun(run_id=run.run_id, start_time=run.start_time, prompt_versions=run.prompt_versions,
                       complete=run.complete, counts=case_counts(run, {}))


def _write_reports(config: pytest.Config, rc: RunComparison) -> list[str]:
    """``--prompt-report`` (JSON) and ``--prompt-report-html`` of the comparison, relative to where pytest started."""
    from .report import compare_html, compare_json

    writes = []
    if config.getoption("prompt_report"):
        text = json.dumps(compare_json(rc), indent=2, ensure_ascii=False) + "\n"
        writes.append((config.getoption("prompt_report"), text))
    if config.getoption("prompt_report_html"):
        writes.append((config.getoption("prompt_report_html"), compare_html(rc)))
    problems = []
    for name, text in writes:
        path = Path(config.invocation_params.dir, name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            problems.append(f"promptgate: could not write the report {path}: {exc.strerror or exc}")
    return problems
