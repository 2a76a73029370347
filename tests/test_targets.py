"""Targets: the team's functions (sync and async), fixtures, echo; results, tokens and cost; crashes."""

from __future__ import annotations

import json

import pytest

EVAL = """
eval: t
suites: [core]
prompts: {p: {template: "{{message}}"}}
target: TARGET
graders: [{type: equals, value: "{{expected}}"}]
cases:
  - {id: refund, vars: {message: "refund please"}, expected: refund}
  - {id: other, vars: {message: "hello"}, expected: other}
"""


@pytest.fixture
def report_of(pytester, recorded):
    """Run the evals; the outcome, and the case results by case id."""
    def run(*args):
        result = pytester.runpytest("--prompt-suite", "core", *args)
        return result, {r["case_id"]: r for r in recorded()}
    return run


def test_sync_callable_gets_declared_arguments(project, report_of):
    project("t.eval.yaml", EVAL.replace("TARGET", "app:label"))
    result, cases = report_of()
    result.assert_outcomes(passed=2)
    assert cases["refund"]["runs"][0]["output"] == "refund"


def test_async_callable_is_awaited_with_tokens_and_priced_cost(project, report_of):
    project("t.eval.yaml", EVAL.replace("TARGET", "app:async_label"))
    result, cases = report_of()
    result.assert_outcomes(passed=2)
    run = cases["refund"]["runs"][0]
    assert (run["input_tokens"], run["output_tokens"], run["model"]) == (100, 10, "gpt-4o-mini")
    # gpt-4o-mini: 0.15 USD / 1M input, 0.60 USD / 1M output
    assert abs(run["cost_usd"] - (100 * 0.15 + 10 * 0.60) / 1e6) < 1e-15


def test_pricing_overridden_by_ini_then_eval_file(project, pytester, report_of):
    project("t.eval.yaml", EVAL.replace("TARGET", "app:async_label"))
    pytester.makeini("[pytest]\npromptgate_pricing =\n    gpt-4o-mini 1.0 2.0\n")
    _, cases = report_of()
    assert abs(cases["refund"]["runs"][0]["cost_usd"] - (100 * 1.0 + 10 * 2.0) / 1e6) < 1e-15
    project("t.eval.yaml", EVAL.replace("TARGET", "app:async_label") + "pricing: {gpt-4o-mini: {input: 10, output: 20}}\n")
    _, cases = report_of()
    assert abs(cases["refund"]["runs"][0]["cost_usd"] - (100 * 10 + 10 * 20) / 1e6) < 1e-15


def test_bad_pricing_ini_is_a_usage_error(project, pytester):
    project("t.eval.yaml", EVAL.replace("TARGET", "app:async_label"))
    pytester.makeini("[pytest]\npromptgate_pricing =\n    gpt-4o-mini cheap\n")
    result = pytester.runpytest("--prompt-suite", "core")
    result.stderr.fnmatch_lines(["*promptgate_pricing: expected 'MODEL INPUT_USD OUTPUT_USD' per line*"])
    assert result.ret == 4


def test_fixture_target_is_set_up_once_per_session(project, pytester):
    project("t.eval.yaml", EVAL.replace("TARGET", "fixture:labeller"))
    pytester.makeconftest("""
        import pytest, app
        SETUPS = []
        @pytest.fixture(scope="session")
        def labeller():
            SETUPS.append(1)
            return app.label
        def pytest_sessionfinish(session):
            print("setups:", len(SETUPS))
    """)
    result = pytester.runpytest("--prompt-suite", "core", "-s")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*setups: 1*"])


def test_fixture_target_that_is_not_callable(project, pytester):
    project("t.eval.yaml", EVAL.replace("TARGET", "fixture:labeller"))
    pytester.makeconftest("""
        import pytest
        @pytest.fixture
        def labeller():
            return 42
    """)
    result = pytester.runpytest("--prompt-suite", "core")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*fixture 'labeller' (target 'fixture:labeller') gave a int; it must give a callable*"])


def test_echo_returns_rendered_prompt(project, pytester):
    project("t.eval.yaml", """
        eval: t
        suites: [core]
        prompts: {p: {template: "Say {{word}}!"}}
        target: echo
        graders: [{type: equals, value: "Say {{word}}!"}]
        cases: [{id: a, vars: {word: hi}}]
    """)
    pytester.runpytest("--prompt-suite", "core").assert_outcomes(passed=1)


def test_crashing_target_is_an_error_case_not_a_broken_session(project, pytester):
    project("t.eval.yaml", """
        eval: t
        suites: [core]
        target: app:crash
        threshold: 0.5
        graders: [{type: equals, value: ok}]
        cases:
          - {id: fine, vars: {message: hi}}
          - {id: boom, vars: {message: boom}}
    """)
    result = pytester.runpytest("--prompt-suite", "core")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([
        "*ERROR at setup of t::default::boom*",
        "target app:crash raised KeyError: 'missing'",
        "  at app.py:*in crash",
        "*return {}*",
    ])
    result.stdout.fnmatch_lines(["t  *default  *2  *0/1/0  *50.0%*"])
    assert result.ret == 0  # one error of two cases is within threshold 0.5


def test_target_returning_the_wrong_type_is_an_error_case(project, pytester):
    pytester.makepyfile(weird="def none(): return None\ndef nokey(): return {'text': 'x'}\n")
    project("t.eval.yaml", """
        eval: t
        suites: [core]
        target: weird:none
        variants:
          - name: none
          - {name: nokey, target: "weird:nokey"}
        cases: [{id: a}]
    """)
    result = pytester.runpytest("--prompt-suite", "core")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*target weird:none returned NoneType; expected a string, or a mapping/object with 'output'*"])
    result.stdout.fnmatch_lines(["*target weird:nokey returned a mapping without 'output' (keys: text)*"])


def test_target_requiring_an_unknown_argument_is_a_collection_error(project, pytester):
    pytester.makepyfile(weird="def needs(prompt, customer_id): return 'x'\n")
    project("t.eval.yaml", """
        eval: t
        suites: [core]
        prompts: {p: {template: x}}
        target: weird:needs
        cases: [{id: a}]
    """)
    result = pytester.runpytest("--prompt-suite", "core")
    result.stdout.fnmatch_lines(["t.eval.yaml:4:9: target: target weird:needs requires 'customer_id', which promptgate cannot supply*"])


def test_prompt_argument_with_several_prompts_is_a_collection_error(project, pytester):
    project("t.eval.yaml", """
        eval: t
        suites: [core]
        prompts: {a: {template: x}, b: {template: y}}
        target: app:upper
        cases: [{id: a}]
    """)
    result = pytester.runpytest("--prompt-suite", "core")
    result.stdout.fnmatch_lines(["*takes 'prompt' but the eval has several prompts (a, b); take 'prompts'*"])


def test_variant_params_prompts_and_chat_messages_reach_the_target(project, pytester, recorded):
    pytester.makepyfile(seen="""
        import json
        def target(prompts, params, variant, vars):
            return json.dumps({"prompts": prompts, "params": params, "variant": variant, "vars": vars}, sort_keys=True)
    """)
    project("t.eval.yaml", """
        eval: t
        suites: [core]
        prompts:
          sys: {template: "Be {{tone}}."}
          chat:
            messages:
              - {role: system, content: "You help {{who}}."}
              - {role: user, content: "{{question}}"}
        target: seen:target
        variants:
          - name: base
          - name: warm
            params: {temperature: 0.7}
            prompts: {sys: {template: "Be warm and {{tone}}."}}
        cases: [{id: a, vars: {tone: brief, who: shoppers, question: "Where is it?"}}]
    """)
    pytester.runpytest("--prompt-suite", "core").assert_outcomes(passed=2)
    results = recorded()
    outputs = {r["variant"]: json.loads(r["runs"][0]["output"]) for r in results}
    assert outputs["base"]["prompts"]["sys"] == "Be brief."
    assert outputs["warm"]["prompts"]["sys"] == "Be warm and brief."
    assert outputs["warm"]["params"] == {"temperature": 0.7}
    assert outputs["base"]["prompts"]["chat"] == [
        {"role": "system", "content": "You help shoppers."},
        {"role": "user", "content": "Where is it?"},
    ]
    assert outputs["warm"]["variant"] == "warm"


def test_an_error_in_one_of_several_runs_names_the_run(project, pytester):
    pytester.makepyfile(sometimes="""
        N = []
        def target():
            N.append(1)
            if len(N) == 2:
                raise TimeoutError("upstream slow")
            return "ok"
    """)
    project("r.eval.yaml", "eval: r\nsuites: [core]\ntarget: sometimes:target\nrepeat: 3\ncases: [{id: a}]\n")
    result = pytester.runpytest("--prompt-suite", "core")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["run 2/3: target sometimes:target raised TimeoutError: upstream slow"])


def test_a_result_with_a_bad_field_is_an_error_case(project, pytester):
    pytester.makepyfile(odd="def target():\n    return {'output': 'x', 'cost_usd': 'n/a'}\n")
    project("o.eval.yaml", "eval: o\nsuites: [core]\ntarget: odd:target\ncases: [{id: a}]\n")
    result = pytester.runpytest("--prompt-suite", "core")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["target odd:target raised ValueError: could not convert string to float: 'n/a'"])
