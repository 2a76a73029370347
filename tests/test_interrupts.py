"""Interrupted and killed sessions: real ``python -m pytest`` processes, real signals, a real SQLite store.

Each phase of a session is held by the test project, not by the plugin: a conftest blocks
in pytest's own hooks (collection, an item's setup), a ``sitecustomize`` holds the tracking
agent in a call (it runs only in the agent, whose ``sys.argv[0]`` is ``-c``) until its
parent is gone, and a FIFO as the Markdown report holds the report writing. The session
is signalled once the phase's marker appears; afterwards no process of it may be left,
and every run with a finished case is in the store or in the spool.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

needs_posix = pytest.mark.skipif(os.name != "posix", reason="signals, FIFOs and flock")

# Two variants of five cases: ten items, a::c00 .. a::c04, b::c00 .. b::c04.
EVAL = """
eval: halt
suites: [core]
prompts: {p: {template: "{{message}}"}}
target: answer:reply
variants: [{name: a}, {name: b}]
threshold: 0.5
graders: [{type: equals, value: "yes"}]
cases:
""" + "".join(f"  - {{id: c0{i}, vars: {{message: m{i}}}}}\n" for i in range(5))

TARGET = 'def reply(vars):\n    return "yes"\n'

# Holds collection, or the setup of item b::c02 (seven cases have finished then), until the signal comes.
CONFTEST = """
import os, time
from pathlib import Path

def _hold(phase):
    if os.environ.get("PHASE") == phase:
        Path("phase.txt").write_text(phase)
        time.sleep(120)

def pytest_collection_modifyitems(items):
    _hold("collection")

def pytest_runtest_setup(item):
    if item.nodeid.endswith("::b::c02"):
        _hold("items")
"""

# In the tracking agent only: note its pid; in phase "agent" hold the first baseline search (the session
# waits for the agent's answer), in phase "logging" the second run's logging, until pytest is gone.
SITECUSTOMIZE = """
import os, sys, time
if sys.argv and sys.argv[0] == "-c" and os.environ.get("AGENT_PIDS"):
    with open(os.environ["AGENT_PIDS"], "a") as f:
        f.write(f"{os.getpid()}\\n")
    import pytest_promptgate.tracking as tracking

    def hold(real, nth):
        calls = []
        def held(*args, **kwargs):
            calls.append(1)
            if len(calls) == nth:
                with open("phase.txt", "w") as f:
                    f.write(os.environ["PHASE"])
                parent, deadline = os.getppid(), time.monotonic() + 120
                while os.getppid() == parent and time.monotonic() < deadline:
                    time.sleep(0.05)
                os._exit(3)
            return real(*args, **kwargs)
        return held

    if os.environ.get("PHASE") == "agent":
        tracking.find_baseline = hold(tracking.find_baseline, 1)
    elif os.environ.get("PHASE") == "logging":
        tracking.log_eval_run = hold(tracking.log_eval_run, 2)
"""

#: phase → (cases finished, {variant: cases} logged to MLflow, {variant: cases} kept in the spool)
PHASES = {
    "collection": (None, {}, {}),
    "items": (7, {"a": 5, "b": 2}, {}),
    "agent": (10, {}, {"a": 5, "b": 5}),
    "logging": (10, {"a": 5}, {"b": 5}),
    "reports": (10, {"a": 5, "b": 5}, {}),
}


@pytest.fixture
def halting(pytester, tracking_on, tmp_path):
    """The project, and a function that runs one session of it in a process of its own."""
    pytester.makepyfile(answer=TARGET)
    pytester.makeconftest(CONFTEST)
    (pytester.path / "halt.eval.yaml").write_text(EVAL)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    pids = tmp_path / "agents.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]),
           "AGENT_PIDS": str(pids), "PROMPTGATE_TRACKING_AGENT": "on"}

    def start(phase: str | None, *args: str) -> subprocess.Popen:
        argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--prompt-suite", "core",
                "--prompt-tracking-uri", tracking_on, *args]
        return subprocess.Popen(argv, cwd=pytester.path, env={**env, "PHASE": phase or ""},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    start.agents = lambda: [int(pid) for pid in pids.read_text().split()] if pids.exists() else []  # type: ignore[attr-defined]
    return start


def wait_for(path: Path, session: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not path.exists() and session.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.exists(), session.communicate(timeout=60)[0].decode()


def gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie nobody reaped has)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state == "Z"


def assert_all_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + 90  # an agent may finish the call it was in
    while not all(gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in pids if not gone(pid)] == []


def logged(uri: str) -> dict[str, tuple[int, str]]:
    """{variant: (total cases, complete tag)} of the runs in the store."""
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("promptgate/halt")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    return {r.data.tags["promptgate.variant"]: (int(r.data.metrics["total_cases"]), r.data.tags["promptgate.complete"])
            for r in runs}


def spooled(project: Path) -> dict[str, int]:
    records = [json.loads(p.read_text()) for p in sorted((project / ".promptgate" / "spool").glob("*.json"))]
    return {r["variant"]: len(r["cases"]) for r in records}


@needs_posix
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("phase", list(PHASES))
def test_an_interrupt_in_any_phase_keeps_every_finished_run_and_leaves_no_process(halting, pytester, tracking_on, phase, signum):
    args = ()
    if phase == "reports":
        os.mkfifo(pytester.path / "report.md")  # opening it for writing waits for a reader that never comes
        args = ("--prompt-report", "report.json", "--prompt-report-md", "report.md")
    session = halting(phase, *args)
    try:
        wait_for(pytester.path / ("report.json" if phase == "reports" else "phase.txt"), session)
        session.send_signal(signum)
        out = session.communicate(timeout=60)[0].decode()
    finally:
        if session.poll() is None:
            session.kill()
            session.wait()
    assert session.returncode == pytest.ExitCode.INTERRUPTED, out
    assert_all_gone(halting.agents())
    ran, in_store, in_spool = PHASES[phase]
    assert {v: cases for v, (cases, _) in logged(tracking_on).items()} == in_store, out
    assert spooled(pytester.path) == in_spool, out
    assert list((pytester.path / ".promptgate" / "journal").glob("*.jsonl")) == []  # every run kept elsewhere
    conclusion = [line for line in out.splitlines() if line.startswith("promptgate: session")]
    if ran is None:
        assert conclusion == [], out
        return
    name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    assert len(conclusion) == 1, out
    assert conclusion[0].startswith(f"promptgate: session INTERRUPTED ({name}) after {ran} of 10 case(s); kept "), out
    assert "passes" not in out
    if phase == "items":
        assert {complete for _, complete in logged(tracking_on).values()} == {"false"}  # never a baseline


@needs_posix
def test_kill_9_mid_items_the_next_session_logs_the_finished_cases_as_partial_runs(halting, pytester, tracking_on):
    session = halting("items")
    try:
        wait_for(pytester.path / "phase.txt", session)
        session.kill()  # SIGKILL: nothing of the plugin runs
        session.communicate(timeout=60)
    finally:
        if session.poll() is None:
            session.kill()
    assert_all_gone(halting.agents())  # the agent saw its parent go
    assert len(list((pytester.path / ".promptgate" / "journal").glob("*.jsonl"))) == 1
    assert logged(tracking_on) == {}

    (pytester.path / "phase.txt").unlink()
    nxt = halting(None)
    out = nxt.communicate(timeout=300)[0].decode()
    assert nxt.returncode == 0, out
    assert "recovered 2 partial run(s) of killed sessions from their journals" in out
    client = MlflowClient(tracking_uri=tracking_on)
    experiment = client.get_experiment_by_name("promptgate/halt")
    runs = client.search_runs([experiment.experiment_id])
    recovered = sorted((r.data.tags["promptgate.variant"], int(r.data.metrics["total_cases"]), r.data.tags["promptgate.complete"])
                       for r in runs if "promptgate.recovered" in r.data.tags)
    assert recovered == [("a", 5, "false"), ("b", 2, "false")]
    fresh = sorted((r.data.tags["promptgate.variant"], r.data.tags["promptgate.complete"])
                   for r in runs if "promptgate.recovered" not in r.data.tags)
    assert fresh == [("a", "true"), ("b", "true")]
    assert list((pytester.path / ".promptgate" / "journal").glob("*.jsonl")) == []
    assert spooled(pytester.path) == {}
