"""Registry prompts in eval files: resolved once per session, pinned for every item and every xdist worker.

A real SQLite store holds the prompts; the tests register and move them with an
``MlflowClient`` of their own, or from a separate process (so the session's
processes never import MLflow because of the test itself).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ECHO = '''
def answer(prompt):
    return prompt

def chat(prompts):
    return " | ".join(f"{m['role']}: {m['content']}" for m in prompts["hello"])
'''

EVAL = """
eval: greet
suites: [core]
prompts: {hello: {registry: REF}}
target: echo_app:answer
graders: [{type: contains, value: "EXPECTED"}]
cases:
  - {id: ann, vars: {name: Ann}}
  - {id: bob, vars: {name: Bob}}
"""


@pytest.fixture
def registry(pytester, tracking_on):
    """The store's MlflowClient, with prompt ``greet``: v1 "Hello", v2 "Hi there"; ``production`` → v1."""
    from mlflow.tracking import MlflowClient

    pytester.makepyfile(echo_app=ECHO)
    pytester.syspathinsert()
    client = MlflowClient(tracking_uri=tracking_on)
    client.register_prompt("greet", "Hello {{name}}")
    client.register_prompt("greet", "Hi there {{name}}")
    client.set_prompt_alias("greet", "production", 1)
    client.uri = tracking_on
    return client


def write_eval(pytester, ref: str, expected: str, **extra: str) -> None:
    text = EVAL.replace("REF", ref).replace("EXPECTED", expected)
    for key, value in extra.items():
        text = text.replace(key, value)
    (pytester.path / "greet.eval.yaml").write_text(text)


def runs(client) -> list:
    experiment = client.get_experiment_by_name("promptgate/greet")
    return client.search_runs([experiment.experiment_id]) if experiment else []


@pytest.mark.parametrize(("ref", "expected", "version"), [("greet@production", "Hello", "1"), ("greet/2", "Hi there", "2")])
def test_a_registry_prompt_is_used_and_recorded(registry, pytester, ref, expected, version):
    write_eval(pytester, ref, expected)
    result = pytester.runpytest("--prompt-suite", "core")
    result.assert_outcomes(passed=2)
    [run] = runs(registry)
    assert run.data.params["prompt.hello"] == version
    assert json.loads(run.data.tags["mlflow.linkedPrompts"]) == [{"name": "greet", "version": version}]
    prompt = registry.download_artifacts(run.info.run_id, "prompts/hello.txt", str(pytester.path))
    assert Path(prompt).read_text() == ("Hello {{name}}" if version == "1" else "Hi there {{name}}")


def test_a_chat_prompt_from_the_registry(registry, pytester):
    registry.register_prompt("chatty", [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi {{name}}"}])
    write_eval(pytester, "chatty/1", "user: Hi", **{"echo_app:answer": "echo_app:chat"})
    result = pytester.runpytest("--prompt-suite", "core")
    result.assert_outcomes(passed=2)
    [run] = runs(registry)
    assert run.data.params["prompt.hello"] == "1"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("nothere@production", "registry prompt 'nothere' does not exist in sqlite:///*"),
        ("greet@staging", "registry prompt 'greet' has no alias 'staging' in sqlite:///*"),
        ("greet/7", "registry prompt 'greet' has no version 7 in sqlite:///*"),
        ("greet@", "*expected 'NAME@ALIAS' or 'NAME/VERSION'*got 'greet@'"),
    ],
)
def test_a_missing_prompt_alias_or_version_is_a_collection_error(registry, pytester, ref, message):
    write_eval(pytester, ref, "Hello")
    result = pytester.runpytest("--prompt-suite", "core")
    result.assert_outcomes(errors=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines([f"greet.eval.yaml:4:*: prompts.hello.registry: {message}"])


def test_registry_prompts_need_tracking(registry, pytester):
    write_eval(pytester, "greet@production", "Hello")
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-no-tracking")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*prompts.hello.registry: registry prompt 'greet@production' needs MLflow tracking, which is switched off*"])


# Moves the alias from another process when the first item sets up, after collection,
# and records whether this process ever imported MLflow.
MOVER = """
import os, subprocess, sys
import pytest

MOVE = '''
from mlflow.tracking import MlflowClient
MlflowClient(tracking_uri=%r).set_prompt_alias("greet", "production", 2)
'''

@pytest.fixture(autouse=True, scope="session")
def move_the_alias():
    subprocess.run([sys.executable, "-c", MOVE], check=True, capture_output=True)

def pytest_sessionfinish(session):
    name = getattr(session.config, "workerinput", {}).get("workerid", "controller")
    with open(f"mlflow-imported-{name}.txt", "w") as f:
        f.write(str(any(m.split(".")[0] == "mlflow" for m in sys.modules)))
"""


@pytest.mark.parametrize("args", [(), ("-n", "2")], ids=["plain", "n2"])
def test_the_version_is_pinned_for_the_session_even_when_the_alias_moves(registry, pytester, args):
    pytester.makeconftest(MOVER % registry.uri)
    cases = "".join(f"  - {{id: c{i}, vars: {{name: N{i}}}}}\n" for i in range(6))
    write_eval(pytester, "greet@production", "Hello")
    (pytester.path / "greet.eval.yaml").write_text(
        (pytester.path / "greet.eval.yaml").read_text().split("cases:")[0] + "cases:\n" + cases
    )
    result = pytester.runpytest_subprocess("--prompt-suite", "core", *args)
    result.assert_outcomes(passed=6)  # every case saw v1, "Hello", though production moved to v2 before the first ran
    assert registry.get_prompt_version_by_alias("greet", "production").version == 2
    [run] = runs(registry)
    assert run.data.params["prompt.hello"] == "1"
    if args:  # the workers never imported MLflow: the controller pinned the prompt and handed it over
        workers = sorted(p.name for p in pytester.path.glob("mlflow-imported-gw*.txt"))
        assert workers == ["mlflow-imported-gw0.txt", "mlflow-imported-gw1.txt"]
        assert {(pytester.path / name).read_text() for name in workers} == {"False"}
