"""API keys never leave the environment (issue 12, defect 9).

An endpoint that reflects the request's key into its reply (in the text, the model
name, the response id, an error message) must not carry it into anything the
plugin writes or prints: the MLflow store and its artifacts, the spool, the JSON
report, the response cache, pytest's output. A key written into nested params is
refused at collection, with the path to it.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest
from mlflow_server import free_port
from openai_server import Reply, completion, error

from pytest_promptgate.targets import secrets

SECRET = "sk-live-REFLECTED-0123456789abcdef"
KEY_ENV = "PROMPTGATE_REFLECTED_KEY"

EVAL = """
eval: reflect
suites: [core]
prompts: {ask: {template: "{{message}}"}}
target:
  provider: {base_url: BASE_URL, model: m, api_key_env: PROMPTGATE_REFLECTED_KEY, retries: 0}
threshold: 0
graders:
  - {type: contains, value: "you sent"}
  - type: label_model
    judge: {provider: {base_url: BASE_URL, model: judge, api_key_env: PROMPTGATE_REFLECTED_KEY, retries: 0}}
    labels: [good, bad]
    passing_labels: [good]
cases:
  - {id: echoed, vars: {message: "hello"}}
  - {id: denied, vars: {message: "deny"}}
"""


def reflecting(server):
    """Replies that quote the request's Authorization header everywhere a server can put text."""
    def reply(request):
        auth = server.requests[-1].headers["authorization"]  # "Bearer <key>"
        key = auth.removeprefix("Bearer ")
        if request["model"] == "judge":
            return Reply(body=completion(f'{{"label": "good", "reason": "{auth} was polite"}}'))
        if request["messages"][-1]["content"] == "deny":
            return Reply(401, error(f"Incorrect API key provided: {auth} ({urllib.parse.quote(key, safe='')})"))
        return Reply(body=completion(f"you sent {auth}", model=f"m-{key}", id=f"chatcmpl-{key}"))
    return reply


def leaks(root: Path, *texts: str) -> list[str]:
    """Every file under ``root``, and every text, holding the key in any obvious form."""
    forms = {SECRET.encode(), urllib.parse.quote(SECRET, safe="").encode()}
    found = [str(path.relative_to(root)) for path in sorted(root.rglob("*"))
             if path.is_file() and any(form in path.read_bytes() for form in forms)]
    return found + [text[:80] for text in texts if any(form.decode() in text for form in forms)]


def test_a_reflected_key_is_written_and_printed_nowhere(project, pytester, tracking_on, openai_server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    openai_server.reply_with(reflecting(openai_server))
    project("reflect.eval.yaml", EVAL.replace("BASE_URL", openai_server.base_url))

    logged = pytester.runpytest("--prompt-suite", "core", "--prompt-report", "r.json", "--prompt-cache", "record", "-rA")
    logged.assert_outcomes(passed=1, errors=1)
    spooled = pytester.runpytest("--prompt-suite", "core", "--prompt-cache", "record",
                                 "--prompt-tracking-uri", f"http://127.0.0.1:{free_port()}")
    spooled.assert_outcomes(passed=1, errors=1)

    # Everything was written: the store and its artifacts, the spool, the report, the cache.
    root = pytester.path
    assert (root / "mlflow.db").is_file() and any((root / "mlartifacts").rglob("*.json"))
    assert any((root / ".promptgate" / "spool").rglob("*.json"))
    assert any((root / ".promptgate" / "cache").rglob("*.json"))
    # ... and the key is in none of it, nor in what pytest printed.
    output = [run.stdout.str() + run.stderr.str() for run in (logged, spooled)]
    assert leaks(root, *output) == []
    report = (root / "r.json").read_text()
    assert "you sent Bearer ***" in report and "Incorrect API key provided: Bearer *** (***)" in report
    assert "Incorrect API key provided: Bearer *** (***)" in output[0]


# ----------------------------------------------------------------------------- the redaction piece


def test_redact_masks_every_form_of_every_secret():
    key, other = "sk-abc/def+ghi=12345", "another-secret-value"
    quoted = urllib.parse.quote(key, safe="")
    text = f"Bearer {key}; quoted {quoted}; {other}; again {key}"
    assert secrets.redact(text, [key, other]) == "Bearer ***; quoted ***; ***; again ***"
    assert secrets.redact("nothing here", [key]) == "nothing here"


def test_redact_all_walks_nested_data_keys_included():
    key = "sk-abcdefgh12345"
    data = {"id": f"x-{key}", key: [f"{key}!", ("t", key), 3, None], "n": 1.5}
    assert secrets.redact_all(data, [key]) == {"id": "x-***", "***": ["***!", ("t", "***"), 3, None], "n": 1.5}


def test_short_values_are_placeholders_not_secrets(monkeypatch):
    """A local server's dummy key ("1", "none") would otherwise mask every "1" of every output."""
    monkeypatch.setenv("PROMPTGATE_SHORT_KEY", "none")
    monkeypatch.setenv("PROMPTGATE_LONG_KEY", SECRET)
    secrets.watch("PROMPTGATE_SHORT_KEY")
    secrets.watch("PROMPTGATE_LONG_KEY")
    assert secrets.redact(f"none of {SECRET}") == "none of ***"


# ----------------------------------------------------------------------------- keys in eval files


@pytest.mark.parametrize(
    ("params", "line", "path"),
    [
        ("{extra_body: {api_key: sk-live-HIDDEN}}", 4, "target.provider.params.extra_body.api_key"),
        ("{headers: {Authorization: Bearer sk-live-HIDDEN}}", 4, "target.provider.params.headers.Authorization"),
        ("{extra_body: {metadata: [{user: a}, {secret: sk-live-HIDDEN}]}}", 4,
         "target.provider.params.extra_body.metadata[[]1].secret"),
    ],
    ids=["extra_body", "headers", "deep-in-a-list"],
)
def test_keys_nested_in_params_are_refused_where_they_are(project, pytester, params, line, path):
    project("evals/bad.eval.yaml", f"""
        eval: bad
        suites: [core]
        target:
          provider: {{base_url: "http://127.0.0.1:9/v1", model: m, params: {params}}}
        cases: [{{id: a}}]
    """)
    result = pytester.runpytest("--prompt-suite", "core")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"evals/bad.eval.yaml:{line}:*: {path}: * looks like a credential: API keys never go "
                                 "in eval files: put the key in an environment variable and name it with api_key_env"])
    assert "HIDDEN" not in result.stdout.str() + result.stderr.str()


def test_a_schema_describing_a_password_field_is_not_a_key(project, pytester, openai_server):
    """A mapping under a key-like name (a JSON schema's property) holds no credential: only text or numbers do."""
    project("evals/ok.eval.yaml", f"""
        eval: ok
        suites: [core]
        prompts: {{p: {{template: hi}}}}
        target:
          provider:
            base_url: "{openai_server.base_url}"
            model: m
            params:
              response_format:
                type: json_schema
                json_schema: {{name: login, schema: {{type: object, properties: {{password: {{type: string}}}}}}}}
        cases: [{{id: a}}]
    """)
    pytester.runpytest("--prompt-suite", "core").assert_outcomes(passed=1)
