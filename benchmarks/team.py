"""Team scale (DESIGN §12): runs/s held by 8 sessions at once on mlflow server + PostgreSQL, and the time of one
baseline lookup among 20 000 runs of one experiment on SQLite and on PostgreSQL.

    python benchmarks/team.py [--runs N] [--fill N] [--sessions N] [--only crowd|lookup] [--write-doc]

Run it with the interpreter of the ``[test]`` environment: it needs the full
``mlflow`` package (``mlflow server``), psycopg, and Debian's ``postgresql``
programs; it starts its own PostgreSQL cluster and server on 127.0.0.1
(tests/postgres_server.py, tests/mlflow_server.py) and removes them afterwards.

- **crowd**: one seed session logs the first runs; then, N times after one
  unmeasured warm-up round, 8 pytest sessions (``--sessions``; 3 of 8 with ``-n 2``), each in
  a checkout of its own with 10 evals on the ``echo`` target, start at once
  (tests/team_scale.py). Runs/s = the runs of a round (10 a session) / the round's wall time,
  first spawn to last exit. After every round the store is checked run by run
  (nothing lost or duplicated, every baseline right); a wrong store stops the
  benchmark instead of being measured.
- **lookup**: ``--fill`` runs (default 20 000) of one variant that never passed
  (REGRESSION) over one good run, written straight into the store's tables with
  MLflow's own SQLAlchemy models (20 000 sessions would take hours); then the
  median of N ``find_baseline`` calls after one warm-up call, each checked to find
  the good run, and the floor: the median of N plain ``search_runs`` of the newest
  run in the same experiment.

``--write-doc`` (all parts, ``--runs`` >= 5, default sizes) rewrites the "Team scale"
section of docs/benchmarks.md between its markers; other runs print only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from run import ROOT, BenchmarkError, loadavg, machine, progress, write_doc

sys.path.insert(0, str(ROOT / "tests"))

from mlflow_server import MlflowServer  # noqa: E402  (tests/ helpers: the same real parts the tests use)
from postgres_server import PostgresServer, postgres_bin  # noqa: E402
from team_scale import EVALS, Job, audit, run_at_once, session, stored_runs, write_checkout  # noqa: E402

BEGIN = "<!-- team:begin -->"
END = "<!-- team:end -->"
SESSIONS = 8
FILL = 20_000
EVAL = "crowded"


# --------------------------------------------------------------------------- crowd


def crowd(root: Path, pg: PostgresServer, runs: int, sessions: int) -> dict[str, float]:
    """Runs/s of ``runs`` measured rounds of ``sessions`` sessions at once; the store checked after each."""
    server = MlflowServer(_mkdir(root / "server"), backend_store_uri=pg.create_database("crowd"), workers=1)
    server.start()
    try:
        jobs = [_checked(run_at_once([session("seed", write_checkout(root / "seed"), server.uri)]))[0]]
        rates, walls = [], []
        for round_ in range(runs + 1):
            crowd = [
                session(f"r{round_}-s{i}", write_checkout(root / f"r{round_}-s{i}"), server.uri,
                        *(("-n", "2") if i >= sessions - xdist(sessions) else ()))
                for i in range(sessions)
            ]
            began = time.monotonic()
            run_at_once(crowd)
            took = time.monotonic() - began
            jobs += _checked(crowd)
            problems = audit(stored_runs(server.uri), jobs).problems
            if problems:
                raise BenchmarkError("the store is wrong after round {}:\n{}".format(round_, "\n".join(problems[:20])))
            progress(f"crowd round {round_}{' (warm-up)' if round_ == 0 else ''}: {sessions * EVALS} runs in "
                     f"{took:.1f} s = {sessions * EVALS / took:.2f} runs/s")
            if round_:
                rates.append(sessions * EVALS / took)
                walls.append(statistics.median(job.ended - job.started for job in crowd))
    finally:
        server.stop()
    return {"runs_per_s": statistics.median(rates), "runs_per_s_min": min(rates), "runs_per_s_max": max(rates),
            "session_s": statistics.median(walls)}


def xdist(sessions: int) -> int:
    """How many of ``sessions`` run with ``-n 2``: 3 of 8."""
    return 3 * sessions // 8


def _checked(jobs: Sequence[Job]) -> list[Job]:
    for job in jobs:
        if job.returncode != 0 or "Traceback" in job.output:
            raise BenchmarkError(f"session {job.name} failed ({job.returncode}):\n{job.output[-3000:]}")
    return list(jobs)


# --------------------------------------------------------------------------- lookup


def lookup(uri: str, fill: int, runs: int, artifacts: Path) -> dict[str, float]:
    """Medians of ``runs`` baseline lookups and of as many plain searches among ``fill`` runs of one experiment."""
    from pytest_promptgate.tracking import Tracker, find_baseline

    tracker = Tracker(uri).open()
    experiment_id = tracker.experiment_for(EVAL)
    began = time.monotonic()
    good = _fill(uri, experiment_id, fill, artifacts)
    progress(f"{_store(uri)}: {fill} runs written in {time.monotonic() - began:.1f} s")
    client = tracker.client

    def find() -> None:
        found = find_baseline(tracker, EVAL, "base", exclude_session="now")
        if found is None or found.run_id != good:
            raise BenchmarkError(f"{_store(uri)}: the lookup found {found and found.run_id}, not the good run {good}")

    def plain() -> None:
        client.search_runs([experiment_id], max_results=1, order_by=["attributes.start_time DESC"])

    return {"lookup_s": _median(find, runs), "plain_s": _median(plain, runs)}


def _fill(uri: str, experiment_id: str, count: int, artifacts: Path) -> str:
    """Write ``count`` finished, complete runs of variant ``base``: the oldest PASS, the others REGRESSION."""
    from sqlalchemy import insert

    from mlflow.store.tracking.dbmodels.models import SqlRun, SqlTag
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(uri, str(artifacts))
    start = 1_700_000_000_000
    runs, tags = [], []
    for i in range(count):
        run_id = uuid.uuid4().hex
        runs.append({"run_uuid": run_id, "name": f"run-{i}", "status": "FINISHED", "start_time": start + i * 1000,
                     "end_time": start + i * 1000 + 500, "lifecycle_stage": "active", "user_id": "bench",
                     "experiment_id": int(experiment_id), "artifact_uri": f"{artifacts}/{run_id}", "source_type": "LOCAL"})
        tags += [{"run_uuid": run_id, "key": key, "value": value} for key, value in {
            "promptgate.eval": EVAL, "promptgate.variant": "base", "promptgate.complete": "true",
            "promptgate.session": f"session-{i}", "promptgate.verdict": "PASS" if i == 0 else "REGRESSION",
            "git.branch": "main"}.items()]
    with store.ManagedSessionMaker() as db:
        db.execute(insert(SqlRun.__table__), runs)
        db.execute(insert(SqlTag.__table__), tags)
    store.engine.dispose()
    return runs[0]["run_uuid"]


def _median(call: Callable[[], None], runs: int) -> float:
    call()  # warm-up: connections, caches
    took = []
    for _ in range(runs):
        began = time.perf_counter()
        call()
        took.append(time.perf_counter() - began)
    return statistics.median(took)


def _store(uri: str) -> str:
    return "SQLite" if uri.startswith("sqlite") else "PostgreSQL"


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------- the document


def render(info: list[tuple[str, str]], figures: dict[str, dict[str, float]], args: argparse.Namespace) -> str:
    fill, runs, sessions = args.fill, args.runs, args.sessions
    out = [BEGIN, "", "## Team scale", "",
           "Generated by `benchmarks/team.py` (DESIGN §12); edits between the team markers are overwritten.", ""]
    out += [f"- **{k}**: {v}" for k, v in info]
    out += ["", "| what | median | notes |", "|---|---|---|"]
    if "crowd" in figures:
        c = figures["crowd"]
        out.append(f"| runs/s held, {sessions} sessions at once on `mlflow server` (1 worker) + PostgreSQL | "
                   f"{c['runs_per_s']:.2f} runs/s | min {c['runs_per_s_min']:.2f}, max {c['runs_per_s_max']:.2f} "
                   f"over {runs} rounds of {sessions * EVALS} runs ({xdist(sessions)} sessions with `-n 2`); one session "
                   f"{c['session_s']:.1f} s spawn to exit; every round checked: 0 lost, 0 duplicated, "
                   "every baseline right |")
    for store in ("SQLite", "PostgreSQL"):
        if store in figures:
            f = figures[store]
            out.append(f"| baseline lookup, {fill:,} runs in one experiment, {store} | {f['lookup_s'] * 1000:.1f} ms | "
                       f"floor: one plain `search_runs` of the newest run {f['plain_s'] * 1000:.1f} ms; "
                       f"{runs} lookups after one warm-up |")
    out += ["", "How: see the docstring of `benchmarks/team.py`. The lookup's variant never passed: every run but the "
            "oldest is a REGRESSION, which used to make the search page through all of them, 20 at a time "
            "(30-40 s at 20 000 runs on SQLite); it is now one search with the verdict in MLflow's filter plus one "
            "for runs without a verdict.", "", END, ""]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, metavar="N", help="measured rounds and lookups (default 5)")
    parser.add_argument("--fill", type=int, default=FILL, metavar="N", help=f"runs in the lookup's experiment (default {FILL})")
    parser.add_argument("--sessions", type=int, default=SESSIONS, metavar="N",
                        help=f"sessions at once in the crowd (default {SESSIONS})")
    parser.add_argument("--only", choices=("crowd", "lookup"), help="run one part only. Default: both")
    parser.add_argument("--write-doc", action="store_true", help="write the figures into docs/benchmarks.md. Default: off")
    args = parser.parse_args(argv)
    if min(args.runs, args.fill, args.sessions) < 1:
        parser.error("--runs, --fill and --sessions must be at least 1")
    if args.write_doc and (args.only or args.runs < 5 or args.fill != FILL or args.sessions != SESSIONS):
        parser.error(f"--write-doc records every part, medians of at least 5, at --fill {FILL} --sessions {SESSIONS}")
    bindir = postgres_bin()
    if bindir is None:
        parser.error("PostgreSQL is not installed (Debian package postgresql)")

    command = shlex.join(["python", "benchmarks/team.py", *(argv if argv is not None else sys.argv[1:])])
    started, load_before, measured = dt.datetime.now(dt.timezone.utc), loadavg(), machine()
    t0 = time.perf_counter()
    figures: dict[str, dict[str, float]] = {}
    pg = PostgresServer(bindir)
    with tempfile.TemporaryDirectory(prefix="promptgate-team-") as tmp:
        root = Path(tmp)
        try:
            pg.start()
            if args.only in (None, "lookup"):
                figures["SQLite"] = lookup(f"sqlite:///{root}/lookup.db", args.fill, args.runs, _mkdir(root / "a1"))
                figures["PostgreSQL"] = lookup(pg.create_database("lookup"), args.fill, args.runs, _mkdir(root / "a2"))
            if args.only in (None, "crowd"):
                figures["crowd"] = crowd(root, pg, args.runs, args.sessions)
        except BenchmarkError as exc:
            print(f"\nteam benchmark FAILED, nothing recorded:\n{exc}", file=sys.stderr)
            return 1
        finally:
            pg.stop()
    info = [
        ("date", f"{started.strftime('%Y-%m-%d %H:%M UTC')} (took {time.perf_counter() - t0:.0f} s)"),
        ("command", f"`{command}`"),
        *measured,
        ("load average (1, 5, 15 min) before / after", f"{load_before} / {loadavg()} (the machine is shared)"),
    ]
    section = render(info, figures, args)
    print(section)
    if args.write_doc:
        write_doc(section, BEGIN, END)
        print("wrote the team section of docs/benchmarks.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
