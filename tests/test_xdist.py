"""Per-case results travel on the reports: -n 2 gives the same results and summary as a single process."""

from __future__ import annotations

import textwrap

import pytest
from conftest import COIN, RECORDER, coin_eval

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
    """The summary table's lines, with the p95 column (a timing, the last) blanked on every row, and no best-variant line."""
    start = next(i for i, line in enumerate(lines) if "= promptgate =" in line)
    table = lines[start + 1 : next(i for i, line in enumerate(lines) if line.startswith("promptgate: session"))]
    rule = next(i for i, line in enumerate(table) if line.startswith("---"))
    end = table.index("", rule)
    rows = [" ".join([*line.split()[:-1], "<p95>"]) for line in table[rule + 1 : end]]
    # The best variant of this eval is decided by latency when pass rates tie: a timing, like p95.
    notes = [line for line in table[end:] if not line.startswith("best variant of routing:")]
    return table[: rule + 1] + rows + notes


def test_n2_and_no_xdist_give_the_same_results_and_summary(project, pytester, recorded):
    cases = "".join(
        f'  - {{id: c{i}, vars: {{message: "{"refund" if i % 3 else "hello"} {i}"}}, expected: refund}}\n' for i in range(30)
    )
    project("routing.eval.yaml", EVAL + cases)
    runs = {}
    for name, args in {"plain": (), "no-xdist": ("-p", "no:xdist"), "n2": ("-n", "2")}.items():
        result = pytester.runpytest_subprocess("--prompt-suite", "core", *args)
        assert result.ret == 0, name
        result.assert_outcomes(passed=40, failed=20)
        runs[name] = (comparable(recorded()), summary_table(result.stdout.lines))
    assert len(runs["n2"][0]) == 60
    assert runs["n2"] == runs["plain"] == runs["no-xdist"]
    assert any(line.startswith("routing a 30 10/0/0 66.7% [49%-81%]") for line in runs["n2"][1])


def test_bad_eval_file_under_n2_still_runs_the_others(project, pytester):
    project("good.eval.yaml", EVAL + '  - {id: c, vars: {message: "refund"}, expected: refund}\n')
    project("bad.eval.yaml", "eval: bad\nsuites: [core]\ntarget: app:nope\ncases: [{id: a}]\n")
    result = pytester.runpytest_subprocess("--prompt-suite", "core", "-n", "2")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["bad.eval.yaml:3:9: target: module 'app' has no attribute 'nope'*"])
    assert result.ret == 1


def test_fixture_targets_errors_flaky_and_bad_files_under_n2(project, pytester, recorded):
    pytester.makeconftest(textwrap.dedent("""
        import pytest
        @pytest.fixture(scope="session")
        def labeller():
            import app
            return app.label
    """) + RECORDER)
    pytester.makepyfile(coin=COIN)
    project("fixture.eval.yaml", EVAL.replace("target: app:async_label", "target: fixture:labeller").replace("repeat: 2", "repeat: 1")
            .replace("  - {type: tokens, max: 200}\n", "")
            + '  - {id: r1, vars: {message: "refund x"}, expected: refund}\n  - {id: r2, vars: {message: "hello"}, expected: refund}\n')
    project("coin.eval.yaml", coin_eval(0.3, mostly="hht", rarely="htt", boom="xxx"))
    project("bad.eval.yaml", "eval: bad\nsuites: [core]\ntarget: echo\ncases: [{id: a, vars: {x: 1}, graders: [{type: nope}]}]\n")
    outcomes = {}
    for name, args in {"plain": (), "n2": ("-n", "2")}.items():
        result = pytester.runpytest_subprocess("--prompt-suite", "core", *args)
        result.assert_outcomes(passed=3, failed=3, errors=2)  # errors: the bad file and the crashing case
        assert result.ret == 1
        cases = sorted((r["eval"], r["variant"], r["case_id"], "error" if r["error"] else r["passed"], r["flaky"])
                       for r in recorded())
        outcomes[name] = (cases, summary_table(result.stdout.lines))
    assert outcomes["n2"] == outcomes["plain"]


def test_header_hints_reach_the_summary_under_n2(project, pytester):
    project("routing.eval.yaml", EVAL + '  - {id: c, vars: {message: "refund"}, expected: refund}\n')
    pytester.makepyfile(test_plain="def test_ok(): pass")
    result = pytester.runpytest_subprocess("-n", "2")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["promptgate: 1 eval file(s) found, not run*--prompt-suite NAME*"])
    result = pytester.runpytest_subprocess("-n", "2", "--prompt-suite", "nope")
    result.stdout.fnmatch_lines(["promptgate: suite nope: 0 eval(s) selected of 1 eval file(s); the eval files that could be read list the suites: core"])
