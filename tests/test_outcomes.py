"""Outcomes and exit status: tolerance by threshold, strict mode, repeat and flaky cases, failure text."""

from __future__ import annotations

import pytest
from conftest import COIN, coin_eval

ROUTING = """
eval: routing
suites: [core]
prompts: {{p: {{template: "{{{{message}}}}"}}}}
target: app:label
threshold: {threshold}
graders:
  - {{type: equals, value: "{{{{expected}}}}", failure_mode: wrong_label}}
cases:
  - {{id: r1, vars: {{message: "refund please"}}, expected: refund}}
  - {{id: r2, vars: {{message: "money back"}}, expected: refund}}
  - {{id: r3, vars: {{message: "refund it"}}, expected: refund}}
  - {{id: bad, vars: {{message: "hello there"}}, expected: refund}}
"""


def test_failed_case_within_threshold_exits_0(project, pytester):
    project("routing.eval.yaml", ROUTING.format(threshold=0.75))
    result = pytester.runpytest("--prompt-suite", "core")
    result.assert_outcomes(passed=3, failed=1)
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "*= promptgate =*",
        "eval*variant*cases*fail/err/flaky*pass rate ?95% CI?*threshold*baseline*delta (p)*verdict*score*cost $*p95 ms",
        "routing*default*4*1/0/0*75.0% ?30%-95%?*75%*off*-*PASS*0.750*",
        "promptgate: session passes: 1 failed or errored case(s) tolerated; no verdict fails the session",
    ])


def test_eval_below_threshold_exits_1(project, pytester):
    project("routing.eval.yaml", ROUTING.format(threshold=0.8))
    result = pytester.runpytest("--prompt-suite", "core")
    result.assert_outcomes(passed=3, failed=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines([
        "routing*default*75.0%*80%*REGRESSION*",
        "routing [default]: REGRESSION: pass rate 75.0% below threshold 80%; tracking off: judged by the threshold alone",
        "promptgate: session FAILED: 1 eval variant(s) with verdict REGRESSION",
    ])


def test_strict_fails_on_any_failed_case(project, pytester):
    project("routing.eval.yaml", ROUTING.format(threshold=0.5))
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-strict")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["promptgate: session FAILED: --prompt-strict and 1 failed or errored case(s)"])


def test_ordinary_test_failure_still_fails_the_session(project, pytester):
    project("routing.eval.yaml", ROUTING.format(threshold=0.5))
    pytester.makepyfile(test_plain="def test_broken(): assert False")
    result = pytester.runpytest("--prompt-suite", "core")
    result.assert_outcomes(passed=3, failed=2)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["promptgate: session FAILED: 1 failure(s) outside eval cases (tests, fixtures, teardowns)"])


def test_failure_text_shows_vars_expected_output_and_reasons(project, pytester):
    project("routing.eval.yaml", ROUTING.format(threshold=0.5).replace(
        "expected: refund}}\n\"\"\"", "expected: refund}}\n"
    ) + """  - id: long
    vars: {message: "hello"}
    expected: refund
    graders: [{type: contains, value: "refund"}]
""")
    result = pytester.runpytest("--prompt-suite", "core")
    result.stdout.fnmatch_lines([
        "*_ routing::default::bad _*",
        "case bad (variant default) failed",
        '  vars:     {"message": "hello there"}',
        "  expected: refund",
        "  output:   'other'",
        "  FAILED equals [[]wrong_label]: *'refund'*'other'*",
    ])
    result.stdout.fnmatch_lines(["*_ routing::default::long _*", "case long*", "*FAILED equals*", "*FAILED contains: *"])


def test_repeat_and_flaky_cases(project, pytester):
    pytester.makepyfile(coin=COIN)
    project("coin.eval.yaml", coin_eval(0.5, steady="hhh", mostly="hht", rarely="htt"))
    result = pytester.runpytest("--prompt-suite", "core", "-v")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([
        "*::default::steady PASSED*",
        "*::default::mostly PASSED (flaky)*",
        "*::default::rarely FAILED (flaky)*",
    ])
    result.stdout.fnmatch_lines(["case rarely (variant default) failed: 1/3 runs passed, needs 60% (flaky)"])
    result.stdout.fnmatch_lines(["coin*default*3*1/0/2*66.7%*50%*PASS*"])
    assert result.ret == 0


def test_grader_that_raises_makes_an_error_case(project, pytester):
    pytester.makepyfile(checks="def explode(output):\n    raise RuntimeError('grader bug')\n")
    project("e.eval.yaml", """
        eval: e
        suites: [core]
        target: echo
        prompts: {p: {template: hi}}
        graders: [{type: python, fn: "checks:explode"}]
        cases: [{id: a}]
    """)
    result = pytester.runpytest("--prompt-suite", "core")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*grader 'python' raised RuntimeError: grader bug", "  at checks.py:2 in explode"])
    assert result.ret == 1


def test_grader_weights_and_optional_graders(project, pytester):
    project("w.eval.yaml", """
        eval: w
        suites: [core]
        target: echo
        prompts: {p: {template: "hello world"}}
        graders:
          - {type: contains, value: hello, weight: 3}
          - {type: contains, value: absent, required: false, name: nice-to-have, failure_mode: missing_extra}
        cases: [{id: a}]
    """)
    result = pytester.runpytest("--prompt-suite", "core")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["w*default*1*0/0/0*100.0%*100%*PASS*0.750*"])


def test_custom_grader_from_conftest_hook(project, pytester):
    pytester.makeconftest("""
        from pytest_promptgate.graders import BaseGrader, GradeResult
        from pytest_promptgate.graders.base import Options

        class ShoutOptions(Options):
            min_bangs: int = 1

        class Shout(BaseGrader):
            type = "shout"
            Options = ShoutOptions
            def grade(self, ctx):
                n = ctx.output.count("!")
                return GradeResult(n >= self.options.min_bangs, min(1.0, n / self.options.min_bangs), f"{n} bangs")

        def short(output, options):
            return len(output) <= options.get("max", 5), "length check"

        def pytest_promptgate_register_graders(config):
            return {"shout": Shout, "short": short}
    """)
    project("c.eval.yaml", """
        eval: c
        suites: [core]
        target: echo
        prompts: {p: {template: "{{text}}"}}
        threshold: 0
        graders: [{type: shout, min_bangs: 2}, {type: short, max: 4}]
        cases:
          - {id: loud, vars: {text: "no!!"}}
          - {id: quiet, vars: {text: "quiet!"}}
    """)
    result = pytester.runpytest("--prompt-suite", "core")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*FAILED shout: 1 bangs*", "*FAILED short: length check*"])
    project("c.eval.yaml", """
        eval: c
        suites: [core]
        target: echo
        graders: [{type: shout, min_bang: 2}]
        cases: [{id: a}]
    """)
    result = pytester.runpytest("--prompt-suite", "core")
    result.stdout.fnmatch_lines(["*graders[[]0].min_bang: unknown key 'min_bang' (did you mean 'min_bangs'?)*"])


def test_custom_grader_from_entry_point(project, pytester):
    pytester.makepyfile(extra_graders="def yelling(output):\n    return output.isupper()\n")
    dist = pytester.path / "extra_graders-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: extra-graders\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[pytest_promptgate.graders]\nyelling = extra_graders:yelling\n")
    project("y.eval.yaml", """
        eval: y
        suites: [core]
        target: app:upper
        prompts: {p: {template: "{{text}}"}}
        graders: [{type: yelling}]
        cases: [{id: a, vars: {text: "hey"}}]
    """)
    pytester.runpytest("--prompt-suite", "core").assert_outcomes(passed=1)


def test_grader_name_clash_is_a_usage_error(project, pytester):
    pytester.makeconftest("""
        def pytest_promptgate_register_graders(config):
            return {"equals": lambda output: True}
    """)
    project("c.eval.yaml", "eval: c\nsuites: [core]\ntarget: echo\ncases: [{id: a}]\n")
    result = pytester.runpytest("--prompt-suite", "core")
    result.stderr.fnmatch_lines(["ERROR: promptgate: grader type 'equals' from pytest_promptgate_register_graders is already registered by pytest-promptgate*"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_unnamed_graders_of_one_type_get_distinct_labels_and_modes_are_counted(project, pytester):
    project("d.eval.yaml", """
        eval: d
        suites: [core]
        target: echo
        prompts: {p: {template: "{{text}}"}}
        threshold: 0
        graders:
          - {type: contains, value: alpha, failure_mode: no_alpha}
          - {type: contains, value: beta, failure_mode: no_beta}
        cases:
          - {id: one, vars: {text: "alpha"}, graders: [{type: contains, value: gamma}]}
          - {id: two, vars: {text: "gamma"}}
    """)
    result = pytester.runpytest("--prompt-suite", "core")
    result.stdout.fnmatch_lines([
        "case one*", "*FAILED contains_2 [[]no_beta]: *'beta'*", "*FAILED contains_3: *'gamma'*",
        "case two*", "*FAILED contains [[]no_alpha]: *'alpha'*", "*FAILED contains_2 [[]no_beta]: *'beta'*",
    ])
    result.stdout.fnmatch_lines(["failure modes of d [[]default]: no_beta 2, no_alpha 1"])


def test_x_says_pytest_decides_the_exit(project, pytester):
    project("routing.eval.yaml", ROUTING.format(threshold=0.5).replace("  - {id: bad,", "  - {id: bad,", 1))
    result = pytester.runpytest("--prompt-suite", "core", "-x")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["promptgate: session stopped early (-x / --maxfail), so pytest's exit status stands*"])


def test_register_hook_returning_a_list_is_a_usage_error(project, pytester):
    pytester.makeconftest("""
        def pytest_promptgate_register_graders(config):
            return ["not", "a", "mapping"]
    """)
    project("c.eval.yaml", "eval: c\nsuites: [core]\ntarget: echo\ncases: [{id: a}]\n")
    result = pytester.runpytest("--prompt-suite", "core")
    result.stderr.fnmatch_lines(["ERROR: promptgate: pytest_promptgate_register_graders must return a mapping*got list"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_grader_clash_under_xdist_is_reported_once(project, pytester):
    pytester.makeconftest("""
        import pytest
        @pytest.hookimpl(optionalhook=True)
        def pytest_promptgate_register_graders(config):
            return {"equals": lambda output: True}
    """)
    project("a.eval.yaml", "eval: a\nsuites: [core]\ntarget: echo\ncases: [{id: a}]\n")
    project("b.eval.yaml", "eval: b\nsuites: [core]\ntarget: echo\ncases: [{id: a}]\n")
    result = pytester.runpytest_subprocess("--prompt-suite", "core", "-n", "2")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(errors=1)  # two files, one message: xdist drops the repeat
    result.stdout.fnmatch_lines(["*grader type 'equals' from pytest_promptgate_register_graders is already registered*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_automatic_labels_skip_names_users_gave(project, pytester):
    project("n.eval.yaml", """
        eval: n
        suites: [core]
        target: echo
        prompts: {p: {template: "x"}}
        threshold: 0
        graders:
          - {type: contains, value: a}
          - {type: contains, value: b}
          - {type: contains, value: c, name: contains_2}
        cases: [{id: a}]
    """)
    result = pytester.runpytest("--prompt-suite", "core")
    result.stdout.fnmatch_lines(["*FAILED contains: *'a'*", "*FAILED contains_3: *'b'*", "*FAILED contains_2: *'c'*"])


def test_a_broken_test_module_still_fails_with_continue_on_collection_errors(project, pytester):
    project("routing.eval.yaml", ROUTING.format(threshold=0.5))
    pytester.makepyfile(test_broken="def test_y(:\n    pass\n")
    result = pytester.runpytest("--prompt-suite", "core", "--continue-on-collection-errors")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["promptgate: session FAILED: 1 failure(s) outside eval cases*"])
