"""--prompt-report (JSON) and --prompt-report-md (Markdown, also appended to $GITHUB_STEP_SUMMARY)."""

from __future__ import annotations

import json
import re

import pytest

EVAL = """
eval: routing
suites: [core]
prompts: {p: {template: "{{message}}"}}
target: app:async_label
variants: [{name: a}, {name: b}]
threshold: 0.5
graders: [{type: equals, value: "{{expected}}", failure_mode: wrong_label}]
gates:
  on_fail: warn
  rules: [{metric: pass_rate, min: 0.9}]
cases:
  - {id: r1, vars: {message: "refund now"}, expected: refund}
  - {id: r2, vars: {message: "money back"}, expected: refund}
  - {id: r3, vars: {message: "hello"}, expected: refund}
"""


def test_json_report_holds_the_summary_and_every_case(project, pytester):
    project("routing.eval.yaml", EVAL)
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-report", "reports/evals.json")
    assert result.ret == 0
    report = json.loads((pytester.path / "reports/evals.json").read_text())
    assert report["version"] == 1 and report["passed"] is True
    assert report["conclusion"].startswith("session passes")
    assert [(e["eval"], e["variant"]) for e in report["evals"]] == [("routing", "a"), ("routing", "b")]
    assert len(report["cases"]) == 6
    for entry in report["evals"]:
        cases = [c for c in report["cases"] if c["variant"] == entry["variant"]]
        passed = sum(c["passed"] and c["error"] is None for c in cases)
        assert entry["pass_rate"] == pytest.approx(passed / len(cases))  # recomputed from the cases themselves
        assert (entry["cases"], entry["dataset_size"], entry["partial"]) == (3, 3, False)
        assert (entry["threshold"], entry["threshold_met"]) == (0.5, True)
        assert entry["failure_modes"] == {"wrong_label": 1}
        assert entry["gates"] == [{"metric": "pass_rate", "value": pytest.approx(2 / 3), "min": 0.9, "max": None,
                                   "passed": False, "on_fail": "warn", "reason": "pass_rate 0.666667 below min 0.9"}]


def test_markdown_report_and_github_step_summary(project, pytester, monkeypatch):
    summary = pytester.path / "step_summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    project("routing.eval.yaml", EVAL)
    pytester.runpytest("--prompt-suite", "core", "-k", "r1 or r3", "--prompt-report-md", "evals.md")
    text = (pytester.path / "evals.md").read_text()
    assert text.startswith("## promptgate\n\n**session passes: 2 failed or errored case(s) tolerated")
    assert re.search(r"^\| routing \| a +\| +2/3 \| +1/0/0 \| +50\.0% \[9%-91%\] \|", text, re.MULTILINE)
    assert "partial run" in text
    assert "- gate of routing [a] tripped (warn: a warning): pass_rate 0.5 below min 0.9" in text
    assert summary.read_text() == "earlier step\n" + text  # appended, not overwritten


def test_no_step_summary_without_the_markdown_option(project, pytester, monkeypatch):
    summary = pytester.path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    project("routing.eval.yaml", EVAL)
    pytester.runpytest("--prompt-suite", "core")
    assert not summary.exists()


def test_a_report_that_cannot_be_written_fails_the_session(project, pytester):
    project("routing.eval.yaml", EVAL)
    (pytester.path / "blocked").write_text("a file, not a directory")
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-report", "blocked/evals.json")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["promptgate: could not write the report */blocked/evals.json: *"])
