"""Several senders of one spool at once: every kept run is logged exactly once, nothing crashes, nothing stays behind.

Real processes (``pytest --prompt-sync`` and whole sessions) share one ``.promptgate/spool/``
and one SQLite store. A conftest makes them meet just before they send: each imports
MLflow first, then waits until all have arrived, so their sends overlap for real.
The store is read back through an ``MlflowClient`` of the test's own.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pytest_promptgate.tracking import TrackedRun, Tracker, send_spooled, spool, spool_dir, spooled
from test_tracking_down import EVAL, SERVED

# Every sender imports MLflow, then waits for the others, then sends: --prompt-sync in pytest_cmdline_main
# (before the plugin's), a session at the start of its finish (before the plugin's).
MEET = """
import os, time
from pathlib import Path

import pytest

def meet():
    import mlflow.tracking, mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (not after the meeting)
    here = Path(os.environ["SENDERS_MEET"])
    (here / str(os.getpid())).touch()
    deadline = time.monotonic() + 90
    while len(list(here.iterdir())) < int(os.environ["SENDERS"]) and time.monotonic() < deadline:
        time.sleep(0.005)

@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    if config.getoption("prompt_sync"):
        meet()

@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    meet()
"""

KEPT = 12


def keep(directory: Path, uri: str, count: int = KEPT) -> list[str]:
    """``count`` complete runs of earlier sessions waiting in the spool for ``uri``; their record ids."""
    records = [
        TrackedRun(eval="shared", variant=f"v{i % 3}", suite="core", session=f"earlier-{i}", complete=True,
                   metrics={"pass_rate": 1.0, "total_cases": 1, "passed_cases": 1}, tracking_uri=uri,
                   cases=[{"case_id": "c1", "passed": True, "outcome": "passed"}], start_time_ms=1_700_000_000_000 + i)
        for i in range(count)
    ]
    for record in records:
        spool(directory, record)
    return [record.record_id for record in records]


def runs_per_record(uri: str) -> Counter[str]:
    client = MlflowClient(tracking_uri=uri)
    counts: Counter[str] = Counter()
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id], max_results=1000):
            assert run.info.status == "FINISHED", run
            counts[run.data.tags["promptgate.record"]] += 1
    return counts


def start(pytester: pytest.Pytester, meet: Path, senders: int, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "SENDERS_MEET": str(meet), "SENDERS": str(senders)}
    return subprocess.Popen([sys.executable, "-m", "pytest", *args], cwd=pytester.path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(processes: list[subprocess.Popen[str]]) -> list[tuple[int, str]]:
    """Each process's exit status and output; none may take longer than the hang guard."""
    done = []
    try:
        for process in processes:
            out = process.communicate(timeout=240)[0]
            done.append((process.returncode, out))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return done


def sent_by(out: str) -> int:
    found = re.search(r"promptgate: sent (\d+) run\(s\) to MLflow", out)
    return int(found.group(1)) if found else 0


def assert_spool_empty(directory: Path) -> None:
    assert sorted(os.listdir(directory)) == [".gitignore"]  # no record, no claim left behind


@pytest.mark.parametrize("attempt", range(3))
def test_four_prompt_syncs_at_once_send_each_kept_run_exactly_once(pytester, tracking_on, tmp_path, attempt):
    pytester.makeconftest(MEET)
    directory = spool_dir(pytester.path)
    records = keep(directory, tracking_on)
    meet = tmp_path / "meet"
    meet.mkdir()
    done = finish([start(pytester, meet, 4, "--prompt-sync", "--prompt-tracking-uri", tracking_on) for _ in range(4)])
    for code, out in done:
        assert code == 0, out
        assert "Traceback" not in out and "INTERNALERROR" not in out, out
    assert sum(sent_by(out) for _, out in done) == KEPT
    assert runs_per_record(tracking_on) == Counter(dict.fromkeys(records, 1))
    assert_spool_empty(directory)


def test_sessions_and_prompt_syncs_at_once_lose_and_repeat_nothing(project, pytester, tracking_on, tmp_path):
    pytester.makeconftest(MEET)
    project("served.py", SERVED)
    for name in ("one", "two"):
        project(f"{name}.eval.yaml", EVAL.replace("NAME", name).replace("THRESHOLD", "0.5"))
    directory = spool_dir(pytester.path)
    records = keep(directory, tracking_on)
    meet = tmp_path / "meet"
    meet.mkdir()
    sync = ("--prompt-sync", "--prompt-tracking-uri", tracking_on)
    done = finish([
        start(pytester, meet, 4, "--prompt-suite", "core", "--prompt-tracking-uri", tracking_on, "one.eval.yaml"),
        start(pytester, meet, 4, "--prompt-suite", "core", "--prompt-tracking-uri", tracking_on, "two.eval.yaml"),
        start(pytester, meet, 4, *sync),
        start(pytester, meet, 4, *sync),
    ])
    for code, out in done:
        assert code == 0, out
        assert "Traceback" not in out and "INTERNALERROR" not in out, out
    counts = runs_per_record(tracking_on)
    assert {record: counts[record] for record in records} == dict.fromkeys(records, 1)
    assert sum(counts.values()) == KEPT + 4  # and each session's own two runs
    assert_spool_empty(directory)


def test_a_claim_left_by_a_dead_sender_is_taken_back(tmp_path, tracking_on):
    directory = spool_dir(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True, timeout=60)
    abandoned = directory / f".sending-{int(dead.stdout)}-0badc0de"
    live = directory / f".sending-{os.getpid()}-00c0ffee"  # a sender that still runs: its claim is its own
    records = keep(directory, tracking_on, 3)
    for claim, path in ((abandoned, spooled(directory)[0]), (abandoned, spooled(directory)[1]), (live, spooled(directory)[2])):
        claim.mkdir(exist_ok=True)
        path.rename(claim / path.name)
    tracker = Tracker(tracking_on).open()

    assert len(send_spooled(tracker, directory)) == 2
    assert not abandoned.exists()
    assert [p.name for p in live.iterdir()] != []

    old = time.time() - 24 * 3600  # a claim that old is taken back even from a process that seems alive
    os.utime(live, (old, old))
    assert len(send_spooled(tracker, directory)) == 1
    assert runs_per_record(tracking_on) == Counter(dict.fromkeys(records, 1))
    assert_spool_empty(directory)
