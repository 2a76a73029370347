"""Promotion and rollback on a real SQLite store: the release story of issue 4.

Prompt ``router`` gets four versions; the eval passes when the rendered prompt
says "Route". Runs, prompt versions and aliases are read back with an
``MlflowClient`` of the test's own.
"""

from __future__ import annotations

import json

import pytest

ECHO = '''
def answer(prompt):
    return prompt
'''

EVAL = """
eval: routing
suites: [core]
prompts: {router: {registry: router@production}}
target: echo_app:answer
threshold: 0.8
graders: [{type: contains, value: "Route"}]
cases:
""" + "".join(f"  - {{id: c{i}, vars: {{message: m{i}}}}}\n" for i in range(5))

OTHER = """
eval: unrelated
suites: [core]
prompts: {p: {template: "x {{message}}"}}
target: echo_app:answer
graders: [{type: contains, value: "x"}]
cases: [{id: a, vars: {message: hi}}]
"""

VERSIONS = {
    1: "Route this message: {{message}}",
    2: "Send this on: {{message}}",  # degraded: never says "Route"
    3: "Route it, politely: {{message}}",
    4: "Route it, briefly: {{message}}",
}


@pytest.fixture
def registry(pytester, project, tracking_on):
    """The store's MlflowClient; prompt ``router`` v1-v4, production → v1; the eval files written."""
    from mlflow.tracking import MlflowClient

    project("echo_app.py", ECHO)
    project("routing.eval.yaml", EVAL)
    project("unrelated.eval.yaml", OTHER)
    client = MlflowClient(tracking_uri=tracking_on)
    for version in sorted(VERSIONS):
        client.register_prompt("router", VERSIONS[version])
    client.set_prompt_alias("router", "production", 1)
    return client


def production(client) -> int:
    return int(client.get_prompt_version_by_alias("router", "production").version)


def promote(pytester, version: int, client, *args: str) -> pytest.RunResult:
    client.set_prompt_alias("router", "candidate", version)
    return pytester.runpytest("--promote", "router", "--promote-actor", "alice", *args)


def rollback(pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("--rollback", "router", "--promote-actor", "bob", *args)


def routing_runs(client) -> list:
    experiment = client.get_experiment_by_name("promptgate/routing")
    return sorted(client.search_runs([experiment.experiment_id]), key=lambda r: r.info.start_time)


def test_promote_blocks_a_degraded_candidate_then_promotes_rolls_back_twice(registry, pytester):
    blocked = promote(pytester, 2, registry)
    assert blocked.ret == 1
    blocked.assert_outcomes(failed=5, deselected=1)  # the unrelated eval does not use router: not run
    blocked.stdout.fnmatch_lines([
        "*= promote router =*",
        "eval*variant*pass rate*threshold*verdict*gates",
        "routing*default*0.0%*80%*REGRESSION*",
        "blocked: routing [[]default]: REGRESSION: pass rate 0.0% below threshold 80%*",
        "promptgate: promotion BLOCKED: router version 2 stays off 'production'*",
    ])
    assert production(registry) == 1
    [run] = routing_runs(registry)
    assert run.data.params["prompt.router"] == "2"  # the candidate ran, pinned
    assert "audit.action" not in run.data.tags

    promoted = promote(pytester, 3, registry)
    assert promoted.ret == 0
    promoted.stdout.fnmatch_lines(["routing*default*100.0%*80%*PASS*", "promptgate: promoted router@production: version 1 -> 3 by alice"])
    assert production(registry) == 3
    justifying = routing_runs(registry)[-1]
    audit = {k: v for k, v in justifying.data.tags.items() if k.startswith("audit.")}
    assert {k: audit[k] for k in ("audit.action", "audit.prompt_name", "audit.from_version", "audit.to_version",
                                  "audit.alias", "audit.actor", "audit.forced")} == {
        "audit.action": "promote", "audit.prompt_name": "router", "audit.from_version": "1", "audit.to_version": "3",
        "audit.alias": "production", "audit.actor": "alice", "audit.forced": "false",
    }
    assert audit["audit.timestamp"].endswith("+00:00")
    version_tags = registry.get_prompt_version("router", 3).tags
    assert version_tags["audit.action"] == "promote" and version_tags["audit.from_version"] == "1"

    assert promote(pytester, 4, registry).ret == 0
    assert production(registry) == 4

    first = rollback(pytester, "--rollback-reason", "v4 answers rudely")
    assert first.ret == 0
    assert "passed" not in first.stdout.str() and "collected" not in first.stdout.str()  # no tests ran
    first.stdout.fnmatch_lines(["promptgate: rolled back router@production: version 4 -> 3; reason: v4 answers rudely"])
    assert production(registry) == 3
    tags = registry.get_prompt_version("router", 3).tags
    assert (tags["audit.action"], tags["audit.reason"], tags["audit.actor"]) == ("rollback", "v4 answers rudely", "bob")
    assert (tags["audit.forced"], tags["audit.from_version"], tags["audit.to_version"]) == ("", "4", "3")  # nothing stale

    assert rollback(pytester, "--rollback-reason", "v3 too").ret == 0
    assert production(registry) == 1
    third = rollback(pytester, "--rollback-reason", "and again")
    assert third.ret == 1
    third.stdout.fnmatch_lines(["promptgate: cannot roll back router@production: no previous version*"])
    assert production(registry) == 1
    history = [json.loads(v) for k, v in sorted(registry.get_prompt("router").tags.items()) if k.startswith("promptgate.audit.")]
    assert [(e["action"], e["from_version"], e["to_version"]) for e in history] == [
        ("promote", 1, 3), ("promote", 3, 4), ("rollback", 4, 3), ("rollback", 3, 1),
    ]


def test_force_promotes_a_blocked_candidate_and_says_so(registry, pytester):
    result = promote(pytester, 2, registry, "--promote-force")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["promptgate: FORCED promotion despite 1 block(s): router@production: version 1 -> 2 by alice*"])
    assert production(registry) == 2
    assert registry.get_prompt_version("router", 2).tags["audit.forced"] == "true"


def test_a_block_promote_gate_blocks_without_failing_an_ordinary_session(registry, pytester):
    gated = EVAL.replace("cases:\n", "gates:\n  on_fail: block_promote\n  rules: [{metric: latency_ms_p95, max: 0}]\ncases:\n")
    (pytester.path / "routing.eval.yaml").write_text(gated)
    assert pytester.runpytest("--prompt-suite", "core").ret == 0  # a warning for a plain session
    result = promote(pytester, 3, registry)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["blocked: routing [[]default]: gate (block_promote) tripped: latency_ms_p95 * above max 0"])
    assert production(registry) == 1


def test_promoting_the_version_already_at_the_alias_is_a_no_op(registry, pytester):
    result = promote(pytester, 1, registry)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*router version 1 is already at alias 'production': nothing to promote*"])
    assert not registry.get_experiment_by_name("promptgate/routing")  # nothing ran


def test_promote_and_rollback_refuse_what_they_cannot_do(registry, pytester):
    missing = pytester.runpytest("--promote", "router", "--promote-version", "9")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines(["*--promote router: registry prompt 'router' has no version 9*"])
    no_reason = rollback(pytester)
    assert no_reason.ret == 1
    no_reason.stdout.fnmatch_lines(["promptgate: --rollback router needs --rollback-reason TEXT*"])
    unknown = pytester.runpytest("--rollback", "nope", "--rollback-reason", "x")
    assert unknown.ret == 1
    unknown.stdout.fnmatch_lines(["*registry prompt 'nope' does not exist*"])
    nothing_uses = pytester.runpytest("--promote", "other-prompt", "--promote-version", "1")
    assert nothing_uses.ret == pytest.ExitCode.USAGE_ERROR  # no such prompt in the registry


def test_promote_under_xdist(registry, pytester):
    registry.set_prompt_alias("router", "candidate", 3)
    result = pytester.runpytest_subprocess("--promote", "router", "--promote-actor", "ci", "-n", "2")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["promptgate: promoted router@production: version 1 -> 3 by ci"])
    assert production(registry) == 3


def test_the_reports_tell_the_promotion_decision(registry, pytester):
    reports = ("--prompt-report", "out/evals.json", "--prompt-report-html", "out/evals.html")
    assert promote(pytester, 2, registry, *reports).ret == 1
    refused = json.loads((pytester.path / "out/evals.json").read_text())["promotion"]
    assert {k: refused[k] for k in ("prompt", "candidate_version", "alias", "alias_version_before", "promoted")} == {
        "prompt": "router", "candidate_version": 2, "alias": "production", "alias_version_before": 1, "promoted": False}
    [reason] = refused["blocked_because"]
    assert reason.startswith("routing [default]: REGRESSION: pass rate 0.0% below threshold 80%")
    page = (pytester.path / "out/evals.html").read_text(encoding="utf-8")
    assert ('<p class="decision refused">refused to promote router version 2 (router@candidate) to alias '
            "&#x27;production&#x27;; it stays at version 1</p>") in page
    assert f"<li>{reason}</li>" in page

    assert promote(pytester, 3, registry, *reports).ret == 0
    promoted = json.loads((pytester.path / "out/evals.json").read_text())
    assert promoted["promotion"]["promoted"] is True and promoted["promotion"]["blocked_because"] == []
    page = (pytester.path / "out/evals.html").read_text(encoding="utf-8")
    assert ('<p class="decision promoted">promoted router version 3 (router@candidate) to alias '
            "&#x27;production&#x27; (it was at version 1) by alice</p>") in page
    [entry] = promoted["evals"]
    assert "evals.html" in [f.path for f in registry.list_artifacts(entry["run_id"])]  # logged after the decision
