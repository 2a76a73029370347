"""A regex cannot hang a session: catastrophic backtracking is an error case (issue 12, defect 13).

``^(a+)+$`` on 34 ``a`` and a ``!`` takes about 2**34 steps in Python's ``re``:
before the fix the session never returned. Patterns are now matched by the
``regex`` package, which answers that one at once, and gives up on those it
cannot answer in time (``^(a|aa)+$`` on 50 ``a`` and a ``!``). Each session runs
in a subprocess with a timeout, so a hang fails the test instead of hanging the suite.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

EVAL = """
eval: evil
suites: [core]
prompts: {p: {template: "TEXT"}}
target: echo
threshold: 0
graders: [GRADER]
cases:
  - {id: evil, vars: {}}
"""


def run(project, pytester, grader: str, output: str):
    project("evil.eval.yaml", EVAL.replace("GRADER", grader).replace("TEXT", output))
    return pytester.runpytest_subprocess("--prompt-suite", "core", "-v", timeout=120)


@pytest.mark.parametrize(("kind", "outcome"), [("regex", "failed"), ("not_regex", "passed")])
def test_the_pattern_that_hung_a_session_is_answered(project, pytester, kind, outcome):
    result = run(project, pytester, f"{{type: {kind}, pattern: '^(a+)+$'}}", "a" * 34 + "!")
    result.assert_outcomes(**{outcome: 1})


@pytest.mark.parametrize(
    ("grader", "output", "what"),
    [
        ("{type: regex, pattern: '^(a|aa)+$'}", "a" * 50 + "!", "regex '^(a|aa)+$' gave up after 1 s"),
        ("{type: not_regex, pattern: '^(a|aa)+$', timeout: 0.25}", "a" * 50 + "!",
         "not_regex '^(a|aa)+$' gave up after 0.25 s"),
        ("{type: json_schema, schema: {type: string, pattern: '^(a|aa)+$'}}", '\\"' + "a" * 50 + '!\\"',
         "pattern '^(a|aa)+$' gave up after 1 s"),
        ("{type: json_schema, schema: {type: object, patternProperties: {'^(a|aa)+$': {type: number}}}}",
         "{\\\"" + "a" * 50 + "!\\\": 1}", "patternProperties '^(a|aa)+$' gave up after 1 s"),
    ],
    ids=["regex", "not_regex-with-timeout", "json_schema-pattern", "json_schema-patternProperties"],
)
def test_catastrophic_backtracking_is_an_error_case(project, pytester, grader, output, what):
    result = run(project, pytester, grader, output)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "*ERROR at setup of evil::default::evil*",
        f"grader '*': {what}: the pattern backtracks catastrophically on this output; simplify it",
    ])


def test_the_regex_package_is_imported_only_to_match():
    code = ("import sys, pytest_promptgate.plugin, pytest_promptgate.graders.strings, pytest_promptgate.graders.structure; "
            "print('regex' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
