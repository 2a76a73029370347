"""Per-case results travel on the reports: -n 2 gives the same results and summary as a single process."""

from __future__ import annotations

import pytest

pytest.importorskip("xdist")

EVAL = """
eval: routing
suites: [core]
prompts: {p: {template: "{{message}}"}}
target: app:async_label
variants: [{name: a}, {name: b, params: {temperature: 0}}]
repeat: 2
threshold: 0.5
graders:
  - {type: equals, value: "{{expected}}", failure_mode: wrong_label}
  - {type: tokens, max: 200}
cases:
"""

def comparable(results):
    """Results by node, without timings (they differ from run to run)."""
    out = {}
    for r in results:
        for run in r["runs"]:
            run.pop("latency_ms")
        out[(r["variant"], r["case_id"])] = r
    return out


def summary_table(lines):
    start = next(i for i, line in enumerate(lines) if "= promptgate =" in line)
    table = lines[start + 1 : next(i for i, line in enumerate(lines) if line.startswith("promptgate: session"))]
    # The p95 column (next to last) is a timing; blank it.
    return [" ".join([*line.split()[:-2], "<p95>", line.split()[-1]]) if line.startswith("routing ") else line
            for line in table]


@pytest.mark.parametrize("args", [(), ("-p", "no:xdist")])
def test_n2_gives_the_same_results_and_summary(project, pytester, recorded, args):
    cases = "".join(
        f'  - {{id: c{i}, vars: {{message: "{"refund" if i % 3 else "hello"} {i}"}}, expected: refund}}\n' for i in range(30)
    )
    project("routing.eval.yaml", EVAL + cases)
    single = pytester.runpytest_subprocess("--prompt-suite", "core", *args)
    single_results = comparable(recorded())
    if args:
        assert single.ret == 0
        return
    double = pytester.runpytest_subprocess("--prompt-suite", "core", "-n", "2")
    double_results = comparable(recorded())
    assert single.ret == double.ret == 0
    single.assert_outcomes(passed=40, failed=20)
    double.assert_outcomes(passed=40, failed=20)
    assert len(double_results) == 60
    assert double_results == single_results
    assert summary_table(double.stdout.lines) == summary_table(single.stdout.lines)
    assert any(line.startswith("routing a 30 20 10") for line in summary_table(double.stdout.lines))


def test_bad_eval_file_under_n2_still_runs_the_others(project, pytester):
    project("good.eval.yaml", EVAL + '  - {id: c, vars: {message: "refund"}, expected: refund}\n')
    project("bad.eval.yaml", "eval: bad\nsuites: [core]\ntarget: app:nope\ncases: [{id: a}]\n")
    result = pytester.runpytest_subprocess("--prompt-suite", "core", "-n", "2")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["bad.eval.yaml:3:9: target: module 'app' has no attribute 'nope'*"])
    assert result.ret == 1
