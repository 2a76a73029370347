"""Model-graded graders end to end: the judge is any target — the team's function or a model endpoint."""

from __future__ import annotations

import pytest
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
        return '{"label": "polite"}' if "thanks" in answer.lower() else 'Clearly {"label": "rude"}.'
    return '```json\\n{"score": 5}\\n```' if len(answer) > 20 else 'I\\'d give it {"score": 1, "reason": "curt"}'
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
            return Reply(body=completion('{"label": "polite"}' if "Thanks" in prompt else '{"label": "rude"}'))
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
                return '{"label": "polite"}' if "Thanks" in prompt else '{"label": "rude"}'
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


# ----------------------------------------------------------------------------- the judgment protocol (issue 12, 15)

PROTOCOL = """
eval: protocol
suites: [core]
prompts: {p: {template: "{{answer}}"}}
target: echo
threshold: 0
graders:
  - {type: GRADER, judge: JUDGE, OPTIONS}
cases:
  - {id: one, vars: {answer: "Here is your refund."}}
  - {id: two, vars: {answer: "Go away."}}
"""
LABELS = "labels: [good, bad], passing_labels: [good]"


def protocol_eval(grader: str, judge: str) -> str:
    return PROTOCOL.replace("GRADER", grader).replace("JUDGE", judge).replace(
        "OPTIONS", LABELS if grader == "label_model" else "range: [1, 5]")


@pytest.mark.parametrize("grader", ["label_model", "score_model"])
def test_an_echo_judge_grades_nothing(project, pytester, grader):
    """The echoed prompt holds the labels and an example JSON object: it is not a judgment."""
    project("protocol.eval.yaml", protocol_eval(grader, "echo"))
    result = pytester.runpytest("--prompt-suite", "core")
    result.assert_outcomes(errors=2)
    key = "label" if grader == "label_model" else "score"
    result.stdout.fnmatch_lines([
        "*ERROR at setup of protocol::default::one*",
        f"grader '{grader}': the judge's reply has no {{\"{key}\": ...}} object: it only repeats the judge prompt",
    ])


def provider_judge(openai_server, answer: str) -> str:
    openai_server.reply_with(lambda request: Reply(body=completion(answer)))
    return "{provider: {base_url: " + openai_server.base_url + ", model: judge-model}}"


def test_a_judge_answering_the_protocol_passes(project, pytester, openai_server):
    judge = provider_judge(openai_server, 'Thinking it over... {"label": "good", "reason": "polite"}')
    project("protocol.eval.yaml", protocol_eval("label_model", judge))
    result = pytester.runpytest("--prompt-suite", "core", "-v")
    result.assert_outcomes(passed=2)
    assert openai_server.count == 2


@pytest.mark.parametrize(
    ("grader", "answer", "message"),
    [
        ("label_model", "The answer is good, not bad.",
         "grader 'label_model': the judge's reply has no {\"label\": ...} object: The answer is good, not bad."),
        ("label_model", '{"label": "great"}',
         "grader 'label_model': the judge said 'great', which is not one of the labels good, bad"),
        ("score_model", "I would give it a 4.",
         "grader 'score_model': the judge's reply has no {\"score\": ...} object: I would give it a 4."),
        ("score_model", '{"score": "high"}',
         "grader 'score_model': the judge's score 'high' is not a number"),
    ],
    ids=["prose-label", "unknown-label", "prose-score", "score-not-a-number"],
)
def test_a_reply_without_a_judgment_is_an_error_case(project, pytester, openai_server, grader, answer, message):
    project("protocol.eval.yaml", protocol_eval(grader, provider_judge(openai_server, answer)))
    result = pytester.runpytest("--prompt-suite", "core")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*ERROR at setup of protocol::default::one*", message])
