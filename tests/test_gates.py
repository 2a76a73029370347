"""Gates from the eval file: fail gates fail the session; warn and block_promote gates are reported only."""

from __future__ import annotations

import pytest

EVAL = """
eval: gated
suites: [core]
prompts: {p: {template: "{{message}}"}}
target: app:async_label
variants: [{name: a}, {name: b}]
threshold: 0.5
graders: [{type: equals, value: "{{expected}}"}]
gates:
  on_fail: ON_FAIL
  rules:
    - {metric: pass_rate, min: 0.9}
    - {metric: input_tokens, max: 1000}
    - {metric: cost_usd_per_case, max: 0.001}
cases:
  - {id: r1, vars: {message: "refund now"}, expected: refund}
  - {id: r2, vars: {message: "money back"}, expected: refund}
  - {id: r3, vars: {message: "hello"}, expected: refund}
"""
# pass rate 2/3 < 0.9 trips; 3 x 100 input tokens = 300 holds; cost per case 2.1e-5 holds


@pytest.mark.parametrize(
    ("on_fail", "exit_status", "effect"),
    [
        ("fail", 1, "fails the session"),
        ("warn", 0, "a warning"),
        ("block_promote", 0, "blocks promoting this eval's prompts"),
    ],
)
def test_gate_actions(project, pytester, on_fail, exit_status, effect):
    project("gated.eval.yaml", EVAL.replace("ON_FAIL", on_fail))
    result = pytester.runpytest("--prompt-suite", "core")
    result.assert_outcomes(passed=4, failed=2)
    assert result.ret == exit_status
    result.stdout.fnmatch_lines([
        f"gate of gated [[]a] tripped ({on_fail}: {effect}): pass_rate 0.666667 below min 0.9",
        f"gate of gated [[]b] tripped ({on_fail}: {effect}): pass_rate 0.666667 below min 0.9",
    ])
    assert "input_tokens" not in result.stdout.str()  # gates that hold are not listed
    if on_fail == "fail":
        result.stdout.fnmatch_lines(["promptgate: session FAILED: 2 gate(s) with on_fail: fail tripped"])
    else:
        result.stdout.fnmatch_lines(["promptgate: session passes:*"])


def test_a_gate_on_a_metric_nobody_reported_trips(project, pytester):
    project("gated.eval.yaml", EVAL.replace("ON_FAIL", "fail").replace("app:async_label", "app:label")
            .replace("{metric: pass_rate, min: 0.9}", "{metric: pass_rate, min: 0.5}"))
    result = pytester.runpytest("--prompt-suite", "core")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["gate of gated [[]a] tripped (fail: fails the session): input_tokens not reported*"])
