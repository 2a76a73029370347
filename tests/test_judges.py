"""Judges measured (issue 15): ``judge_repeat`` flags a judge that disagrees with itself, and judge calls'
tokens, cost and latency are counted apart from the target's, gated, bounded and replayed.

The judge is a real OpenAI-compatible HTTP server on 127.0.0.1 (``tests/openai_server.py``) that flips its
answer from one request to the next, so every ask of ``judge_repeat`` is a real call that the server counts.
"""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest
from openai_server import Reply, completion

from pytest_promptgate.graders import GradeContext, GradeResult, GraderRegistry
from pytest_promptgate.targets import TargetResult

# Prices per million tokens of the judge's model: each call (7 prompt and 3 completion tokens) costs 0.013 USD.
EVAL = """
eval: judged
suites: [core]
prompts: {p: {template: "{{answer}}"}}
target: echo
threshold: 0
pricing: {judge-model: {input: 1000, output: 2000}}
graders:
  - type: label_model
    name: polite
    judge: {provider: {base_url: BASE_URL, model: judge-model}}
    prompt: "Is this answer polite? Answer: {{output}}"
    labels: [polite, rude]
    passing_labels: [polite]
    judge_repeat: 3
cases:
  - {id: kind, vars: {answer: "Thanks, happy to help"}}
  - {id: curt, vars: {answer: "No."}}
  - {id: steady, vars: {answer: "steady: thank you"}}
"""


def flipping(server):
    """The judge: 'steady' answers are always polite; about each other answer it flips from one ask to the next,
    starting with rude for "No." and with polite for the others (counted per prompt: cases may run in any order)."""
    lock, asks = threading.Lock(), Counter()

    def judge(request):
        prompt = request["messages"][-1]["content"]
        if "steady" in prompt:
            return Reply(body=completion('{"label": "polite"}', model="judge-model"))
        with lock:
            asks[prompt] += 1
            n = asks[prompt]
        first, other = ("rude", "polite") if prompt.endswith("No.") else ("polite", "rude")
        label = first if n % 2 else other
        return Reply(body=completion(json.dumps({"label": label, "reason": f"ask {n}"}), model="judge-model"))

    server.reply_with(judge)


def write_eval(project, server, text=EVAL):
    project("judged.eval.yaml", text.replace("BASE_URL", server.base_url))


@pytest.mark.parametrize("args", [(), ("-n", "2")], ids=["one-process", "xdist"])
def test_a_judge_that_flips_is_flagged_unstable_and_its_calls_are_counted_apart(project, pytester, openai_server, args):
    flipping(openai_server)
    write_eval(project, openai_server)
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-report", "report.json",
                                "--prompt-report-md", "report.md", *args)
    # kind: polite, rude, polite -> polite; curt: rude, polite, rude -> rude; steady: polite three times.
    result.assert_outcomes(passed=2, failed=1)
    assert openai_server.count == 9  # three asks for each of three cases
    result.stdout.fnmatch_lines([
        "case curt*",
        "*FAILED polite: judge said 'rude' (2 of 3 asks; unstable: 'rude' 2, 'polite' 1): ask 1",
        "*unstable judgments of judged [[]default] (the judge disagreed with itself; runs per grader): polite 2",
    ])
    [row] = json.loads((pytester.path / "report.json").read_text())["evals"]
    assert row["unstable_judgments"] == {"polite": 2}
    assert (row["judge_calls"], row["judge_input_tokens"], row["judge_output_tokens"]) == (9, 63, 27)
    assert row["judge_cost_usd_total"] == pytest.approx(9 * 0.013)
    assert row["judge_latency_ms_p95"] > 0
    # The target (echo) reported no tokens and no cost: the judge's are not the target's.
    assert (row["input_tokens"], row["cost_usd_total"]) == (None, None)
    cases = {c["case_id"]: c for c in json.loads((pytester.path / "report.json").read_text())["cases"]}
    assert [g["unstable"] for g in cases["steady"]["runs"][0]["graders"]] == [False]
    assert "judge said 'polite' (3 of 3 asks)" in cases["steady"]["runs"][0]["graders"][0]["reason"]
    assert "- unstable judgments of judged [default] (the judge disagreed with itself; runs per grader): polite 2" in (
        (pytester.path / "report.md").read_text())


def test_judge_cost_is_logged_to_mlflow_and_a_gate_on_it_trips(project, pytester, openai_server, tracking_on):
    from mlflow.tracking import MlflowClient

    flipping(openai_server)
    write_eval(project, openai_server, EVAL + """
gates:
  on_fail: fail
  rules:
    - {metric: judge_cost_usd_total, max: 0.1}
    - {metric: judge_latency_ms_p95, max: 60000}
""")
    result = pytester.runpytest("--prompt-suite", "core")
    assert result.ret == 1
    result.stdout.fnmatch_lines([
        "gate of judged [[]default] tripped (fail: fails the session): judge_cost_usd_total 0.117 above max 0.1",
        "promptgate: session FAILED: 1 gate(s) with on_fail: fail tripped",
    ])
    [run] = MlflowClient(tracking_uri=tracking_on).search_runs(
        [e.experiment_id for e in MlflowClient(tracking_uri=tracking_on).search_experiments()
         if e.name.endswith("judged")])
    metrics = run.data.metrics
    assert metrics["judge_cost_usd_total"] == pytest.approx(0.117)
    assert (metrics["judge_calls"], metrics["judge_input_tokens"], metrics["judge_output_tokens"]) == (9, 63, 27)
    assert metrics["grader.polite.unstable_judgments"] == 2
    assert "cost_usd_total" not in metrics  # the target's own cost: echo has none


def test_replay_asks_no_judge_and_keeps_each_ask_apart(project, pytester, openai_server):
    flipping(openai_server)
    write_eval(project, openai_server)
    pytester.runpytest("--prompt-suite", "core", "--prompt-cache", "record").assert_outcomes(passed=2, failed=1)
    assert openai_server.count == 9
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-cache", "replay", "--prompt-report", "r.json")
    result.assert_outcomes(passed=2, failed=1)  # the same grades: each ask's answer was recorded apart
    assert openai_server.count == 9  # no judge call
    [row] = json.loads((pytester.path / "r.json").read_text())["evals"]
    assert row["unstable_judgments"] == {"polite": 2}
    assert row["judge_cost_usd_total"] == pytest.approx(0.117)  # replayed calls are priced like fresh ones


def test_judge_calls_run_inside_the_concurrency_bound(project, pytester, openai_server):
    """Target calls fetched ahead fill the pool while pytest's thread asks the judge: together never above N."""
    lock, state = threading.Lock(), {"in_flight": 0, "peak": 0}

    def slow(request):
        judged = "polite?" in request["messages"][-1]["content"]
        with lock:
            state["in_flight"] += 1
            state["peak"] = max(state["peak"], state["in_flight"])
        try:  # the target slower than the judge: the pool is busy with calls fetched ahead while the judge is asked
            openai_server._wait(0.02 if judged else 0.3)
        finally:
            with lock:
                state["in_flight"] -= 1
        return Reply(body=completion('{"label": "polite"}' if judged else "fine"))

    openai_server.reply_with(slow)
    provider = "{provider: {base_url: " + openai_server.base_url + ", model: m}}"
    cases = "\n".join(f"  - {{id: c{i}, vars: {{answer: a{i}}}}}" for i in range(8))
    project("bound.eval.yaml", f"""
eval: bound
suites: [core]
prompts: {{p: {{template: "{{{{answer}}}}"}}}}
target: {provider}
threshold: 0
graders:
  - {{type: label_model, judge: {provider}, prompt: "polite? {{{{output}}}}", labels: [polite, rude],
      passing_labels: [polite], judge_repeat: 2}}
cases:
{cases}
""")
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-concurrency", "2")
    result.assert_outcomes(passed=8)
    assert openai_server.count == 8 + 16
    assert state["peak"] == 2


# ----------------------------------------------------------------------------- how k answers make one grade


def grade_with_answers(grader_type, options, answers):
    """Grade one output with a judge that gives ``answers`` in turn; also returns the asks it received."""
    asked = []

    def judge(spec, prompt, ask=1):
        asked.append(ask)
        return TargetResult(output=answers[len(asked) - 1])

    registry = GraderRegistry.build([])
    registry.options_model(grader_type).model_validate(options)
    grader = registry.create(grader_type, options)
    ctx = GradeContext(output="Here you go.", expected=None, vars={}, result=TargetResult(output="Here you go."),
                       case_id="c1", variant="default", judge=judge)
    return grader.grade(ctx), asked


LABELS = {"judge": "m:f", "prompt": "Polite? {{output}}", "labels": ["good", "bad"], "passing_labels": ["good"]}


def test_a_tie_of_labels_goes_to_the_failing_one():
    grade, asked = grade_with_answers("label_model", {**LABELS, "judge_repeat": 2}, ['{"label": "good"}', '{"label": "bad"}'])
    assert grade == GradeResult(False, 0.0, "judge said 'bad' (1 of 2 asks; unstable: 'good' 1, 'bad' 1)", unstable=True)
    assert asked == [1, 2]


def test_one_ask_reads_as_before_and_agreeing_asks_are_stable():
    grade, _ = grade_with_answers("label_model", LABELS, ['{"label": "good", "reason": "kind"}'])
    assert grade == GradeResult(True, 1.0, "judge said 'good': kind")
    grade, _ = grade_with_answers("label_model", {**LABELS, "judge_repeat": 3}, ['{"label": "Good"}'] * 3)
    assert grade == GradeResult(True, 1.0, "judge said 'good' (3 of 3 asks)")


def test_scores_are_averaged_and_unstable_across_the_threshold():
    options = {"judge": "m:f", "prompt": "Rate {{output}}", "judge_repeat": 3}
    grade, _ = grade_with_answers("score_model", options, ['{"score": 5}', '{"score": 2}', '{"score": 5}'])
    assert grade == GradeResult(True, 0.75, "judge scored 5, 2, 5 of 1..5 (mean 4; unstable: on both sides of 4), passes at 4",
                                unstable=True)
    grade, _ = grade_with_answers("score_model", options, ['{"score": 4}', '{"score": 5}', '{"score": 9}'])
    assert grade == GradeResult(True, (14 / 3 - 1) / 4, "judge scored 4, 5, 9 of 1..5 (mean 4.67), passes at 4")
    # A mean at the threshold passes, though it comes out of floating point as 3.9999999999999996.
    grade, _ = grade_with_answers("score_model", options, ['{"score": 3.8}', '{"score": 4.6}', '{"score": 3.6}'])
    assert grade.passed and grade.reason == "judge scored 3.8, 4.6, 3.6 of 1..5 (mean 4; unstable: on both sides of 4), passes at 4"
    grade, _ = grade_with_answers("score_model", options, ['{"score": 3.999}', '{"score": 3.999}', '{"score": 4}'])
    assert not grade.passed and grade.reason == "judge scored 3.999, 3.999, 4 of 1..5 (mean 3.99933; unstable: on both sides of 4), below 4"


def test_an_ask_without_a_judgment_is_an_error_case_not_outvoted():
    from pytest_promptgate.graders import CannotGrade

    with pytest.raises(CannotGrade, match="the judge's reply has no"):
        grade_with_answers("label_model", {**LABELS, "judge_repeat": 3}, ['{"label": "good"}', "dunno", '{"label": "good"}'])
