"""A provider target end to end: an eval file pointed at a real OpenAI-compatible server on 127.0.0.1.

Each case's message makes the server misbehave in its own way; every case must end
in the right outcome, and the API key must appear nowhere in what pytest prints.
"""

from __future__ import annotations

import json
from collections import Counter

from openai_server import Reply, completion, error

SECRET = "sk-test-SUPERSECRET-42"

EVAL = """
eval: chat
suites: [core]
prompts:
  ask: {template: "{{message}}"}
target:
  provider:
    base_url: BASE_URL
    model: gpt-4o-mini
    api_key_env: PROMPTGATE_TEST_KEY
    params: {temperature: 0}
    timeout: 1.5  # a margin: eight calls run at once (--prompt-concurrency) on a loaded machine
    retries: 1
threshold: 0
graders: [{type: equals, value: "{{expected}}"}]
cases:
  - {id: fine, vars: {message: "fine"}, expected: "fine"}
  - {id: wrong, vars: {message: "wrong"}, expected: "right"}
  - {id: rate-limited, vars: {message: "rate-limited"}, expected: "rate-limited"}
  - {id: flaky-server, vars: {message: "flaky-server"}, expected: "flaky-server"}
  - {id: down, vars: {message: "down"}, expected: "down"}
  - {id: slow, vars: {message: "slow"}, expected: "slow"}
  - {id: garbage, vars: {message: "garbage"}, expected: "garbage"}
  - {id: no-choices, vars: {message: "no-choices"}, expected: "no-choices"}
"""


def misbehaving(seen: Counter):
    def reply(request):
        message = request["messages"][-1]["content"]
        seen[message] += 1
        first = seen[message] == 1
        if message == "rate-limited" and first:
            return Reply(429, error("slow down", "rate_limit_error"), headers={"Retry-After": "1"})
        if message == "flaky-server" and first:
            return Reply(500, error("upstream hiccup"))
        if message == "down":
            return Reply(503, error(f"overloaded (you sent {request.get('model')})"))
        if message == "slow":
            return Reply(body=completion("too late"), delay=3.0)
        if message == "garbage":
            return Reply(200, "<html>proxy error</html>", headers={"Content-Type": "text/html"})
        if message == "no-choices":
            return Reply(200, {"id": "x", "object": "chat.completion"})
        return Reply(body=completion(message, model="gpt-4o-mini-2024-07-18", prompt_tokens=1000, completion_tokens=100))
    return reply


def test_provider_outcomes_and_no_key_in_output(project, pytester, recorded, openai_server, monkeypatch):
    monkeypatch.setenv("PROMPTGATE_TEST_KEY", SECRET)
    seen: Counter = Counter()
    openai_server.reply_with(misbehaving(seen))
    project("chat.eval.yaml", EVAL.replace("BASE_URL", openai_server.base_url))
    result = pytester.runpytest("--prompt-suite", "core", "-rA")
    result.assert_outcomes(passed=3, failed=1, errors=4)
    results = {r["case_id"]: r for r in recorded()}

    # retried successes
    assert seen["rate-limited"] == 2 and results["rate-limited"]["error"] is None
    assert seen["flaky-server"] == 2 and results["flaky-server"]["error"] is None
    # a plain success: tokens captured, cost from the pricing table by the dated model name
    run = results["fine"]["runs"][0]
    assert (run["input_tokens"], run["output_tokens"], run["model"]) == (1000, 100, "gpt-4o-mini-2024-07-18")
    assert abs(run["cost_usd"] - (1000 * 0.15 + 100 * 0.60) / 1e6) < 1e-12
    # error cases, each with a clear reason
    assert seen["down"] == 2
    assert "HTTP 503" in results["down"]["error"] and "overloaded" in results["down"]["error"]
    assert "timed out: the deadline of 1.5 s per attempt passed after 2 attempts" in results["slow"]["error"]
    assert "malformed response" in results["garbage"]["error"]
    assert "malformed response" in results["no-choices"]["error"]
    result.stdout.fnmatch_lines(["*ERROR at setup of chat::default::down*", "*HTTP 503 from http://127.0.0.1:*"])

    # what the server received: model, params and the key as a bearer token
    request = next(r for r in openai_server.requests if r.json and r.json["messages"][-1]["content"] == "fine")
    assert request.json["model"] == "gpt-4o-mini" and request.json["temperature"] == 0
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    # ... and the key never appears in anything pytest printed or recorded
    assert SECRET not in result.stdout.str() + result.stderr.str()
    assert SECRET not in (pytester.path / "results.json").read_text()


def test_missing_key_variable_is_an_error_case(project, pytester, openai_server, monkeypatch):
    monkeypatch.delenv("PROMPTGATE_TEST_KEY", raising=False)
    project("chat.eval.yaml", EVAL.replace("BASE_URL", openai_server.base_url))
    result = pytester.runpytest("--prompt-suite", "core", "-k", "fine")
    result.assert_outcomes(errors=1, deselected=7)
    result.stdout.fnmatch_lines(["*environment variable PROMPTGATE_TEST_KEY is not set*"])
    assert openai_server.count == 0


def test_provider_with_several_prompts_needs_prompt_named(project, pytester, openai_server):
    project("chat.eval.yaml", EVAL.replace("BASE_URL", openai_server.base_url).replace(
        '  ask: {template: "{{message}}"}', '  ask: {template: "{{message}}"}\n  other: {template: "x"}'))
    result = pytester.runpytest("--prompt-suite", "core")
    result.stdout.fnmatch_lines(["chat.eval.yaml:7:3: target: *provider.prompt*"])


def test_a_slow_drip_reply_is_an_error_case_at_its_deadline(project, pytester, openai_server):
    """A body sent one byte every 0.2 s for 60 s: each attempt ends at its deadline (issue 12, defect 7)."""
    body = json.dumps(completion("drip")).encode()
    openai_server.reply_with(lambda request: Reply(body=body + b" " * (300 - len(body)), drip=0.2))
    project("drip.eval.yaml", f"""
        eval: drip
        suites: [core]
        prompts: {{ask: {{template: "hello"}}}}
        target: {{provider: {{base_url: "{openai_server.base_url}", model: m, timeout: 1, retries: 1}}}}
        threshold: 0
        graders: [{{type: contains, value: drip}}]
        cases: [{{id: slow}}]
    """)
    result = pytester.runpytest("--prompt-suite", "core")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "*ERROR at setup of drip::default::slow*",
        "request to http://127.0.0.1:*/v1 timed out: the deadline of 1 s per attempt passed after 2 attempts",
    ])
    assert openai_server.count == 2


def test_replies_without_text_are_error_cases_not_empty_outputs(project, pytester, openai_server):
    """Graded as "", both would pass not_contains: a silent failure (issue 12, defect 8)."""
    def reply(request):
        if request["messages"][-1]["content"] == "weather":
            body = completion(None, finish_reason="tool_calls")
            body["choices"][0]["message"]["tool_calls"] = [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]
            return Reply(body=body)
        return Reply(body=completion(None, finish_reason="content_filter"))

    openai_server.reply_with(reply)
    project("quiet.eval.yaml", f"""
        eval: quiet
        suites: [core]
        prompts: {{ask: {{template: "{{{{message}}}}"}}}}
        target: {{provider: {{base_url: "{openai_server.base_url}", model: m}}}}
        threshold: 0
        graders: [{{type: not_contains, value: sorry}}]
        cases:
          - {{id: weather, vars: {{message: weather}}}}
          - {{id: filtered, vars: {{message: filtered}}}}
    """)
    result = pytester.runpytest("--prompt-suite", "core")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines([
        "*ERROR at setup of quiet::default::weather*",
        "the reply from http://127.0.0.1:*/v1 has no text: the model called a tool (get_weather) instead",
        "*ERROR at setup of quiet::default::filtered*",
        "the reply from http://127.0.0.1:*/v1 has no text: its message content is null (finish_reason: content_filter)",
    ])
