"""The JUnit XML of a session (``--junitxml``), told as the exit status tells it (DESIGN §8).

pytest's junitxml plugin writes one test case per eval case as it runs; only the
session's end knows which failed cases the evals' thresholds tolerate. So the
file pytest wrote is completed here: one test case per (eval, variant) verdict,
failing exactly when that verdict fails the session, with its figures as
properties; one ``promptgate.session`` case carrying the conclusion; and, when
asked, the tolerated failed cases reported as skipped with the reason.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence

from ..verdicts import EvalCheck, SessionOutcome, fails_session
from .summary import conclusion

#: ``--prompt-junit-tolerated``: how the failed cases a threshold tolerates appear in the JUnit XML.
TOLERATED_CHOICES = ("fail", "skip")


def failing(check: EvalCheck, fail_on: frozenset[str]) -> list[str]:
    """Why ``check`` fails the session: its verdict, its tripped ``on_fail: fail`` gates (empty: it does not)."""
    reasons = []
    if check.verdict is not None and fails_session(check.verdict, fail_on):
        reasons.append(f"{check.verdict.kind.value}: {check.verdict.reason}")
    reasons += [f"gate tripped (fail): {gate.reason}" for gate in check.tripped("fail")]
    return reasons


def tolerated_reason(check: EvalCheck) -> str:
    """The skip message of a failed case of ``check``, which does not fail the session."""
    verdict = check.verdict.kind.value if check.verdict is not None else "no verdict"
    threshold = f"threshold {check.threshold:.1%}" if check.threshold is not None else "no threshold"
    return (f"tolerated: {check.label} is {verdict} at {check.summary.pass_rate:.1%} ({threshold}), "
            "which does not fail the session")


def complete_junit(
    text: str, checks: Sequence[EvalCheck], outcome: SessionOutcome, session_failed: bool,
    tolerated: Mapping[tuple[str, str], str],
) -> str:
    """``text`` (the XML pytest wrote) with the verdict cases added and the ``tolerated`` cases skipped.

    ``tolerated`` maps a case's (classname, name), as pytest named it, to its skip
    message. The first test suite's counts are kept true to its cases.
    """
    root = ET.fromstring(text)
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:  # not a file pytest wrote: left as it is
        return text
    for case in suite.iter("testcase"):
        reason = tolerated.get((case.get("classname", ""), case.get("name", "")))
        if reason is not None:
            _skip(case, reason)
    added = [_verdict_case(check, outcome.fail_on) for check in checks]
    added.append(_case("promptgate", "session", [conclusion(outcome)] if session_failed else [], {}))
    suite.extend(added)
    _recount(suite)
    return '<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(root, encoding="unicode")


def _skip(case: ET.Element, reason: str) -> None:
    """Turn the failure (or error) of ``case`` into a skip with ``reason``."""
    for index, child in enumerate(case):
        if child.tag in ("failure", "error"):
            skip = ET.Element("skipped", type="promptgate.tolerated", message=reason)
            skip.text = child.text  # the case's own failure, still readable
            case[index] = skip
            return


def _verdict_case(check: EvalCheck, fail_on: frozenset[str]) -> ET.Element:
    s = check.summary
    return _case(f"promptgate.{s.eval}", s.variant, failing(check, fail_on), verdict_properties(check))


def verdict_properties(check: EvalCheck) -> dict[str, str]:
    """The figures of one (eval, variant), as the properties of its verdict case."""
    s, c, v = check.summary, check.comparison, check.verdict
    figures = {
        "verdict": v.kind.value if v is not None else "?",
        "verdict_reason": v.reason if v is not None else "",
        "cases": str(s.cases),
        "pass_rate": f"{s.pass_rate:.4f}",
        "threshold": f"{check.threshold:.4f}" if check.threshold is not None else "",
    }
    if c is not None:
        figures["ci_low"], figures["ci_high"] = f"{c.current_ci[0]:.4f}", f"{c.current_ci[1]:.4f}"
    if check.baseline_run_id is not None:
        figures["baseline_run_id"] = check.baseline_run_id
    if c is not None and c.baseline_rate is not None:
        figures["baseline_pass_rate"] = f"{c.baseline_rate:.4f}"
    if c is not None and c.delta is not None:
        figures["delta"] = f"{c.delta:+.4f}"
    if c is not None and c.p_value is not None:
        figures["p_value"] = f"{c.p_value:.4g}"
    figures["gates"] = "; ".join(f"{g.on_fail}: {g.reason}" for g in check.gates if not g.passed) or "held"
    if check.run_id is not None:
        figures["mlflow_run_id"] = check.run_id
    return {f"promptgate.{name}": value for name, value in figures.items()}


def _case(classname: str, name: str, failures: list[str], properties: Mapping[str, str]) -> ET.Element:
    case = ET.Element("testcase", classname=classname, name=name, time="0.000")
    if properties:
        holder = ET.SubElement(case, "properties")
        for key, value in properties.items():
            ET.SubElement(holder, "property", name=key, value=value)
    if failures:
        failure = ET.SubElement(case, "failure", message=failures[0])
        failure.text = "\n".join(failures)
    return case


def _recount(suite: ET.Element) -> None:
    """The suite's tests, failures, errors and skipped, counted from its cases."""
    counts = {"failure": 0, "error": 0, "skipped": 0}
    cases = list(suite.iter("testcase"))
    for case in cases:
        for tag in counts:
            counts[tag] += case.find(tag) is not None
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(counts["failure"]))
    suite.set("errors", str(counts["error"]))
    suite.set("skipped", str(counts["skipped"]))
