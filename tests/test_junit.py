"""--junitxml tells the same story as the exit status: a test case per verdict, tolerated cases skipped on request.

The XML is read with junitparser, a JUnit parser independent of pytest's writer.
"""

from __future__ import annotations

import pytest
from junitparser import Error, Failure, JUnitXml, Properties, Skipped

APP = '''
import os

def label(vars):
    if os.environ.get("ROUTING_BROKEN") and vars["message"] != "hello":
        return "other"
    return {"refund": "refund", "money": "refund"}.get(vars["message"].split()[0], "other")
'''

EVAL = """
eval: routing
suites: [core]
prompts: {p: {template: "{{message}}"}}
target: app:label
variants: [{name: a}, {name: b}]
threshold: THRESHOLD
graders: [{type: equals, value: "{{expected}}"}]
cases:
  - {id: r1, vars: {message: "refund now"}, expected: refund}
  - {id: r2, vars: {message: "money back"}, expected: refund}
  - {id: r3, vars: {message: "hello"}, expected: refund}
"""


@pytest.fixture
def routing(pytester):
    """A project with one eval of two variants whose case r3 fails; returns a writer of its threshold."""
    pytester.makepyfile(app=APP)
    pytester.syspathinsert()

    def write(threshold: float = 0.5, extra: str = "") -> None:
        (pytester.path / "routing.eval.yaml").write_text(EVAL.replace("THRESHOLD", str(threshold)) + extra)

    write()
    return write


def cases(path) -> dict[tuple[str, str], object]:
    """``{(classname, name): testcase}`` of the only suite; its counts checked against its cases."""
    [suite] = list(JUnitXml.fromfile(str(path)))
    found = {(case.classname, case.name): case for case in suite}
    results = [type(r) for case in found.values() for r in case.result]
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (
        len(found), results.count(Failure), results.count(Error), results.count(Skipped))
    return found


def outcome(case) -> str:
    return type(case.result[0]).__name__.lower() if case.result else "passed"


def properties(case) -> dict[str, str]:
    return {p.name: p.value for p in case.child(Properties)}


@pytest.mark.parametrize("args", [(), ("-n", "2")], ids=["no-xdist", "xdist"])
def test_tolerated_cases_are_skipped_so_the_dashboard_is_green_when_pytest_exits_0(routing, pytester, args):
    result = pytester.runpytest_subprocess("--prompt-suite", "core", "--junitxml", "out.xml",
                                           "--prompt-junit-tolerated", "skip", *args)
    assert result.ret == 0
    found = cases(pytester.path / "out.xml")
    assert {key: outcome(case) for key, case in found.items()} == {
        ("routing.eval.yaml.a", "r1"): "passed", ("routing.eval.yaml.a", "r2"): "passed",
        ("routing.eval.yaml.a", "r3"): "skipped",
        ("routing.eval.yaml.b", "r1"): "passed", ("routing.eval.yaml.b", "r2"): "passed",
        ("routing.eval.yaml.b", "r3"): "skipped",
        ("promptgate.routing", "a"): "passed", ("promptgate.routing", "b"): "passed",
        ("promptgate", "session"): "passed",
    }
    skip = found[("routing.eval.yaml.a", "r3")].result[0]
    assert skip.message == "tolerated: routing [a] is PASS at 66.7% (threshold 50.0%), which does not fail the session"
    assert "expected 'refund', got 'other'" in skip.text  # the case's own failure is still there to read
    figures = properties(found[("promptgate.routing", "b")])
    assert figures["promptgate.verdict"] == "PASS"
    assert figures["promptgate.pass_rate"] == "0.6667" and figures["promptgate.threshold"] == "0.5000"
    assert float(figures["promptgate.ci_low"]) < 0.6667 < float(figures["promptgate.ci_high"])
    assert figures["promptgate.gates"] == "held"


def test_by_default_tolerated_cases_stay_failures_beside_passing_verdicts(routing, pytester):
    result = pytester.runpytest("--prompt-suite", "core", "--junitxml", "out.xml")
    assert result.ret == 0
    found = cases(pytester.path / "out.xml")
    assert outcome(found[("routing.eval.yaml.a", "r3")]) == "failure"
    assert [outcome(found[key]) for key in [("promptgate.routing", "a"), ("promptgate.routing", "b"),
                                            ("promptgate", "session")]] == ["passed"] * 3


def test_the_ini_key_asks_for_skips_and_a_bad_value_is_one_line(routing, pytester):
    pytester.makeini("[pytest]\npromptgate_junit_tolerated = skip\n")
    assert pytester.runpytest("--prompt-suite", "core", "--junitxml", "out.xml").ret == 0
    assert outcome(cases(pytester.path / "out.xml")[("routing.eval.yaml.b", "r3")]) == "skipped"
    pytester.makeini("[pytest]\npromptgate_junit_tolerated = green\n")
    result = pytester.runpytest("--prompt-suite", "core", "--junitxml", "out.xml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: promptgate: ini promptgate_junit_tolerated: 'green' is not one of fail, skip"])
    assert "Traceback" not in result.stderr.str()


def test_a_failing_verdict_is_a_failed_case_and_its_failed_cases_stay_red(routing, pytester):
    routing(threshold=0.9)
    result = pytester.runpytest("--prompt-suite", "core", "--junitxml", "out.xml", "--prompt-junit-tolerated", "skip")
    assert result.ret == 1
    found = cases(pytester.path / "out.xml")
    assert outcome(found[("routing.eval.yaml.a", "r3")]) == "failure"  # not tolerated: its verdict fails the session
    verdict = found[("promptgate.routing", "a")]
    assert outcome(verdict) == "failure" and verdict.result[0].message.startswith("REGRESSION: ")
    assert properties(verdict)["promptgate.verdict"] == "REGRESSION"
    session = found[("promptgate", "session")]
    assert session.result[0].message == "promptgate: session FAILED: 2 eval variant(s) with verdict REGRESSION"


def test_a_tripped_fail_gate_fails_its_verdict_case(routing, pytester):
    routing(extra="gates:\n  on_fail: fail\n  rules: [{metric: pass_rate, min: 0.9}]\n")
    result = pytester.runpytest("--prompt-suite", "core", "--junitxml", "out.xml", "--prompt-junit-tolerated", "skip")
    assert result.ret == 1
    found = cases(pytester.path / "out.xml")
    verdict = found[("promptgate.routing", "b")]
    assert verdict.result[0].message == "gate tripped (fail): pass_rate 0.666667 below min 0.9"
    assert properties(verdict)["promptgate.gates"] == "fail: pass_rate 0.666667 below min 0.9"
    assert outcome(found[("routing.eval.yaml.b", "r3")]) == "failure"


def test_the_verdict_case_carries_the_baseline_and_the_mlflow_run(routing, pytester, tracking_on, monkeypatch):
    from mlflow import MlflowClient

    assert pytester.runpytest("--prompt-suite", "core").ret == 0  # r3 fails: 2/3 for the baseline
    monkeypatch.setenv("ROUTING_BROKEN", "1")  # now r1 and r2 fail, r3 fails still: 0/3
    result = pytester.runpytest("--prompt-suite", "core", "--junitxml", "out.xml")
    assert result.ret == 1
    client = MlflowClient(tracking_uri=tracking_on)
    experiment = client.get_experiment_by_name("promptgate/routing")
    runs = client.search_runs([experiment.experiment_id], "params.variant = 'a'", order_by=["attributes.start_time ASC"])
    baseline, current = runs
    figures = properties(cases(pytester.path / "out.xml")[("promptgate.routing", "a")])
    assert figures["promptgate.verdict"] == "REGRESSION"
    assert figures["promptgate.baseline_run_id"] == baseline.info.run_id
    assert figures["promptgate.mlflow_run_id"] == current.info.run_id
    assert (figures["promptgate.baseline_pass_rate"], figures["promptgate.delta"]) == ("0.6667", "-0.6667")
    assert 0 < float(figures["promptgate.p_value"]) <= 1


def test_at_80_columns_the_summary_fits_and_each_verdict_stays_on_its_row(routing, pytester, monkeypatch):
    long_eval = "customer-intent-routing-for-the-support-inbox"
    (pytester.path / "routing.eval.yaml").write_text(
        EVAL.replace("THRESHOLD", "0.9").replace("eval: routing", f"eval: {long_eval}"))
    monkeypatch.setenv("COLUMNS", "80")
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-junit-tolerated", "skip")
    assert result.ret == 1
    lines = result.stdout.lines
    summary = lines[lines.index(next(line for line in lines if " promptgate " in line)) + 1:]
    summary = summary[:next(i for i, line in enumerate(summary) if line.startswith("====="))]
    assert summary and all(len(line) <= 80 for line in summary), "\n".join(summary)
    rows = summary[2:4]  # after the headers and the rule
    assert len(rows) == 2 and all(line.endswith("REGRESSION") for line in rows), "\n".join(summary)
    assert [row.split()[0] for row in rows] == ["customer-intent-routing-for-th…/a", "customer-intent-routing-for-th…/b"]
    assert summary[0].split() == ["eval/variant", "pass", "[95%", "CI]", "base", "delta", "pp", "(p)", "verdict"]


def test_a_wide_terminal_keeps_the_full_table(routing, pytester, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    result = pytester.runpytest("--prompt-suite", "core")
    result.stdout.fnmatch_lines(["eval *variant *cases *fail/err/flaky *pass rate ?95% CI? *threshold *baseline*p95 ms"])
