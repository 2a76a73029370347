"""Model-graded graders end to end: the judge is any target — the team's function or a model endpoint."""

from __future__ import annotations

from openai_server import Reply, completion

EVAL = """
eval: judged
suites: [core]
prompts: {p: {template: "{{answer}}"}}
target: echo
threshold: 0
graders:
  - type: label_model
    judge: JUDGE
    prompt: "Is this answer polite? Answer polite or rude. Answer: {{output}}"
    labels: [polite, rude]
    passing_labels: [polite]
    failure_mode: rude
  - type: score_model
    judge: JUDGE
    prompt: "Rate the helpfulness of: {{output}}"
    range: [1, 5]
    pass_threshold: 3
cases:
  - {id: kind, vars: {answer: "Thanks for asking, here it is, happy to help"}}
  - {id: curt, vars: {answer: "No."}}
"""

JUDGE = """
def judge(prompt):
    answer = prompt.rsplit(":", 1)[-1]
    if prompt.startswith("Is this answer polite"):
        return "polite" if "thanks" in answer.lower() else '{"label": "rude"}'
    return "Score: 5" if len(answer) > 20 else "I'd give it a 1 out of 5"
"""


def test_python_judge(project, pytester):
    pytester.makepyfile(judges=JUDGE)
    project("judged.eval.yaml", EVAL.replace("JUDGE", '"judges:judge"'))
    result = pytester.runpytest("--prompt-suite", "core")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["case curt*", "*FAILED label_model [[]rude]: *rude*", "*FAILED score_model: *1*"])


def test_provider_judge(project, pytester, openai_server):
    def judge(request):
        prompt = request["messages"][-1]["content"]
        if prompt.startswith("Is this answer polite"):
            return Reply(body=completion("polite" if "Thanks" in prompt else "rude"))
        return Reply(body=completion('{"score": 4}' if "Thanks" in prompt else '{"score": 2}'))

    openai_server.reply_with(judge)
    provider = "{provider: {base_url: " + openai_server.base_url + ", model: judge-model}}"
    project("judged.eval.yaml", EVAL.replace("JUDGE", provider))
    result = pytester.runpytest("--prompt-suite", "core", "-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*::default::kind PASSED*", "*::default::curt FAILED*"])
    assert openai_server.count == 4
    assert {r.json["model"] for r in openai_server.requests} == {"judge-model"}


def test_judge_that_cannot_be_reached_is_a_collection_error(project, pytester):
    project("judged.eval.yaml", EVAL.replace("JUDGE", '"nowhere:judge"'))
    result = pytester.runpytest("--prompt-suite", "core")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "judged.eval.yaml:8:12: graders[[]0].judge: cannot import module 'nowhere' for 'nowhere:judge'*",
        "judged.eval.yaml:14:12: graders[[]1].judge: cannot import module 'nowhere'*",
    ])


def test_fixture_judge_is_set_up_per_item_and_gets_the_judge_prompt(project, pytester):
    pytester.makeconftest("""
        import pytest
        SETUPS = []

        @pytest.fixture  # function scope: a fresh judge for every item
        def judge():
            SETUPS.append(1)
            alive = True
            def answer(prompt):
                assert alive, "a torn-down judge was called"
                return "polite" if "Thanks" in prompt else "rude"
            yield answer
            alive = False

        def pytest_sessionfinish(session):
            print("judge setups:", len(SETUPS))
    """)
    text = EVAL.replace("JUDGE", '"fixture:judge"').replace(
        'prompts: {p: {template: "{{answer}}"}}', 'prompts: {p: {template: "{{answer}}"}, other: {template: x}}'
    ).replace("target: echo", "target: app:upper")
    # keep only the label grader
    text = text[: text.index("  - type: score_model")] + text[text.index("cases:"):]
    pytester.makepyfile(app="def upper(prompts):\n    return prompts['p']\n")
    project("judged.eval.yaml", text)
    result = pytester.runpytest("--prompt-suite", "core", "-s")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*judge setups: 2*"])
