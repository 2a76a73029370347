"""Cases with a history (issue 15, item 5): flaky across runs, and the quarantine.

The stories run sessions against a real SQLite MLflow store, with a target whose
wrong answers the test plants (``wrong.txt``): a case made to alternate across
sessions is named flaky across runs from the results tables MLflow keeps; a
quarantined failing case stays out of the verdict, the exit status and the
JUnit failures until its date passes; malformed quarantine lines are one usage
error naming the line. The pure rules (flips, entries, holding) are unit tested
against hand-counted answers.
"""

from __future__ import annotations

import datetime
import json

import pytest
from junitparser import Failure, JUnitXml, Skipped

from pytest_promptgate.quarantine import (
    FlakyCase,
    QuarantineEntry,
    flaky_across_runs,
    flaky_history_option,
    hold,
    parse_quarantine,
)
from pytest_promptgate.results import CaseResult

QUALITY = '''
from pathlib import Path

def answer(vars):
    """Says "yes", unless wrong.txt lists the case id."""
    wrong = Path("wrong.txt").read_text().split() if Path("wrong.txt").exists() else []
    return "no" if vars["id"] in wrong else "yes"
'''

STORY = """
eval: story
suites: [core]
target: quality:answer
threshold: %s
graders: [{type: equals, value: "yes"}]
cases:
""" + "".join(f"  - {{id: c{i}, vars: {{id: c{i}}}}}\n" for i in range(1, 5))


@pytest.fixture
def story(project, pytester):
    """The eval of four cases at ``threshold``; returns a function running a session with cases ``wrong``."""

    def make(threshold: float = 0.5, ini: str = ""):
        pytester.makepyfile(quality=QUALITY)
        project("story.eval.yaml", STORY % threshold)
        if ini:
            pytester.makeini(ini)

        def session(wrong: str, *args: str) -> pytest.RunResult:
            (pytester.path / "wrong.txt").write_text(wrong)
            return pytester.runpytest("--prompt-suite", "core", *args)

        return session

    return make


# ---------------------------------------------------------------------------- flaky across runs


@pytest.mark.parametrize("agent", ["on", "off"])
def test_a_case_alternating_across_runs_is_named_flaky(story, pytester, tracking_on, monkeypatch, agent):
    monkeypatch.setenv("PROMPTGATE_TRACKING_AGENT", agent)  # through the tracking agent, and in pytest's process
    session = story()
    for wrong in ("c1", "", "c1 c2"):
        result = session(wrong)
        assert result.ret == 0
    result.stdout.no_fnmatch_line("*flaky across runs*")  # c1 flipped twice in 3 runs: below the default 3 of 5
    result = session("", "--prompt-report", "report.json", "--prompt-report-md", "report.md")
    result.stdout.fnmatch_lines(["*flaky across runs: story ?default? case c1 flipped 3 times in the last 4 runs*"])
    result.stdout.no_fnmatch_line("*case c2 flipped*")  # one flip, then back: a change, not a flaky case
    data = json.loads((pytester.path / "report.json").read_text())
    assert data["evals"][0]["flaky_across_runs"] == [{"case_id": "c1", "flips": 3, "runs": 4}]
    assert "flaky across runs: story [default] case c1 flipped 3 times" in (pytester.path / "report.md").read_text()

    result = session("c1", "--prompt-flaky-history", "4/5")
    result.stdout.fnmatch_lines(["*story ?default? case c1 flipped 4 times in the last 5 runs*"])
    result = session("c1", "--prompt-flaky-history", "4/5")  # c1 failed twice in a row: 3 flips in the last 5
    result.stdout.no_fnmatch_line("*flaky across runs*")


def test_the_ini_key_sets_the_window_and_off_reads_no_history(story, tracking_on):
    session = story(ini="[pytest]\npromptgate_flaky_history = 1/2\n")
    session("c3")
    result = session("")
    result.stdout.fnmatch_lines(["*story ?default? case c3 flipped 1 time in the last 2 runs*"])
    result = session("c3", "--prompt-flaky-history", "off")
    result.stdout.no_fnmatch_line("*flaky across runs*")


def test_without_tracking_nothing_is_said_of_flaky_cases(story, pytester, monkeypatch):
    monkeypatch.setenv("PROMPTGATE_TRACKING", "off")
    session = story()
    for wrong in ("c1", "", "c1", ""):
        result = session(wrong)
    assert result.ret == 0
    result.stdout.no_fnmatch_line("*flaky across runs*")
    assert not (pytester.path / "mlflow.db").exists()


def test_with_tracking_unreachable_no_history_is_read_and_the_summary_says_so_once(story, monkeypatch):
    from mlflow_server import free_port

    monkeypatch.delenv("PROMPTGATE_TRACKING", raising=False)
    nowhere = f"http://127.0.0.1:{free_port()}"
    result = story()("c1", "--prompt-tracking-uri", nowhere)
    assert result.ret == 0
    result.stdout.no_fnmatch_line("*flaky across runs*")
    result.stdout.no_fnmatch_line("*Traceback*")
    assert result.stdout.str().count(f"MLflow tracking at {nowhere} is unavailable") == 1


@pytest.mark.parametrize("value", ["5/3", "3", "0/5", "3/21", "x/y"])
def test_a_bad_window_is_one_usage_error(story, value):
    session = story()
    result = session("", "--prompt-flaky-history", value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--prompt-flaky-history: expected K/M, K flips in the last M runs*{value}*"])


def test_a_bad_window_in_the_ini_names_the_key(story):
    result = story(ini="[pytest]\npromptgate_flaky_history = 3 of 5\n")("")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*promptgate: ini promptgate_flaky_history: expected K/M*'3 of 5'*"])


def test_flips_are_counted_between_the_runs_a_case_ran_in():
    earlier = [{"a": True, "b": True}, {"a": False}, {"a": True, "b": False}, {"a": False, "b": True}]
    now = {"a": True, "b": True, "new": False}
    # a: T F T F T -> 4 flips in 5 runs; b (absent from one run): T F T T -> 2 flips in 4 runs.
    assert flaky_across_runs(earlier, now, 2, 5) == (FlakyCase("a", 4, 5), FlakyCase("b", 2, 4))
    assert flaky_across_runs(earlier, now, 3, 5) == (FlakyCase("a", 4, 5),)
    # The window is the last M runs, this one included: over 4, a is F T F T (3 flips), b F T T (1).
    assert flaky_across_runs(earlier, now, 3, 4) == (FlakyCase("a", 3, 4),)
    assert flaky_across_runs([], now, 1, 5) == ()


def test_the_window_option_reads_k_of_m():
    assert flaky_history_option("3/5") == (3, 5)
    assert flaky_history_option(" off ") == ()


# ---------------------------------------------------------------------------- quarantine

FUTURE = "2099-12-31"
QUARANTINE = "[pytest]\npromptgate_quarantine =\n    story/c4 {until} judge flips on c4 (#12)\n    other/* 2099-01-01 not this eval\n"


def test_a_quarantined_failing_case_runs_but_stays_out_of_the_verdict(story, pytester, tracking_on):
    session = story(threshold=1.0, ini=QUARANTINE.format(until=FUTURE))
    result = session("c4", "--junitxml", "junit.xml", "--prompt-report", "report.json", "--prompt-strict")
    assert result.ret == 0
    result.assert_outcomes(passed=3, xfailed=1)
    result.stdout.fnmatch_lines([
        "*story*default*3*0/0/0*100.0%*PASS (first run)*",
        f"*quarantined in story ?default?: 1 case(s) kept out of pass rate, gates and verdict until {FUTURE} "
        "(story/c4: judge flips on c4 (#12)): c4 failed*",
        "promptgate: session passes: every case passed (1 quarantined case(s) not counted)",
    ])
    data = json.loads((pytester.path / "report.json").read_text())
    (check,) = data["evals"]
    assert (check["cases"], check["pass_rate"], check["verdict"]) == (3, 1.0, "PASS")
    assert check["quarantined"] == [{"case_id": "c4", "outcome": "quarantined", "ran": "failed", "status": "held",
                                     "pattern": "story/c4", "reason": "judge flips on c4 (#12)", "until": FUTURE}]
    assert [case["case_id"] for case in data["cases"] if case.get("quarantined")] == ["c4"]
    junit = _junit_results(pytester.path / "junit.xml")
    assert not any(isinstance(r, Failure) for results in junit.values() for r in results)
    (skip,) = junit["c4"]
    assert isinstance(skip, Skipped) and skip.message == f"quarantined until {FUTURE}: judge flips on c4 (#12)"
    # The run is complete (its held case left out of the dataset too), so it becomes the next baseline.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_on)
    (run,) = client.search_runs([client.get_experiment_by_name("promptgate/story").experiment_id])
    assert run.data.tags["promptgate.complete"] == "true"
    assert (run.data.metrics["total_cases"], run.data.metrics["pass_rate"]) == (3, 1.0)


def test_under_xdist_the_workers_report_the_quarantined_failure_as_xfailed(story, pytester, monkeypatch):
    monkeypatch.setenv("PROMPTGATE_TRACKING", "off")
    story(threshold=1.0, ini=QUARANTINE.format(until=FUTURE))
    (pytester.path / "wrong.txt").write_text("c4")
    result = pytester.runpytest_subprocess("--prompt-suite", "core", "-n", "2", "-rx")
    assert result.ret == 0
    result.assert_outcomes(passed=3, xfailed=1)
    result.stdout.fnmatch_lines(["*quarantined in story ?default?: 1 case(s) kept out*",
                                 f"XFAIL story.eval.yaml::default::c4 - quarantined until {FUTURE}: judge flips*"])


def _junit_results(path) -> dict[str, list]:
    """``{test case name: its results}`` of a JUnit XML file, read by junitparser."""
    xml = JUnitXml.fromfile(str(path))
    suites = [xml] if xml._tag == "testsuite" else list(xml)
    return {case.name: list(case.result) for suite in suites for case in suite}


def test_an_expired_quarantine_counts_again_and_the_summary_says_so(story, pytester):
    session = story(threshold=1.0, ini=QUARANTINE.format(until="2020-01-31"))
    result = session("c4")
    assert result.ret == 1
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines([
        "*story*default*4*75.0%*REGRESSION*",
        "*quarantine expired on 2020-01-31 (story/c4: judge flips on c4 (#12)): 1 case(s) of story ?default? count "
        "again: c4 failed; remove or renew its promptgate_quarantine line*",
        "promptgate: session FAILED: 1 eval variant(s) with verdict REGRESSION",
    ])


def test_a_quarantine_naming_every_case_does_not_apply(story):
    session = story(threshold=1.0, ini="[pytest]\npromptgate_quarantine = story/* 2099-12-31 all of it\n")
    result = session("c4")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*quarantine not applied to story ?default? (story/*: all of it): every case of it "
                                 "is quarantined and a verdict needs at least one, so they count*"])


@pytest.mark.parametrize(("line", "says"), [
    ("story/c4 2099-12-31", "line 2 ('story/c4 2099-12-31'): no reason"),
    ("story/c4 31.12.2099 flips", "line 2 ('story/c4 31.12.2099 flips'): '31.12.2099' is not a date YYYY-MM-DD"),
    ("c4 2099-12-31 flips", "line 2 ('c4 2099-12-31 flips'): expected 'EVAL/CASE YYYY-MM-DD REASON'"),
])
def test_a_malformed_quarantine_line_is_one_usage_error_naming_it(story, line, says):
    session = story(ini=f"[pytest]\npromptgate_quarantine =\n    story/c1 2099-12-31 fine\n    {line}\n")
    result = session("")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: promptgate: ini promptgate_quarantine {says}*"])
    result.stderr.no_fnmatch_line("*Traceback*")


def test_entries_match_eval_and_case_globs_apart_and_hold_through_their_date():
    (entry,) = parse_quarantine(["# EVAL/CASE expiry reason", "intent-*/refund-? 2026-12-31 judge flips"])
    assert entry == QuarantineEntry("intent-*/refund-?", datetime.date(2026, 12, 31), "judge flips")
    assert entry.matches("intent-routing", "refund-1")
    assert not entry.matches("intent-routing", "refund-10") and not entry.matches("routing", "refund-1")
    assert not entry.matches("intent-routing", "Refund-1")  # case-sensitive
    assert entry.active(datetime.date(2026, 12, 31)) and not entry.active(datetime.date(2027, 1, 1))


def test_hold_leaves_out_cases_in_force_and_lists_expired_ones():
    def case(case_id: str, passed: bool) -> CaseResult:
        return CaseResult("e", "v", case_id, passed, 1.0 if passed else 0.0)

    results = [case("a", False), case("b", True), case("c", False)]
    entries = parse_quarantine(["e/a 2026-06-30 held", "e/c 2026-05-31 expired"])
    counted, listed = hold(results, entries, datetime.date(2026, 6, 1))
    assert [r.case_id for r in counted] == ["b", "c"]
    assert [(q.case_id, q.outcome, q.status) for q in listed[("e", "v")]] == [("a", "failed", "held"),
                                                                            ("c", "failed", "expired")]
