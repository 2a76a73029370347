"""Shared fixtures for the plugin's own tests."""

from __future__ import annotations

import json
import shutil
import textwrap

import pytest

from openai_server import openai_server  # noqa: F401  (a real HTTP server on 127.0.0.1)

APP = '''
import asyncio

CALLS = []

def upper(prompt):
    CALLS.append(prompt)
    return prompt.upper()

def label(vars):
    return {"refund": "refund", "money": "refund"}.get(vars["message"].split()[0], "other")

async def async_label(vars, variant):
    await asyncio.sleep(0)
    return {"output": label(vars), "input_tokens": 100, "output_tokens": 10, "model": "gpt-4o-mini"}

def crash(vars):
    if vars["message"] == "boom":
        return {}["missing"]
    return "ok"
'''


@pytest.fixture
def project(pytester: pytest.Pytester):
    """A pytester directory with an importable ``app`` module; returns a function writing files."""
    pytester.makepyfile(app=APP)
    pytester.syspathinsert()

    def write(name: str, text: str) -> None:
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())

    return write


RECORDER = """
import json
RESULTS = []
def pytest_runtest_logreport(report):
    if getattr(report, "promptgate", None):
        RESULTS.append(report.promptgate)
def pytest_sessionfinish(session):
    if not hasattr(session.config, "workerinput"):  # the controller writes what it received
        with open("results.json", "w") as f:
            json.dump(RESULTS, f)
"""


@pytest.fixture
def recorded(pytester: pytest.Pytester):
    """Record every case result the controller receives on reports; returns a reader of the last run's."""
    pytester.makeconftest(RECORDER)
    return lambda: json.loads((pytester.path / "results.json").read_text())


COIN = """
COUNTS = {}

def flip(vars):
    # One letter of the case's pattern per run: h heads, t tails, x an exception.
    n = COUNTS[vars["id"]] = COUNTS.get(vars["id"], 0) + 1
    side = vars["pattern"][(n - 1) % len(vars["pattern"])]
    if side == "x":
        raise RuntimeError("kaput")
    return "heads" if side == "h" else "tails"
"""


def coin_eval(threshold: float, **patterns: str) -> str:
    """An eval of three runs per case over ``coin:flip``, one case per ``id=pattern``."""
    cases = "".join(f"  - {{id: {cid}, vars: {{id: {cid}, pattern: {p}}}}}\n" for cid, p in patterns.items())
    return (
        "eval: coin\nsuites: [core]\ntarget: coin:flip\nrepeat: 3\nrepeat_pass: 0.6\n"
        f"threshold: {threshold}\ngraders: [{{type: equals, value: heads}}]\ncases:\n" + cases
    )


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytester, whose sessions set the ini key pytest-asyncio (a test dependency) otherwise warns about,
    and print to a terminal of unknown width (as in CI logs): the full summary table.

    pytester clears ``PYTEST_ADDOPTS`` when it starts, so the variable is set after it.
    """
    monkeypatch.setenv("PYTEST_ADDOPTS", "-o asyncio_default_fixture_loop_scope=function")
    # xdist's workers have COLUMNS=80, which would give every session the compact summary of a narrow terminal.
    monkeypatch.delenv("COLUMNS", raising=False)
    return pytester


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory: pytest.TempPathFactory):
    """A migrated SQLite MLflow store to copy: creating one takes seconds, copying it milliseconds.

    It also logs one run, so that every MLflow module the plugin uses is imported before any
    in-process pytester run (those runs restore sys.modules afterwards).
    """
    from pytest_promptgate.tracking import TrackedRun, Tracker, log_eval_run

    path = tmp_path_factory.mktemp("migrated") / "mlflow.db"
    Tracker(f"sqlite:///{path}").open()
    warm = tmp_path_factory.mktemp("warm") / "mlflow.db"
    shutil.copy(path, warm)
    tracker = Tracker(f"sqlite:///{warm}").open()
    run_id = log_eval_run(tracker, TrackedRun(eval="warm", variant="v", suite="s", session="s", prompts={"p": "x"}))
    tracker.client.list_artifacts(run_id)
    return path


@pytest.fixture
def tracking_on(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, migrated_store):
    """Tracking switched on for the pytester project, on a SQLite store ``mlflow.db`` in it (the default place).

    Returns the store's URI, for reading runs back with an ``MlflowClient`` of the test's own.
    """
    from pytest_promptgate.tracking import resolve_tracking_uri

    monkeypatch.delenv("PROMPTGATE_TRACKING", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    shutil.copy(migrated_store, pytester.path / "mlflow.db")
    return resolve_tracking_uri(None, None, {}, cwd=pytester.path)
