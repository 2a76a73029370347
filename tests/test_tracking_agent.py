"""The tracking agent: MLflow opened in a child process while the items run, and nothing lost when it fails.

Sessions run in processes of their own (``runpytest_subprocess``), where MLflow is not
imported, with ``PROMPTGATE_TRACKING_AGENT=on``. Runs are read back through an
``MlflowClient`` of the test's own; the agent process is found through ``/proc`` as a
child of the pytest process (a zombie child counts too), killed for real, and looked
for after the session.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mlflow_server import MlflowServer, mlflow_server  # noqa: F401  (a real `mlflow server`)
from pytest_promptgate.tracking import (
    BaselineError, TrackedRun, Tracker, TrackingError, TrackingUnavailable, log_eval_run,
)
from pytest_promptgate.tracking import AgentBug, AgentGone, TrackingAgent
from test_tracking_down import EVAL, SERVED, arm, assert_run_of_the_eval, kept, restart, runs_of, spool

needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the agent process through /proc")

# Helpers for targets and conftests: the agent is the child of the pytest process running tracking_agent;
# a zombie child (an agent exited and never waited for; its command line is empty) counts as one too.
AGENTS = '''
import os
from pathlib import Path

def agents(parent=None):
    """{pid: command line} of the tracking agents that are children of ``parent`` (default: this process)."""
    parent = os.getpid() if parent is None else parent
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
        if int(fields[1]) == parent and ("tracking_agent" in cmdline or fields[0] == "Z"):
            found[int(proc.name)] = cmdline or "<zombie>"
    return found
'''

# The target kills the agent on its first call (SIGKILL), after writing down what it found; calls run concurrently.
KILLER = AGENTS + '''
import json, signal

def label(vars):
    try:
        claim = os.open("agent.json", os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # one call of the concurrent ones
    except FileExistsError:
        pass
    else:
        found = agents()
        os.write(claim, json.dumps({"agents": found}).encode())
        os.close(claim)
        for pid in found:
            os.kill(pid, signal.SIGKILL)
    return {"refund": "refund", "money": "refund"}.get(vars["message"].split()[0], "other")
'''

# A conftest: after the session, which agents are still children of the pytest process, and was MLflow imported here.
AFTER = AGENTS + '''
import sys

def pytest_unconfigure(config):
    Path("after.json").write_text(json.dumps({
        "agents": agents(), "mlflow_imported": any(m.split(".")[0] == "mlflow" for m in sys.modules),
    }))

import json
'''


@pytest.fixture
def agent_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTGATE_TRACKING_AGENT", "on")


@pytest.fixture
def evals(project, pytester, agent_on):
    """One eval over ``target`` (module ``served`` by default), 2 variants × 3 cases, pass rate 2/3."""

    def write(name: str, threshold: float = 0.5, target: str = SERVED) -> None:
        project("served.py", target)
        project(f"{name}.eval.yaml", EVAL.replace("NAME", name).replace("THRESHOLD", str(threshold)))
        pytester.makeconftest(AFTER)

    return write


def run_eval(pytester: pytest.Pytester, uri: str, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("--prompt-suite", "core", "--prompt-tracking-uri", uri, *args)


def after(pytester: pytest.Pytester) -> dict:
    """What the session's conftest found at its end: agents left, and whether pytest's process imported MLflow."""
    return json.loads((pytester.path / "after.json").read_text())


@needs_proc
def test_the_agent_logs_and_judges_while_pytest_never_imports_mlflow(evals, pytester, tracking_on):
    evals("agent-ok")
    first = run_eval(pytester, tracking_on)
    assert first.ret == 0
    first.stdout.fnmatch_lines(["agent-ok*a*3*66.7%*PASS (first run)*", f"logged 2 run(s) to MLflow at {tracking_on}*"])
    assert after(pytester) == {"agents": {}, "mlflow_imported": False}
    second = run_eval(pytester, tracking_on, "--prompt-report", "report.json")
    assert second.ret == 0
    client = MlflowClient(tracking_uri=tracking_on)
    [experiment] = [e for e in client.search_experiments() if e.name == "promptgate/agent-ok"]
    runs = sorted(client.search_runs([experiment.experiment_id]), key=lambda r: r.info.start_time)
    assert len(runs) == 4
    for run in runs:
        assert_run_of_the_eval(run)
    first_runs = {r.data.tags["promptgate.variant"]: r.info.run_id for r in runs[:2]}
    report = json.loads((pytester.path / "report.json").read_text())
    # The baselines were found, and their results tables read, by the agent: a paired test on 3 shared cases.
    assert {row["variant"]: row["baseline_run_id"] for row in report["evals"]} == first_runs
    assert {(row["test"], row["shared_cases"]) for row in report["evals"]} == {("mcnemar", 3)}
    assert after(pytester) == {"agents": {}, "mlflow_imported": False}


@needs_proc
def test_the_agent_runs_with_the_items_and_the_password_is_never_on_its_command_line(evals, pytester, tracking_on):
    uri = "http://user:s3cret@127.0.0.1:9"  # nothing listens: the session keeps its runs on disk
    evals("agent-killed", target=KILLER)
    result = run_eval(pytester, uri)
    found = json.loads((pytester.path / "agent.json").read_text())
    [cmdline] = found["agents"].values()  # the agent was running when the first item ran
    assert "s3cret" not in cmdline and "127.0.0.1" not in cmdline
    assert result.ret == 0
    assert "s3cret" not in result.stdout.str() + result.stderr.str()


@needs_proc
def test_a_killed_agent_leaves_mlflow_to_pytest_and_loses_nothing(evals, pytester, tracking_on):
    evals("agent-killed", target=KILLER)
    result = run_eval(pytester, tracking_on)
    assert result.ret == 0
    assert len(json.loads((pytester.path / "agent.json").read_text())["agents"]) == 1
    result.stdout.fnmatch_lines([
        f"logged 2 run(s) to MLflow at {tracking_on}*",
        "the tracking agent exited with code -9 (*); MLflow was opened in pytest's process instead",
    ])
    assert after(pytester) == {"agents": {}, "mlflow_imported": True}
    assert kept(pytester) == []
    client = MlflowClient(tracking_uri=tracking_on)
    [experiment] = [e for e in client.search_experiments() if e.name == "promptgate/agent-killed"]
    for run in client.search_runs([experiment.experiment_id]):
        assert_run_of_the_eval(run)


# Makes the agent process (``python -c``) die as it starts logging a run; pytest's process (``-m pytest``) is untouched.
DIES_LOGGING = '''
import sys
if sys.argv and sys.argv[0] == "-c":
    import os
    import pytest_promptgate.tracking as tracking

    def log_eval_run(*args, **kwargs):
        os._exit(3)

    tracking.log_eval_run = log_eval_run
'''


@needs_proc
def test_an_agent_that_dies_while_logging_keeps_the_runs_on_disk_for_the_next_session(
    evals, pytester, tracking_on, monkeypatch, tmp_path
):
    evals("agent-dies")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(DIES_LOGGING)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]))
    first = run_eval(pytester, tracking_on)
    assert first.ret == 0  # thresholds still decide
    first.stdout.fnmatch_lines([
        "agent-dies*a*3*66.7%*PASS*",
        "*the tracking agent exited with code 3 (EOFError), while logging a run",
        f"kept 2 run(s) in {spool(pytester)}; the next session sends them, or pytest --prompt-sync",
    ])
    assert len(kept(pytester)) == 2
    assert after(pytester)["agents"] == {}

    monkeypatch.setenv("PYTHONPATH", os.environ["PYTHONPATH"].split(os.pathsep, 1)[1])
    second = run_eval(pytester, tracking_on)
    assert second.ret == 0
    second.stdout.fnmatch_lines([f"sent 2 run(s) kept by earlier sessions to MLflow at {tracking_on}"])
    assert kept(pytester) == []


@needs_proc
def test_a_server_lost_after_the_agent_opened_it(evals, pytester, mlflow_server, tracking_on):  # noqa: F811
    server: MlflowServer = mlflow_server
    evals("agent-crash")
    arm(pytester, server)
    try:
        first = run_eval(pytester, server.uri)
        assert not server.healthy()
        assert first.ret == 0
        first.stdout.fnmatch_lines([
            "agent-crash*a*3*66.7%*unavailable*PASS*",
            f"MLflow tracking at {server.uri} is unavailable (*): connection refused",
            f"kept 2 run(s) in {spool(pytester)}; the next session sends them, or pytest --prompt-sync",
        ])
        assert after(pytester)["agents"] == {}
    finally:
        restart(server)
    second = run_eval(pytester, server.uri)
    assert second.ret == 0
    second.stdout.fnmatch_lines([f"sent 2 run(s) kept by earlier sessions to MLflow at {server.uri}"])
    assert len(runs_of(server, "agent-crash")) == 4


@needs_proc
@pytest.mark.parametrize("args", [("--prompt-suite", "nightly"), ("--prompt-suite", "core", "-k", "plain")])
def test_no_agent_and_no_store_when_no_eval_item_runs(evals, pytester, tracking_on, args):
    """A suite is named (as ini ``promptgate_suite`` does for every run) and the eval file is collected,
    but it is not in the suite, or its items are deselected: the agent started for it is gone before
    the first test runs, and no store was made."""
    evals("agent-unused")
    pytester.makepyfile(test_plain=AGENTS + "\ndef test_plain_one():\n    assert agents() == {}\n")
    result = pytester.runpytest_subprocess(*args, "--prompt-tracking-uri", "sqlite:///fresh.db")
    result.assert_outcomes(passed=1, deselected=6 if "-k" in args else 0)
    assert after(pytester) == {"agents": {}, "mlflow_imported": False}
    assert not (pytester.path / "fresh.db").exists()


# Records, in the agent process (``python -c``), a variable of its environment each time it logs a run.
RECORDS_ENV = '''
import sys
if sys.argv and sys.argv[0] == "-c":
    import os
    import pytest_promptgate.tracking as tracking

    logged = tracking.log_eval_run

    def log_eval_run(*args, **kwargs):
        with open(os.environ["AGENT_SAW"], "a") as f:
            f.write(os.environ.get("LATE_SETTING", "-") + "\\n")
        return logged(*args, **kwargs)

    tracking.log_eval_run = log_eval_run
'''

LATE_CONFTEST = '''
import os
import pytest

@pytest.fixture(scope="session", autouse=True)
def late_setting():
    os.environ["LATE_SETTING"] = "set by a session fixture"  # after the agent started
    yield
'''


def test_the_agent_calls_mlflow_with_the_environment_of_the_session_finish(evals, pytester, tracking_on, monkeypatch, tmp_path):
    evals("agent-env")
    pytester.makeconftest(LATE_CONFTEST)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(RECORDS_ENV)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("AGENT_SAW", str(tmp_path / "saw.txt"))
    monkeypatch.delenv("LATE_SETTING", raising=False)
    result = run_eval(pytester, tracking_on)
    assert result.ret == 0
    assert (tmp_path / "saw.txt").read_text().splitlines() == ["set by a session fixture"] * 2


def test_a_bad_agent_setting_is_a_usage_error(pytester, monkeypatch):
    monkeypatch.setenv("PROMPTGATE_TRACKING_AGENT", "sometimes")
    result = pytester.runpytest("--prompt-suite", "core")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: promptgate: PROMPTGATE_TRACKING_AGENT='sometimes': expected auto, on or off"])


# --------------------------------------------------------------------------- the channel, directly


def test_calls_return_what_tracking_returns_and_raise_its_errors(tmp_path, migrated_store):
    store = tmp_path / "mlflow.db"
    store.write_bytes(migrated_store.read_bytes())
    uri = f"sqlite:///{store}"
    here = Tracker(uri).open()
    run_id = log_eval_run(here, TrackedRun(
        eval="e", variant="v", suite="s", session="earlier", metrics={"passed_cases": 1, "total_cases": 2},
        cases=[{"case_id": "c1", "passed": True, "outcome": "passed"}, {"case_id": "c2", "passed": False, "outcome": "failed"}],
    ))
    agent = TrackingAgent(uri, "promptgate")
    try:
        assert agent.call("open") is None
        baseline = agent.call("pinned_baseline", run_id)
        assert (baseline.run_id, baseline.eval, baseline.variant) == (run_id, "e", "v")
        assert baseline.metrics == {"passed_cases": 1.0, "total_cases": 2.0}
        assert agent.call("baseline_outcomes", run_id) == {"c1": True, "c2": False}
        with pytest.raises(BaselineError, match="baseline run 'nope' does not exist"):
            agent.call("pinned_baseline", "nope")
        with pytest.raises(AgentBug, match="no such call: 'set_alias'"):
            agent.call("set_alias", "p", "prod", 1)
        # Anything else it raises arrives as the TrackingError pytest's process would make of it.
        with pytest.raises(TrackingError, match=r": MLflow failed: TypeError: .*unexpected keyword argument 'colour'$"):
            agent.call("find_baseline", "e", "v", colour="red")
        assert agent.call("baseline_outcomes", run_id) == {"c1": True, "c2": False}  # and it still answers
    finally:
        agent.close()
    assert agent._process.returncode == 0  # told to exit, it exited by itself


def test_the_agent_logs_a_run_without_loading_mlflows_optional_numeric_stack(tmp_path, migrated_store):
    """With the full ``mlflow`` installed (as here), MLflow imports pandas, numpy and SciPy when they are there,
    for features the agent never uses: the agent keeps them out (a third of its memory), and still logs runs."""
    import importlib.util

    assert all(importlib.util.find_spec(name) for name in ("pandas", "numpy", "scipy"))  # installed, so it is a test
    store = tmp_path / "mlflow.db"
    store.write_bytes(migrated_store.read_bytes())
    agent = TrackingAgent(f"sqlite:///{store}", "promptgate")
    try:
        assert agent.call("open") is None
        run_id = agent.call("log_eval_run", TrackedRun(
            eval="e", variant="v", suite="s", session="now", metrics={"passed_cases": 1, "total_cases": 1},
            cases=[{"case_id": "c1", "passed": True, "outcome": "passed"}],
        ))
        mapped = Path(f"/proc/{agent._process.pid}/maps").read_text()
    finally:
        agent.close()
    loaded = {name for name in ("pandas", "numpy", "scipy", "pyarrow") if f"/site-packages/{name}/" in mapped}
    assert not loaded, f"the agent loaded {sorted(loaded)}"
    assert "/site-packages/sqlalchemy/" in mapped  # what it does need is there: the maps are the agent's
    assert MlflowClient(tracking_uri=f"sqlite:///{store}").get_run(run_id).data.metrics["passed_cases"] == 1


def test_an_agent_told_to_open_and_closed_at_once_exits_by_itself_with_its_store_made(tmp_path):
    """Once told to open the store, the agent is never killed early: it finishes creating the store first."""
    store = tmp_path / "made.db"
    agent = TrackingAgent(f"sqlite:///{store}", "promptgate")
    agent.go()
    agent.close()
    assert agent._process.returncode == 0
    assert [e.name for e in MlflowClient(tracking_uri=f"sqlite:///{store}").search_experiments()] == ["Default"]


def test_an_agent_never_told_to_open_is_killed_and_touches_nothing(tmp_path):
    store = tmp_path / "untouched" / "unused.db"
    unused = TrackingAgent(f"sqlite:///{store}", "promptgate")
    unused.close()
    assert unused._process.returncode == -signal.SIGKILL
    assert not store.parent.exists()


def test_an_agent_asks_again_for_a_server_that_was_down_when_it_started(mlflow_server):  # noqa: F811
    server: MlflowServer = mlflow_server
    server.kill()
    agent = TrackingAgent(server.uri, "promptgate")
    try:
        with pytest.raises(TrackingUnavailable, match="connection refused"):
            agent.call("open")
        server.start()
        assert agent.call("open") is None
        assert agent.call("find_baseline", "nothing-yet", "v") is None
    finally:
        agent.close()
        if not server.healthy():
            restart(server)


def test_a_dead_agent_says_how_it_ended(tmp_path):
    dead = TrackingAgent(f"sqlite:///{tmp_path / 'dead.db'}", "promptgate")
    dead._process.kill()
    dead._process.wait()
    with pytest.raises(AgentGone, match=r"the tracking agent exited with code -9 \((BrokenPipeError|EOFError)\)"):
        dead.call("open")
    with pytest.raises(AgentGone):  # and it stays gone
        dead.call("open")
    dead.close()


# In the agent process: logging a run announces itself (with the agent's pid) and then takes 20 seconds.
SLOW_LOGGING = '''
import sys
if sys.argv and sys.argv[0] == "-c":
    import os, time
    import pytest_promptgate.tracking as tracking

    def log_eval_run(*args, **kwargs):
        with open(os.environ["AGENT_LOGGING"], "w") as f:
            f.write(str(os.getpid()))
        time.sleep(20)
        raise SystemExit(5)

    tracking.log_eval_run = log_eval_run
'''


def test_ctrl_c_while_the_agent_logs_keeps_the_runs_and_ends_as_interrupted(evals, pytester, tracking_on, tmp_path):
    evals("agent-ctrl-c")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_LOGGING)
    marker = tmp_path / "logging.pid"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]),
           "AGENT_LOGGING": str(marker)}
    argv = [sys.executable, "-m", "pytest", "--prompt-suite", "core", "--prompt-tracking-uri", tracking_on]
    session = subprocess.Popen(argv, cwd=pytester.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and session.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), session.communicate(timeout=30)[0].decode()
        session.send_signal(signal.SIGINT)  # as the terminal's Ctrl-C does (the agent is in a session of its own)
        out = session.communicate(timeout=15)[0].decode()  # not the 20 s the agent still takes
    finally:
        if session.poll() is None:
            session.kill()
        agent = int(marker.read_text()) if marker.exists() else None
        if agent is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(agent, signal.SIGKILL)
    assert session.returncode == pytest.ExitCode.INTERRUPTED, out
    assert "interrupted (Ctrl-C) while talking to MLflow" in out
    assert f"kept 2 run(s) in {spool(pytester)}" in out
    assert len(kept(pytester)) == 2
