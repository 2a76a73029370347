"""Nothing is lost when MLflow is down: whole sessions against a real ``mlflow server``, killed and restarted.

The eval's target kills the server on its first call when the test arms it, as a
crash in the middle of a session would. Runs are read back through a separate
``MlflowClient``, never through the code under test.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mlflow_server import MlflowServer, free_port, mlflow_server  # noqa: F401  (a real `mlflow server`)
from pytest_promptgate.tracking import RESULTS_FILE

# The target: one line per call in calls.txt; when kill-server.txt ("PID PORT") exists, the first
# call takes it and kills that server's process group, then waits (bounded) until its port refuses.
SERVED = """
import os, signal, socket, time

def label(vars):
    with open("calls.txt", "a") as f:
        f.write(vars["message"] + "\\n")
    kill_server_once()
    return {"refund": "refund", "money": "refund"}.get(vars["message"].split()[0], "other")

def kill_server_once():
    try:
        os.rename("kill-server.txt", "kill-server.done")  # atomic: one call wins
    except FileNotFoundError:
        return
    with open("kill-server.done") as f:
        pid, port = map(int, f.read().split())
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return
        time.sleep(0.05)
    raise RuntimeError("the mlflow server still answers after SIGKILL")
"""

# Two variants of three cases; each variant passes r1 and r2, fails r3: pass rate 2/3.
EVAL = """
eval: NAME
suites: [core]
prompts: {p: {template: "{{message}}"}}
target: served:label
variants: [{name: a}, {name: b}]
threshold: THRESHOLD
graders: [{type: equals, value: "{{expected}}"}]
cases:
  - {id: r1, vars: {message: "refund now"}, expected: refund}
  - {id: r2, vars: {message: "money back"}, expected: refund}
  - {id: r3, vars: {message: "hello"}, expected: refund}
"""


@pytest.fixture
def evals(project):
    """Write the target module and one eval ``name`` over it (pass rate 2/3 against ``threshold``)."""

    def write(name: str, threshold: float = 0.5) -> None:
        project("served.py", SERVED)
        project(f"{name}.eval.yaml", EVAL.replace("NAME", name).replace("THRESHOLD", str(threshold)))

    return write


@pytest.fixture
def tracking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tracking switched on for pytester runs; each test passes ``--prompt-tracking-uri``."""
    monkeypatch.delenv("PROMPTGATE_TRACKING", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture
def server(mlflow_server: MlflowServer, tracking):  # noqa: F811
    """The module's server, left running after the test whatever happened in it."""
    yield mlflow_server
    if not mlflow_server.healthy():
        restart(mlflow_server)


def restart(server: MlflowServer) -> None:
    server.kill()  # reaps the process the target killed
    server.start()


def arm(pytester: pytest.Pytester, server: MlflowServer) -> None:
    """The target's first call in the next session kills ``server``."""
    (pytester.path / "kill-server.txt").write_text(f"{server.process.pid} {server.port}")


def calls(pytester: pytest.Pytester) -> int:
    path = pytester.path / "calls.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0


def spool(pytester: pytest.Pytester) -> Path:
    return pytester.path / ".promptgate" / "spool"


def kept(pytester: pytest.Pytester) -> list[Path]:
    return sorted(spool(pytester).glob("*.json"))


def runs_of(server: MlflowServer, eval_name: str) -> list:
    client = MlflowClient(tracking_uri=server.uri)
    experiment = client.get_experiment_by_name(f"promptgate/{eval_name}")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def run_eval(pytester: pytest.Pytester, uri: str, *args: str) -> pytest.RunResult:
    return pytester.runpytest("--prompt-suite", "core", "--prompt-tracking-uri", uri, *args)


def prompt_sync(pytester: pytest.Pytester, uri: str) -> pytest.RunResult:
    """``pytest --prompt-sync``, with ``--prompt-suite core`` so that running the evals would show."""
    return pytester.runpytest("--prompt-suite", "core", "--prompt-sync", "--prompt-tracking-uri", uri)


def assert_run_of_the_eval(run) -> None:
    """A FINISHED, complete run holding what the eval file implies: 2 of 3 cases passed."""
    assert run.info.status == "FINISHED"
    assert run.data.tags["promptgate.complete"] == "true"
    assert run.data.metrics["pass_rate"] == pytest.approx(2 / 3)
    assert run.data.metrics["total_cases"] == 3


# --------------------------------------------------------------------------- a server that stays up


def test_runs_reach_a_tracking_server(evals, pytester, server):
    evals("served-ok")
    result = run_eval(pytester, server.uri)
    assert result.ret == 0
    result.stdout.fnmatch_lines([f"logged 2 run(s) to MLflow at {server.uri} (experiments: promptgate/served-ok)"])

    runs = runs_of(server, "served-ok")
    assert sorted(run.data.tags["promptgate.variant"] for run in runs) == ["a", "b"]
    client = MlflowClient(tracking_uri=server.uri)
    for run in runs:
        assert_run_of_the_eval(run)
        assert RESULTS_FILE in [a.path for a in client.list_artifacts(run.info.run_id)]
        assert list(server.artifacts.rglob(f"{run.info.run_id}/artifacts/{RESULTS_FILE}"))  # stored by the server
    local = {"mlruns", "mlartifacts", "mlflow.db", ".promptgate"}
    assert [p for p in pytester.path.rglob("*") if p.name in local] == []


# --------------------------------------------------------------------------- a server that dies mid-session


def test_runs_of_a_session_that_lost_the_server_are_sent_by_the_next(evals, pytester, server):
    evals("served-crash")
    arm(pytester, server)
    first = run_eval(pytester, server.uri)
    assert not server.healthy()  # the target did kill it
    assert first.ret == 0  # thresholds still decide
    first.stdout.fnmatch_lines([
        "served-crash*a*3*66.7%*unavailable*PASS*",
        "served-crash*b*3*66.7%*unavailable*PASS*",
        f"MLflow tracking at {server.uri} is unavailable (opening the store): connection refused",
        f"kept 2 run(s) in {spool(pytester)}; the next session sends them, or pytest --prompt-sync",
    ])
    records = [json.loads(path.read_text()) for path in kept(pytester)]
    assert len(records) == 2
    [earlier] = {record["session"] for record in records}

    restart(server)
    second = run_eval(pytester, server.uri)
    assert second.ret == 0
    second.stdout.fnmatch_lines([
        f"sent 2 run(s) kept by earlier sessions to MLflow at {server.uri}",
        f"logged 2 run(s) to MLflow at {server.uri} (experiments: promptgate/served-crash)",
    ])
    assert kept(pytester) == []

    runs = runs_of(server, "served-crash")
    sessions = Counter(run.data.tags["promptgate.session"] for run in runs)
    assert len(sessions) == 2 and sessions[earlier] == 2 and len(runs) == 4
    sent = {run.data.tags["promptgate.variant"]: run for run in runs if run.data.tags["promptgate.session"] == earlier}
    assert sorted(sent) == ["a", "b"]  # each earlier run exactly once
    for record in records:  # with the metrics the earlier session measured
        assert sent[record["variant"]].data.metrics == pytest.approx(record["metrics"])
    for run in runs:
        assert_run_of_the_eval(run)
    # The runs sent first are the baselines of this session's runs.
    for run in runs:
        if run.data.tags["promptgate.session"] != earlier:
            variant = run.data.tags["promptgate.variant"]
            assert run.data.tags["promptgate.baseline_run_id"] == sent[variant].info.run_id


def test_prompt_sync_sends_the_runs_of_a_session_that_required_tracking_and_lost_it(evals, pytester, server):
    evals("served-sync")
    arm(pytester, server)
    result = run_eval(pytester, server.uri, "--prompt-require-tracking")
    assert not server.healthy()
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # reachable at the start, gone at the end
    result.stdout.fnmatch_lines([
        f"kept 2 run(s) in {spool(pytester)}; the next session sends them, or pytest --prompt-sync",
        "promptgate: session FAILED: *MLflow tracking unavailable and --prompt-require-tracking*",
    ])
    assert (calls(pytester), len(kept(pytester))) == (6, 2)

    down = prompt_sync(pytester, server.uri)
    assert down.ret == 1
    down.stdout.fnmatch_lines([f"promptgate: 2 run(s) still waiting in {spool(pytester)}"])
    assert len(kept(pytester)) == 2

    restart(server)
    synced = prompt_sync(pytester, server.uri)
    assert synced.ret == 0
    synced.stdout.fnmatch_lines([f"promptgate: sent 2 run(s) to MLflow at {server.uri}"])
    assert calls(pytester) == 6  # no eval ran
    assert kept(pytester) == []
    runs = runs_of(server, "served-sync")
    assert sorted(run.data.tags["promptgate.variant"] for run in runs) == ["a", "b"]
    for run in runs:
        assert_run_of_the_eval(run)


# --------------------------------------------------------------------------- nothing listening at all


@pytest.fixture
def nowhere(tracking) -> str:
    """A tracking URI on a port nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


def test_require_tracking_stops_before_any_eval_runs(evals, pytester, nowhere):
    evals("served-nowhere")
    result = run_eval(pytester, nowhere, "--prompt-require-tracking")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        f"ERROR: promptgate: --prompt-require-tracking: MLflow tracking at {nowhere} is unavailable "
        "(opening the store): connection refused",
    ])
    assert calls(pytester) == 0
    assert kept(pytester) == []


@pytest.mark.parametrize(("threshold", "exit_status", "verdict"), [(0.5, 0, "PASS"), (0.9, 1, "REGRESSION")])
def test_unreachable_tracking_still_gates_by_thresholds(evals, pytester, nowhere, threshold, exit_status, verdict):
    evals("served-unreachable", threshold)
    result = run_eval(pytester, nowhere, "--prompt-report", "evals.json")
    assert result.ret == exit_status
    assert calls(pytester) == 6
    result.stdout.fnmatch_lines([
        f"served-unreachable*a*3*66.7%*unavailable*{verdict}*",
        f"served-unreachable*b*3*66.7%*unavailable*{verdict}*",
        f"MLflow tracking at {nowhere} is unavailable (opening the store): connection refused",
        f"kept 2 run(s) in {spool(pytester)}; the next session sends them, or pytest --prompt-sync",
    ])
    report = json.loads((pytester.path / "evals.json").read_text())
    assert ["baseline unavailable" in row["verdict_reason"] for row in report["evals"]] == [True, True]
    assert len(kept(pytester)) == 2
