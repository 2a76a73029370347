"""Team scale (DESIGN §12): many sessions and syncs at once on one store lose, repeat and mis-baseline nothing.

Real parts only: a real ``mlflow server`` over a real PostgreSQL cluster (and a
SQLite store), real pytest processes, each in a checkout of its own, some with
``-n 2``, some from a checkout that regresses half the evals, and ``--prompt-sync``
of runs kept while the store was down racing with them (tests/team_scale.py). The
store is then read back with a client of the test's own and checked run by run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from mlflow_server import MlflowServer
from postgres_server import postgres_server  # noqa: F401  (a real PostgreSQL cluster)
from team_scale import Story, Team, audit, stored_runs, team_story

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "team.py"


def check(story: Story, uri: str) -> None:
    for job in [*story.spoolers, story.seed, *story.crowd]:
        assert "Traceback" not in job.output and "INTERNALERROR" not in job.output, (job.name, job.output)
        assert job.returncode == (1 if job.name.endswith("-broken") else 0), (job.name, job.output)
    for job in story.spoolers:
        assert "kept 10 run(s)" in job.output, job.output  # the store was down: the runs waited in the spool
    runs = stored_runs(uri)
    found = audit(runs, story.sessions, spooled=[job.name for job in story.spoolers])
    assert found.problems == []
    assert {run.status for run in runs} == {"FINISHED"}
    assert sum(run.verdict == "REGRESSION" for run in runs) > 0  # runs that must never be a baseline were there
    assert sum(run.baseline is not None for run in runs) >= 10 * (len(story.sessions) - len(story.spoolers) - 1)
    assert sorted(os.listdir(story.spool)) == [".gitignore"]  # every kept run sent, no claim left behind


def test_a_team_on_mlflow_server_and_postgresql(postgres_server, tmp_path):  # noqa: F811
    backend = postgres_server.create_database("team")
    (tmp_path / "server").mkdir()
    server = MlflowServer(tmp_path / "server", backend_store_uri=backend, workers=1)
    try:
        story = team_story(tmp_path, server.uri, Team(sessions=8, xdist=3, broken=2, syncs=3, spoolers=2),
                           bring_up=server.start)
        check(story, server.uri)
    finally:
        server.stop()


def test_a_team_on_sqlite(tmp_path, migrated_store):
    store = tmp_path / "store" / "mlflow.db"
    store.parent.write_text("a file where the store's directory belongs: tracking is down")

    def bring_up() -> None:
        store.parent.unlink()
        store.parent.mkdir()
        shutil.copy(migrated_store, store)

    uri = f"sqlite:///{store}"
    story = team_story(tmp_path, uri, Team(sessions=4, xdist=1, broken=1, syncs=2, spoolers=1), bring_up=bring_up)
    check(story, uri)


def test_the_team_benchmark_runs_at_tiny_sizes(postgres_server):  # noqa: F811  (its programs; it starts its own)
    done = subprocess.run(
        # The crowd part costs a server and rounds of sessions, as the tests above do: the lookups only.
        [sys.executable, str(BENCHMARK), "--only", "lookup", "--runs", "1", "--fill", "30"],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "runs" in line]
    assert [row.split(" | ")[0] for row in rows] == [
        "| baseline lookup, 30 runs in one experiment, SQLite",
        "| baseline lookup, 30 runs in one experiment, PostgreSQL",
    ]
