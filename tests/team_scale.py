"""A team on one MLflow store: checkouts, sessions and syncs at once, and what the store must hold afterwards.

Shared by tests/test_team_scale.py and benchmarks/team.py (DESIGN §12). A *job* is
one pytest process in a checkout of its own (a directory with ``pytest.ini`` and
:data:`EVALS` eval files on the ``echo`` target), as one CI job of a team is. Every
job's runs carry its name in the ``ci.run_id`` tag (``CI=1``, ``BUILD_ID=name``), so
the store can be checked run by run against what each job should have logged: each
(job, eval) exactly once, and each baseline the newest good run that was already in
the store when the job began.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EVALS = 10
SUITE = "team"
#: A hang guard for one job, not a speed requirement.
JOB_TIMEOUT = 600.0

# One variant of three cases; the echo target returns the rendered prompt. A broken checkout's prompt
# adds a "!" to the first half of the evals: every case fails, below the threshold, REGRESSION.
EVAL = """eval: NAME
suites: [team]
prompts: {p: {template: "TEMPLATE"}}
target: echo
threshold: 1.0
graders: [{type: equals, value: "{{answer}}"}]
cases:
  - {id: c1, vars: {answer: "yes"}}
  - {id: c2, vars: {answer: "no"}}
  - {id: c3, vars: {answer: "maybe"}}
"""

#: Variables that would change what a child pytest or MLflow does, or which CI it believes it runs in.
_FOREIGN_ENV = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_XDIST_AUTO_NUM_WORKERS", "PROMPTGATE_TRACKING",
                "GITHUB_ACTIONS", "GITLAB_CI", "BUILD_URL")


def eval_names() -> list[str]:
    """The evals every checkout holds."""
    return [f"e{i}" for i in range(EVALS)]


def write_checkout(directory: Path, *, broken: bool = False) -> Path:
    """A checkout of the team's project in ``directory`` (its own rootdir); ``broken`` regresses half its evals."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    for i, name in enumerate(eval_names()):
        template = "{{answer}}!" if broken and i < EVALS // 2 else "{{answer}}"
        (directory / f"{name}.eval.yaml").write_text(EVAL.replace("NAME", name).replace("TEMPLATE", template))
    return directory


def job_env(name: str) -> dict[str, str]:
    """The environment of job ``name``: tracking on, no outside pytest options, ``ci.run_id`` = ``name``."""
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_ENV and not k.startswith("MLFLOW_")}
    env.update(CI="1", BUILD_ID=name, MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT="true")
    return env


@dataclass
class Job:
    """One pytest process of the team: a session (``--prompt-suite``) or a ``--prompt-sync``."""

    name: str
    checkout: Path
    args: tuple[str, ...]
    process: subprocess.Popen[str] | None = None
    started: float = 0.0
    ended: float = math.inf
    output: str = ""
    returncode: int | None = None

    def start(self) -> Job:
        self.started = time.time()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *self.args], cwd=self.checkout,
            env=job_env(self.name), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        return self

    def wait(self, deadline: float) -> Job:
        assert self.process is not None
        try:
            self.output = self.process.communicate(timeout=max(1.0, deadline - time.monotonic()))[0]
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.output = self.process.communicate()[0] + "\n(killed: it outlived the hang guard)"
        self.ended = time.time()
        self.returncode = self.process.returncode
        return self


def session(name: str, checkout: Path, uri: str, *extra: str) -> Job:
    """A session of the team suite logging to ``uri``."""
    return Job(name, checkout, ("-q", "--prompt-suite", SUITE, "--prompt-tracking-uri", uri, *extra))


def sync(name: str, checkout: Path, uri: str) -> Job:
    """``pytest --prompt-sync``: sends what the checkout's spool keeps for ``uri``."""
    return Job(name, checkout, ("--prompt-sync", "--prompt-tracking-uri", uri))


def run_at_once(jobs: Sequence[Job], timeout: float = JOB_TIMEOUT) -> list[Job]:
    """Start every job, then wait for all of them (each bounded by the hang guard)."""
    for job in jobs:
        job.start()
    deadline = time.monotonic() + timeout
    return [job.wait(deadline) for job in jobs]


# --------------------------------------------------------------------------- the store afterwards


@dataclass(frozen=True)
class StoredRun:
    """What the checks need of one run in the store."""

    run_id: str
    job: str
    eval: str
    variant: str
    session: str
    start_time: int
    end_time: int
    status: str
    complete: bool
    verdict: str | None
    baseline: str | None

    @property
    def recency(self) -> tuple[int, int, str]:
        """Sort key, newest first, as the baseline search orders runs."""
        return -self.start_time, -self.end_time, self.run_id


def stored_runs(uri: str, prefix: str = "promptgate") -> list[StoredRun]:
    """Every run of the team's evals in the store at ``uri``, read with a client of our own."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = []
    for name in eval_names():
        experiment = client.get_experiment_by_name(f"{prefix}/{name}")
        if experiment is None:
            continue
        token = None
        while True:
            page = client.search_runs([experiment.experiment_id], max_results=1000, page_token=token)
            found.extend(_stored(run) for run in page)
            token = page.token
            if not token:
                break
    return found


def _stored(run: Any) -> StoredRun:
    tags = run.data.tags
    return StoredRun(
        run_id=run.info.run_id, job=tags.get("ci.run_id", "?"), eval=tags.get("promptgate.eval", "?"),
        variant=tags.get("promptgate.variant", "?"), session=tags.get("promptgate.session", "?"),
        start_time=run.info.start_time, end_time=run.info.end_time or 0, status=run.info.status,
        complete=tags.get("promptgate.complete") == "true", verdict=tags.get("promptgate.verdict"),
        baseline=tags.get("promptgate.baseline_run_id"),
    )


@dataclass
class Audit:
    """What is wrong with the store, against what the jobs should have logged."""

    lost: list[tuple[str, str]] = field(default_factory=list)
    duplicated: list[tuple[str, str]] = field(default_factory=list)
    unexpected: list[tuple[str, str]] = field(default_factory=list)
    wrong_baselines: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """One line per problem; [] when the store holds exactly what it should."""
        return ([f"lost: {job} {name}" for job, name in self.lost]
                + [f"duplicated: {job} {name}" for job, name in self.duplicated]
                + [f"unexpected: {job} {name}" for job, name in self.unexpected]
                + self.wrong_baselines)


def audit(runs: Sequence[StoredRun], jobs: Sequence[Job], spooled: Iterable[str] = ()) -> Audit:
    """Check ``runs`` against the session ``jobs`` (each logs every eval once).

    A job's runs were certainly in the store once its process had exited, unless it
    is one of ``spooled`` (tracking was down: its runs arrive when someone sends
    them). A run's baseline must be a good run (FINISHED, complete, not REGRESSION)
    of the same eval and variant from another session, at least as new as every
    good run certainly in the store when the run's own job started; a run without a
    baseline must have had none to find.
    """
    found = Counter((run.job, run.eval) for run in runs)
    expected = {(job.name, name) for job in jobs for name in eval_names()}
    result = Audit(
        lost=sorted(expected - set(found)),
        duplicated=sorted(key for key, count in found.items() if count > 1),
        unexpected=sorted(set(found) - expected),
    )
    spooled = set(spooled)
    in_store_by = {job.name: math.inf if job.name in spooled else job.ended for job in jobs}
    started = {job.name: job.started for job in jobs}
    by_id = {run.run_id: run for run in runs}
    for run in runs:
        known = [c for c in runs if _good_baseline(c, run) and in_store_by.get(c.job, math.inf) < started[run.job]]
        problem = _baseline_problem(run, by_id, min(known, key=lambda c: c.recency) if known else None)
        if problem is not None:
            result.wrong_baselines.append(f"{run.job} {run.eval}: {problem}")
    return result


def _good_baseline(candidate: StoredRun, run: StoredRun) -> bool:
    return (candidate.eval == run.eval and candidate.variant == run.variant and candidate.session != run.session
            and candidate.status == "FINISHED" and candidate.complete and candidate.verdict != "REGRESSION")


def _baseline_problem(run: StoredRun, by_id: Mapping[str, StoredRun], newest_known: StoredRun | None) -> str | None:
    if run.baseline is None:
        return None if newest_known is None else f"no baseline, but {newest_known.run_id} ({newest_known.job}) was there"
    baseline = by_id.get(run.baseline)
    if baseline is None:
        return f"baseline {run.baseline} is not in the store"
    if not _good_baseline(baseline, run):
        return (f"baseline {baseline.run_id} ({baseline.job} {baseline.eval}/{baseline.variant}, {baseline.status}, "
                f"complete={baseline.complete}, {baseline.verdict}) cannot be a baseline")
    if newest_known is not None and baseline.recency > newest_known.recency:
        return f"baseline {baseline.run_id} ({baseline.job}) is older than {newest_known.run_id} ({newest_known.job})"
    return None


# --------------------------------------------------------------------------- the story


@dataclass(frozen=True)
class Team:
    """How many jobs of each kind meet at once: ``sessions`` (``xdist`` of them with ``-n 2``, ``broken``
    of them from a checkout that regresses half the evals) and ``syncs`` of the spool ``spoolers`` left."""

    sessions: int
    xdist: int
    broken: int
    syncs: int
    spoolers: int


@dataclass
class Story:
    """Every job of a team story, by phase, and how long the phase of many jobs at once took."""

    spoolers: list[Job]
    seed: Job
    crowd: list[Job]
    crowd_seconds: float
    spool: Path

    @property
    def sessions(self) -> list[Job]:
        """Every session job (the syncs log no run of their own)."""
        return [*self.spoolers, self.seed, *(job for job in self.crowd if "--prompt-sync" not in job.args)]


def team_story(root: Path, uri: str, team: Team, bring_up: Any) -> Story:
    """Run the story against the store at ``uri``, which is unreachable until ``bring_up()``.

    First ``spoolers`` sessions, one after another in the checkout ``shared``, keep
    their runs in its spool (tracking is down); ``bring_up()`` makes the store
    reachable; one ``seed`` session logs the first runs; then ``sessions`` sessions
    (the first in ``shared``, each other one in a checkout of its own) and ``syncs``
    ``--prompt-sync`` of ``shared``'s spool all start at once.
    """
    shared = write_checkout(root / "shared")
    spoolers = [session(f"spool-{i}", shared, uri).start().wait(time.monotonic() + JOB_TIMEOUT)
                for i in range(team.spoolers)]
    bring_up()
    seed = session("seed", write_checkout(root / "seed"), uri).start().wait(time.monotonic() + JOB_TIMEOUT)
    crowd = []
    for i in range(team.sessions):
        broken = 0 < i <= team.broken
        checkout = shared if i == 0 else write_checkout(root / f"s{i}", broken=broken)
        extra = ("-n", "2") if i >= team.sessions - team.xdist else ()
        crowd.append(session(f"s{i}{'-broken' if broken else ''}", checkout, uri, *extra))
    crowd += [sync(f"sync-{i}", shared, uri) for i in range(team.syncs)]
    began = time.monotonic()
    run_at_once(crowd)
    return Story(spoolers, seed, crowd, time.monotonic() - began, shared / ".promptgate" / "spool")
