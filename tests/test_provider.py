"""The provider target against a real OpenAI-compatible server on 127.0.0.1 (tests/openai_server.py)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from openai_server import OpenAIServer, Reply, completion, error

from pytest_promptgate.schema import Provider
from pytest_promptgate.targets.base import TargetError, TargetRequest
from pytest_promptgate.targets.provider import INSTALL_HINT, ProviderTarget

SECRET = "sk-test-SECRET-123"
KEY_ENV = "PROMPTGATE_TEST_API_KEY"

MakeTarget = Callable[..., ProviderTarget]


@pytest.fixture
def make_target(openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeTarget]:
    """Builds targets aimed at the test server (key in the environment, short timeouts) and closes them."""
    monkeypatch.setenv(KEY_ENV, SECRET)
    made: list[ProviderTarget] = []

    def make(variant_params: dict[str, Any] | None = None, **provider: Any) -> ProviderTarget:
        settings = {"base_url": openai_server.base_url, "model": "gpt-test", "api_key_env": KEY_ENV,
                    "timeout": 0.5, "retries": 1, **provider}
        target = ProviderTarget(Provider(**settings), variant_params)
        made.append(target)
        return target

    yield make
    for target in made:
        target.close()


def ask(prompt: Any = "Say hi", **prompts: Any) -> TargetRequest:
    """A request with one prompt, or with several named ones (``prompt=None``)."""
    return TargetRequest(prompt=prompt, prompts=prompts or {"main": prompt}, vars={}, params={}, variant="default")


def failure(target: ProviderTarget, request: TargetRequest | None = None) -> str:
    """The one-line TargetError text of a failing call, checked to be free of the key."""
    with pytest.raises(TargetError) as info:
        target(request or ask())
    text = str(info.value)
    assert "\n" not in text
    assert_no_secret(info.value, target)
    return text


def assert_no_secret(exc: BaseException, target: ProviderTarget) -> None:
    shown = "".join(traceback.format_exception(exc)) + repr(exc) + repr(target) + target.identity
    assert SECRET not in shown
    # The SDK's errors hold the request, Authorization header included: none may ride along.
    chained = exc.__context__ or exc.__cause__
    assert not isinstance(chained, openai.OpenAIError), repr(chained)


# ----------------------------------------------------------------------------- success


def test_success_sends_model_messages_params_and_key(make_target: MakeTarget, openai_server: OpenAIServer) -> None:
    openai_server.queue(Reply(body=completion("hello there", model="gpt-test-0613", prompt_tokens=12,
                                              completion_tokens=2, id="chatcmpl-42", finish_reason="length")))
    target = make_target({"temperature": 0, "max_tokens": 5, "seed": 7, "top_k": 40})

    result = target(ask("Say hi"))

    assert (result.output, result.input_tokens, result.output_tokens) == ("hello there", 12, 2)
    assert result.model == "gpt-test-0613"
    assert result.metadata == {"finish_reason": "length", "response_id": "chatcmpl-42"}
    assert result.cost_usd is None  # the runner prices tokens
    (sent,) = openai_server.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    # top_k is not an OpenAI parameter: it reaches the server through extra_body all the same.
    assert sent.json == {"model": "gpt-test", "messages": [{"role": "user", "content": "Say hi"}],
                         "temperature": 0, "max_tokens": 5, "seed": 7, "top_k": 40}


def test_chat_prompt_is_sent_as_messages(make_target: MakeTarget, openai_server: OpenAIServer) -> None:
    messages = [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "bonjour"}]
    openai_server.reply_with(lambda sent: " | ".join(m["content"] for m in sent["messages"]))

    result = make_target()(ask(messages))

    assert result.output == "Answer in French. | bonjour"
    assert openai_server.requests[0].json["messages"] == messages


def test_variant_params_override_provider_params_and_model(make_target: MakeTarget, openai_server: OpenAIServer) -> None:
    target = make_target({"temperature": 0.9, "model": "gpt-small"}, params={"temperature": 0, "top_p": 0.5})

    target(ask())

    sent = openai_server.requests[0].json
    assert (sent["model"], sent["temperature"], sent["top_p"]) == ("gpt-small", 0.9, 0.5)
    assert target.identity == f"provider:{openai_server.base_url}#gpt-small"


def test_one_client_reuses_its_connection(make_target: MakeTarget, openai_server: OpenAIServer) -> None:
    target = make_target()

    target(ask("one"))
    target(ask("two"))

    assert [r.json["messages"][0]["content"] for r in openai_server.requests] == ["one", "two"]
    assert openai_server.requests[0].client_port == openai_server.requests[1].client_port


def test_without_api_key_env_a_placeholder_key_is_sent(
    make_target: MakeTarget, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)  # ambient keys are not sent to endpoints the eval did not name them for

    make_target(api_key_env=None)(ask())

    assert openai_server.requests[0].headers["authorization"] == "Bearer not-needed"


def test_named_prompt_is_chosen_among_several(make_target: MakeTarget, openai_server: OpenAIServer) -> None:
    request = ask(None, router="route this", judge="judge this")

    assert make_target(prompt="judge")(request).output == "judge this"
    assert "set provider.prompt" in failure(make_target(), request)
    assert openai_server.count == 1


# ----------------------------------------------------------------------------- retries


def test_rate_limit_waits_for_retry_after(make_target: MakeTarget, openai_server: OpenAIServer) -> None:
    openai_server.queue(Reply(429, error("slow down", "rate_limit_exceeded"), headers={"Retry-After": "1"}))

    result = make_target(retries=2)(ask("ok"))

    assert result.output == "ok"
    assert openai_server.count == 2
    (gap,) = openai_server.gaps()
    assert gap >= 0.9  # the SDK's own backoff would have waited 0.5 s at most
    assert [r.headers["x-stainless-retry-count"] for r in openai_server.requests] == ["0", "1"]


def test_server_error_is_retried(make_target: MakeTarget, openai_server: OpenAIServer) -> None:
    openai_server.queue(Reply(500, error("upstream exploded")))

    assert make_target()(ask("ok")).output == "ok"
    assert openai_server.count == 2


def test_persistent_server_error_names_status_and_message(make_target: MakeTarget, openai_server: OpenAIServer) -> None:
    fast = {"retry-after-ms": "10"}
    openai_server.queue(*[Reply(500, error("upstream exploded"), headers=fast)] * 3)

    text = failure(make_target(retries=2))

    assert text == f"HTTP 500 from {openai_server.base_url} after 2 retries: upstream exploded"
    assert openai_server.count == 3


def test_client_error_is_not_retried(make_target: MakeTarget, openai_server: OpenAIServer) -> None:
    openai_server.queue(Reply(400, error("'temperature' must be at most 2", "invalid_request_error")))

    text = failure(make_target({"temperature": 9}))

    assert text == f"HTTP 400 from {openai_server.base_url}: 'temperature' must be at most 2"
    assert openai_server.count == 1


def test_timeout_on_every_try(make_target: MakeTarget, openai_server: OpenAIServer) -> None:
    openai_server.queue(Reply(delay=1.5), Reply(delay=1.5))

    text = failure(make_target(timeout=0.5, retries=1))

    assert text == f"request to {openai_server.base_url} timed out: the deadline of 0.5 s per attempt passed after 2 attempts"
    assert openai_server.count == 2


def test_connection_refused(make_target: MakeTarget) -> None:
    with socket.socket() as sock:  # a port nobody listens on once this closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    text = failure(make_target(base_url=f"http://127.0.0.1:{port}/v1", retries=0))

    assert text.startswith(f"connection to http://127.0.0.1:{port}/v1 failed: ")
    assert "refused" in text.lower()


# ----------------------------------------------------------------------------- malformed bodies


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (Reply(body="<html>bad gateway</html>", headers={"Content-Type": "text/html"}),
         "the body is not JSON: <html>bad gateway</html>"),
        (Reply(body="{not json", headers={"Content-Type": "application/json"}), "the body is not JSON: {not json"),
        (Reply(body={"id": "x", "object": "chat.completion"}), "no 'choices' (keys: id, object)"),
        (Reply(body={"choices": []}), "no 'choices' (keys: choices)"),
        (Reply(body=error("model overloaded")), "no 'choices' (keys: error); the server said: model overloaded"),
        (Reply(body={"choices": [{"index": 0}]}), "choices[0].message.content is missing or not text"),
        (Reply(body=[1, 2]), "expected a JSON object, got list"),
    ],
    ids=["html", "broken-json", "no-choices", "empty-choices", "error-in-200", "no-message", "list"],
)
def test_malformed_body(make_target: MakeTarget, openai_server: OpenAIServer, reply: Reply, why: str) -> None:
    openai_server.queue(reply)

    assert failure(make_target()) == f"malformed response from {openai_server.base_url}: {why}"
    assert openai_server.count == 1


def test_missing_usage_is_tolerated(make_target: MakeTarget, openai_server: OpenAIServer) -> None:
    openai_server.queue(Reply(body={"choices": [{"message": {"role": "assistant", "content": "hi"}}]}))

    result = make_target()(ask())

    assert (result.output, result.input_tokens, result.output_tokens, result.model) == ("hi", None, None, "gpt-test")


def tool_calls(*names: str, content: str | None = None) -> dict[str, Any]:
    """A completion whose message calls tools, as OpenAI sends it (content null)."""
    body = completion(content, finish_reason="tool_calls")
    body["choices"][0]["message"]["tool_calls"] = [
        {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": '{"city": "Oslo"}'}}
        for i, name in enumerate(names)
    ]
    return body


def refusal(text: str) -> dict[str, Any]:
    body = completion(None)
    body["choices"][0]["message"]["refusal"] = text
    return body


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (completion(None, finish_reason="content_filter"),
         "its message content is null (finish_reason: content_filter)"),
        ({"choices": [{"message": {"role": "assistant", "content": None}}]},
         "its message content is null (finish_reason: none given)"),
        (tool_calls("get_weather"), "the model called a tool (get_weather) instead"),
        (tool_calls("get_weather", "get_time"), "the model called 2 tools (get_weather, get_time) instead"),
        (tool_calls("lookup", content=""), "the model called a tool (lookup) instead"),
        (refusal("I can't help with that."), "the model refused: I can't help with that."),
    ],
    ids=["null-content-filter", "null-no-reason", "tool-call", "tool-calls", "tool-call-empty-text", "refusal"],
)
def test_a_reply_without_text_is_an_error(make_target: MakeTarget, openai_server: OpenAIServer, body, why) -> None:
    """No text is not an empty output: grading "" would pass not_contains and fail silently (issue 12, defect 8)."""
    openai_server.queue(Reply(body=body))

    assert failure(make_target()) == f"the reply from {openai_server.base_url} has no text: {why}"
    assert openai_server.count == 1


def test_an_empty_text_is_an_output(make_target: MakeTarget, openai_server: OpenAIServer) -> None:
    openai_server.queue(Reply(body=completion("", finish_reason="length")))

    assert make_target()(ask()).output == ""


# ----------------------------------------------------------------------------- keys and set-up


@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_missing_key_variable(
    make_target: MakeTarget, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    target = make_target()
    if value is None:
        monkeypatch.delenv(KEY_ENV)
    else:
        monkeypatch.setenv(KEY_ENV, value)

    assert failure(target) == f"environment variable {KEY_ENV} is not set (named by api_key_env)"
    assert openai_server.count == 0


def test_key_echoed_by_the_server_is_redacted(make_target: MakeTarget, openai_server: OpenAIServer) -> None:
    openai_server.queue(Reply(401, error(f"Incorrect API key provided: {SECRET}", "invalid_api_key")))

    text = failure(make_target())

    assert text == f"HTTP 401 from {openai_server.base_url}: Incorrect API key provided: ***"
    target = make_target()
    assert SECRET not in repr(target) and KEY_ENV in repr(target)


def test_prompt_choice_is_checked_when_built() -> None:
    with pytest.raises(TargetError, match=r"several prompts \(router, judge\); set provider.prompt"):
        ProviderTarget(Provider(base_url="http://127.0.0.1:1/v1", model="m"), {}, ("router", "judge"))
    with pytest.raises(TargetError, match="provider.prompt names 'jduge', which this eval does not have"):
        ProviderTarget(Provider(base_url="http://127.0.0.1:1/v1", model="m", prompt="jduge"), {}, ("router", "judge"))


def test_reserved_params_are_refused(make_target: MakeTarget) -> None:
    with pytest.raises(TargetError, match="params stream, timeout cannot be set"):
        make_target({"stream": True, "timeout": 99})


def test_missing_openai_package(make_target: MakeTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)  # what `import openai` meets when it is not installed

    assert failure(make_target()) == INSTALL_HINT


def test_importing_the_module_does_not_import_openai() -> None:
    code = "import sys, pytest_promptgate.targets.provider; print('openai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_stall_while_reading_the_body_is_a_timeout(openai_server, monkeypatch):
    """Headers arrive, then the body stops: the SDK's retry loop is over, its HTTP library raises raw."""
    openai_server.reply_with(lambda request: Reply(body=completion("half"), stall=2.0))
    target = ProviderTarget(Provider(base_url=openai_server.base_url, model="m", timeout=0.5, retries=0))
    with pytest.raises(TargetError, match=r"timed out: the deadline of 0.5 s per attempt passed after 1 attempt$"):
        target(TargetRequest(prompt="hi", prompts={"p": "hi"}, vars={}, params={}, variant="v"))
    target.close()


def test_a_rotated_key_is_still_masked_when_a_server_echoes_the_old_one(make_target, openai_server, monkeypatch):
    def echo_key(request):  # a badly behaved proxy that quotes what it was sent
        return Reply(400, error(f"bad request from {openai_server.requests[-1].headers['authorization']}"))

    target = make_target()
    target(ask())  # the client is made with SECRET
    monkeypatch.setenv(KEY_ENV, "sk-rotated-NEW")
    openai_server.reply_with(echo_key)
    text = failure(target)  # asserts SECRET is nowhere in the error
    assert "Bearer ***" in text


def dripped(seconds: float, every: float = 0.2) -> Reply:
    """A whole completion, sent one byte every ``every`` s so that the body takes ``seconds`` to arrive."""
    body = json.dumps(completion("finally")).encode()
    return Reply(body=body + b" " * max(0, int(seconds / every) - len(body)), drip=every,
                 headers={"Content-Type": "application/json"})


def test_a_slow_drip_body_is_cut_off_at_the_deadline_of_each_attempt(make_target, openai_server):
    """Each byte arrives well within the read timeout; the attempt's deadline still ends it (issue 12, defect 7)."""
    openai_server.reply_with(lambda request: dripped(60))

    text = failure(make_target(timeout=1, retries=1))

    assert text == (f"request to {openai_server.base_url} timed out: "
                    "the deadline of 1 s per attempt passed after 2 attempts")
    assert openai_server.count == 2
