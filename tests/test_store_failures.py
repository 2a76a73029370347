"""Stores that fail in every phase of a session: the evals still gate, the runs are kept, the reason is one line.

Each test breaks a real SQLite store the way it breaks in the field (a schema of another
MLflow version, a damaged database, a write the database refuses, a directory that
cannot be written, a full disk) and runs whole sessions, with and without the tracking
agent, in a process of their own, so that the terminal shows all a user would see. A
failure must end as "baseline unavailable" (or a refused run) plus runs kept in the
spool plus a one-line reason: never a traceback, never raw SQLAlchemy text, never a lost report.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from mlflow_server import free_port
from pytest_promptgate.tracking import TrackedRun, Tracker, log_eval_run, spool, spool_dir
from test_tracking_down import EVAL, SERVED, kept

# Words that only a traceback or raw SQLAlchemy text would print.
NEVER = ("Traceback", "INTERNALERROR", "[SQL:", "sqlalche.me", "autoflush", "(sqlite3.")

both_agents = pytest.mark.parametrize("agent", ["on", "off"])

# For the disk that fills: each case's output is 40 000 characters that do not compress.
BIG = """
import os

def big(vars):
    return os.urandom(20_000).hex()
"""

BIG_EVAL = """
eval: big-outputs
suites: [core]
target: big:big
threshold: 0.5
graders: [{type: not_contains, value: "z"}]
cases:
""" + "".join(f"  - {{id: c{i}, vars: {{n: {i}}}}}\n" for i in range(30))


@pytest.fixture
def evals(project, pytester, monkeypatch):
    """Write the eval ``name`` (2 variants × 3 cases, pass rate 2/3, threshold 0.5) and choose the agent."""

    def write(name: str, agent: str) -> None:
        monkeypatch.setenv("PROMPTGATE_TRACKING_AGENT", agent)
        project("served.py", SERVED)
        project(f"{name}.eval.yaml", EVAL.replace("NAME", name).replace("THRESHOLD", "0.5"))

    return write


def run_eval(pytester: pytest.Pytester, uri: str, *args: str, timeout: float = 120) -> pytest.RunResult:
    """A session in a process of its own (the agent's and MLflow's output included), with a report and a hang guard."""
    return pytester.runpytest_subprocess(
        "--prompt-suite", "core", "--prompt-tracking-uri", uri, "--prompt-report", "report.json", *args, timeout=timeout,
    )


def assert_clean(result: pytest.RunResult) -> None:
    """No traceback, no internal error, no raw SQLAlchemy text anywhere in what the session printed."""
    text = result.stdout.str() + result.stderr.str()
    for word in NEVER:
        assert word not in text, f"{word!r} in the output:\n{text}"


def assert_kept_unjudged(pytester: pytest.Pytester, result: pytest.RunResult, name: str, reason: str) -> None:
    """The session failed over: thresholds gate, no baseline, both runs spooled, the reason said once, the report written."""
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines([
        f"{name}*a*3*66.7%*unavailable*PASS*",
        f"{name}*b*3*66.7%*unavailable*PASS*",
        reason,
        f"kept 2 run(s) in {spool_dir(pytester.path)}; the next session sends them, or pytest --prompt-sync",
        "promptgate: session passes: *",
    ])
    assert_clean(result)
    report = json.loads((pytester.path / "report.json").read_text())
    assert ["baseline unavailable" in row["verdict_reason"] for row in report["evals"]] == [True, True]
    assert len(kept(pytester)) == 2


def damage(db: Path, sql: str) -> None:
    with sqlite3.connect(db) as connection:
        connection.executescript(sql)
    connection.close()


def log_baselines(uri: str, name: str) -> list[str]:
    """Two complete runs of the eval (one per variant), as an earlier session would have logged them."""
    tracker = Tracker(uri).open()
    cases = [{"case_id": f"r{i}", "passed": i < 3, "outcome": "passed" if i < 3 else "failed"} for i in (1, 2, 3)]
    return [
        log_eval_run(tracker, TrackedRun(
            eval=name, variant=variant, suite="core", session="earlier", complete=True, verdict="PASS", cases=cases,
            metrics={"pass_rate": 2 / 3, "passed_cases": 2, "total_cases": 3},
        ))
        for variant in ("a", "b")
    ]


# --------------------------------------------------------------------------- opening the store


@both_agents
def test_a_store_of_another_mlflow_version_keeps_the_runs_and_says_what_to_do(evals, pytester, tracking_on, agent):
    evals("other-schema", agent)
    damage(pytester.path / "mlflow.db", "update alembic_version set version_num = '0123456789ab'")
    result = run_eval(pytester, tracking_on)
    assert_kept_unjudged(pytester, result, "other-schema", (
        f"MLflow tracking at {tracking_on} is unavailable (opening the store): the store was written by another "
        f"MLflow version (schema 0123456789ab, this MLflow {mlflow.__version__} expects *); "
        "upgrade MLflow, or point --prompt-tracking-uri elsewhere"
    ))


def test_a_store_of_an_older_mlflow_says_how_to_upgrade_it(tracking_on, pytester):
    damage(pytester.path / "mlflow.db", "update alembic_version set version_num = '0584bdc529eb'")  # an old migration
    with pytest.raises(Exception) as raised:
        Tracker(tracking_on).open()
    assert type(raised.value).__name__ == "TrackingUnavailable"
    assert str(raised.value) == (
        f"MLflow tracking at {tracking_on} is unavailable (opening the store): the store has the schema of an older "
        f"MLflow (schema 0584bdc529eb, this MLflow {mlflow.__version__} expects "
        f"{str(raised.value).split('expects ')[1].split(')')[0]}); upgrade it with 'mlflow db upgrade {tracking_on}' "
        "after a backup, or point --prompt-tracking-uri elsewhere"
    )


@pytest.mark.parametrize("command", ["--prompt-sync", "--prompt-trend"])
def test_commands_on_a_store_of_another_mlflow_version_say_so_in_one_line(pytester, tracking_on, command):
    spool(spool_dir(pytester.path), TrackedRun(eval="e", variant="v", suite="core", session="s", tracking_uri=tracking_on))
    damage(pytester.path / "mlflow.db", "update alembic_version set version_num = '0123456789ab'")
    result = pytester.runpytest_subprocess(command, "--prompt-tracking-uri", tracking_on, timeout=120)
    assert result.ret == 1
    assert_clean(result)
    output = result.stdout.str() + result.stderr.str()
    assert "the store was written by another MLflow version (schema 0123456789ab" in output
    assert len(kept(pytester)) == 1


@pytest.mark.parametrize(("args", "status"), [
    (("--promote", "router"), pytest.ExitCode.USAGE_ERROR),
    (("--rollback", "router", "--rollback-reason", "it answers rudely"), 1),
])
def test_promote_and_rollback_on_a_store_of_another_mlflow_version_say_so_in_one_line(pytester, tracking_on, args,
                                                                                      status):
    damage(pytester.path / "mlflow.db", "update alembic_version set version_num = '0123456789ab'")
    result = pytester.runpytest_subprocess(*args, "--prompt-tracking-uri", tracking_on, timeout=120)
    assert result.ret == status
    assert_clean(result)
    output = result.stdout.str() + result.stderr.str()
    assert f"MLflow tracking at {tracking_on} is unavailable (opening the store): the store was written by another " \
           "MLflow version (schema 0123456789ab" in output


# --------------------------------------------------------------------------- looking for baselines


@both_agents
def test_a_store_that_fails_the_baseline_search_keeps_the_runs(evals, pytester, tracking_on, agent):
    evals("damaged", agent)
    log_baselines(tracking_on, "damaged")
    damage(pytester.path / "mlflow.db", "drop table latest_metrics")
    result = run_eval(pytester, tracking_on)
    assert_kept_unjudged(pytester, result, "damaged", (
        f"MLflow tracking at {tracking_on} is unavailable (searching the baseline of damaged/a): "
        "no such table: latest_metrics"
    ))


@both_agents
def test_a_baseline_with_values_that_are_not_numbers_is_compared_by_its_results_table(evals, pytester, tracking_on,
                                                                                      agent):
    evals("garbled", agent)
    earlier = log_baselines(tracking_on, "garbled")
    damage(pytester.path / "mlflow.db", "update latest_metrics set value = 'abc' where key = 'passed_cases'")
    result = run_eval(pytester, tracking_on)
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "garbled*a*3*66.7%*66.7%*PASS*",
        f"logged 2 run(s) to MLflow at {tracking_on} (experiments: promptgate/garbled)",
    ])
    assert_clean(result)
    report = json.loads((pytester.path / "report.json").read_text())
    assert [(row["baseline_run_id"], row["shared_cases"]) for row in report["evals"]] == [(run, 3) for run in earlier]


# --------------------------------------------------------------------------- logging the runs


@both_agents
def test_a_store_that_refuses_the_runs_keeps_them_and_ends_them_failed(evals, pytester, tracking_on, agent):
    evals("frozen", agent)
    earlier = log_baselines(tracking_on, "frozen")
    damage(pytester.path / "mlflow.db",
           "create trigger frozen before insert on params begin select raise(abort, 'params are frozen'); end")
    result = run_eval(pytester, tracking_on)
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "frozen*a*3*66.7%*66.7%*PASS*",  # the baselines were found
        f"frozen [[]a]: MLflow tracking at {tracking_on}: logging run frozen/a failed: params are frozen",
        f"frozen [[]b]: MLflow tracking at {tracking_on}: logging run frozen/b failed: params are frozen",
        f"kept 2 run(s) in {spool_dir(pytester.path)}; the next session sends them, or pytest --prompt-sync",
    ])
    assert_clean(result)
    assert len(kept(pytester)) == 2
    client = MlflowClient(tracking_uri=tracking_on)
    runs = client.search_runs([client.get_experiment_by_name("promptgate/frozen").experiment_id])
    assert sorted(run.info.status for run in runs if run.info.run_id not in earlier) == ["FAILED", "FAILED"]


# --------------------------------------------------------------------------- sending kept runs


@both_agents
def test_a_spool_whose_rejected_directory_cannot_be_made_still_sends_what_it_can(evals, pytester, tracking_on, agent):
    evals("spool-jam", agent)
    directory = spool_dir(pytester.path)
    waiting = spool(directory, TrackedRun(eval="spool-jam", variant="old", suite="core", session="earlier",
                                          tracking_uri=tracking_on))
    (directory / "0000000000000-broken.json").write_text("{not json")
    (directory / "rejected").write_text("a file where the spool keeps refused runs")
    result = run_eval(pytester, tracking_on)
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        f"sent 1 run(s) kept by earlier sessions to MLflow at {tracking_on}",
        f"logged 2 run(s) to MLflow at {tracking_on} (experiments: promptgate/spool-jam)",
        f"*cannot set aside 0000000000000-broken.json (unreadable spool file: *): {directory / 'rejected'} "
        "is not a directory*",
    ])
    assert_clean(result)
    assert not waiting.exists()
    assert [p.name for p in kept(pytester)] == ["0000000000000-broken.json"]  # left where it was

    synced = pytester.runpytest_subprocess("--prompt-sync", "--prompt-tracking-uri", tracking_on, timeout=120)
    assert synced.ret == 1
    assert_clean(synced)
    synced.stdout.fnmatch_lines(["*cannot set aside 0000000000000-broken.json*"])


# --------------------------------------------------------------------------- a store that cannot be written


@pytest.fixture
def mounts(tmp_path):
    """Mount a tmpfs (``mount -t tmpfs -o OPTIONS``) at a path, skipping the test where that is not allowed."""
    made: list[Path] = []

    def mount(path: Path, options: str) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        if shutil.which("mount") is None:
            pytest.skip("no mount command")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                              capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        made.append(path)
        return path

    yield mount
    for path in reversed(made):
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def unwritable(place: str, tmp_path: Path, mounts, template: Path) -> Path:
    """A SQLite store path that cannot be written, and the reason the message names."""
    if place == "under-a-file":
        (tmp_path / "file.txt").write_text("not a directory")
        return tmp_path / "file.txt" / "stores" / "new.db"
    if place == "sysfs":  # a directory access(2) calls writable for root, where no file can be made
        if not Path("/sys/fs").is_dir():
            pytest.skip("no /sys/fs")
        return Path("/sys/fs/promptgate-new.db")
    if place == "read-only-mount":
        return mounts(tmp_path / "ro", "ro,size=1m") / "new.db"
    # An existing store on a file system made read-only after it was written.
    disk = mounts(tmp_path / "ro-store", "size=4m")
    shutil.copy(template, disk / "mlflow.db")
    done = subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"cannot remount read-only: {done.stderr.strip()}")
    return disk / "mlflow.db"


@pytest.mark.parametrize("place", ["under-a-file", "sysfs", "read-only-mount", "read-only-store"])
@both_agents
def test_a_store_that_cannot_be_written_fails_over_to_the_spool_at_once(
    evals, pytester, tracking_on, migrated_store, mounts, tmp_path, place, agent
):
    evals("nowhere-to-write", agent)
    db = unwritable(place, tmp_path, mounts, migrated_store)
    uri = f"sqlite:///{db}"
    result = run_eval(pytester, uri, timeout=60)  # MLflow alone retries for minutes
    assert_kept_unjudged(pytester, result, "nowhere-to-write", (
        f"MLflow tracking at {uri} is unavailable (opening the store): cannot write the SQLite store {db}: *; "
        "fix that, or point --prompt-tracking-uri at a store in a writable directory"
    ))
    assert not (tmp_path / "file.txt").is_dir()


def test_a_template_cache_that_cannot_be_written_leaves_mlflow_to_make_the_store(
    evals, pytester, tracking_on, mounts, tmp_path, monkeypatch
):
    evals("no-cache", "off")
    cache = mounts(tmp_path / "cache", "size=1m")
    (cache / "pytest-promptgate").mkdir()
    done = subprocess.run(["mount", "-o", "remount,ro", str(cache)], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"cannot remount read-only: {done.stderr.strip()}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    uri = f"sqlite:///{pytester.path / 'new' / 'mlflow.db'}"
    result = run_eval(pytester, uri, timeout=60)  # MLflow alone retries for minutes in the cache
    assert result.ret == 0
    result.stdout.fnmatch_lines([f"logged 2 run(s) to MLflow at {uri} (experiments: promptgate/no-cache)"])
    assert_clean(result)


def test_an_artifact_directory_that_cannot_be_made_is_found_before_mlflow_writes(pytester, tracking_on):
    (pytester.path / "mlartifacts").write_text("a file where the artifacts go")
    with pytest.raises(Exception, match=(
        f"cannot write the SQLite store {pytester.path / 'mlflow.db'}: its artifact directory "
        f"{pytester.path / 'mlartifacts'} is not a directory"
    )):
        Tracker(tracking_on).open()


# --------------------------------------------------------------------------- a disk that fills while logging


@both_agents
def test_a_run_that_fills_the_disk_ends_failed_and_is_kept(project, pytester, tracking_on, monkeypatch, mounts,
                                                           tmp_path, agent):
    monkeypatch.setenv("PROMPTGATE_TRACKING_AGENT", agent)
    project("big.py", BIG)
    project("big.eval.yaml", BIG_EVAL)  # a results table of about 1.2 MB
    template = pytester.path / "mlflow.db"
    disk = mounts(tmp_path / "small", f"size={template.stat().st_size // 1024 + 300}k")
    shutil.copy(template, disk / "mlflow.db")
    uri = f"sqlite:///{disk / 'mlflow.db'}"
    result = run_eval(pytester, uri)
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        f"big-outputs [[]default]: MLflow tracking at {uri}: logging run big-outputs/default failed: *No space left*",
        f"kept 1 run(s) in {spool_dir(pytester.path)}; the next session sends them, or pytest --prompt-sync",
    ])
    client = MlflowClient(tracking_uri=uri)
    [run] = client.search_runs([client.get_experiment_by_name("promptgate/big-outputs").experiment_id])
    assert run.info.status == "FAILED"
    [record] = kept(pytester)
    assert len(json.loads(record.read_text())["cases"]) == 30
    assert_clean(result)


# --------------------------------------------------------------------------- runs that cannot be kept at all


def test_a_run_neither_logged_nor_kept_fails_the_session(evals, pytester, tracking_on):
    evals("lost", "off")
    (pytester.path / ".promptgate").write_text("a file where the spool goes")
    nowhere = f"http://127.0.0.1:{free_port()}"
    result = run_eval(pytester, nowhere)
    assert result.ret == 1
    result.stdout.fnmatch_lines([
        f"MLflow tracking at {nowhere} is unavailable (opening the store): connection refused",
        "could not keep the run of lost [[]a] on disk: *: the run is lost",
        "could not keep the run of lost [[]b] on disk: *: the run is lost",
        "promptgate: session FAILED: 2 run(s) neither logged to MLflow nor kept on disk",
    ])
    assert_clean(result)
    assert json.loads((pytester.path / "report.json").read_text())["passed"] is False


def test_runs_of_earlier_sessions_wait_for_the_store_that_is_down_too(evals, pytester, tracking_on):
    evals("down-twice", "off")
    nowhere = f"http://127.0.0.1:{free_port()}"
    assert pytester.runpytest("--prompt-suite", "core", "--prompt-tracking-uri", nowhere).ret == 0
    second = pytester.runpytest("--prompt-suite", "core", "--prompt-tracking-uri", nowhere)
    assert second.ret == 0
    second.stdout.fnmatch_lines([
        f"kept 2 run(s) in {spool_dir(pytester.path)}; the next session sends them, or pytest --prompt-sync",
        f"2 run(s) of earlier sessions wait in {spool_dir(pytester.path)} too; "
        "the next session that reaches MLflow sends them, or pytest --prompt-sync",
    ])
    assert len(kept(pytester)) == 4


def test_names_of_any_length_make_spool_files_the_file_system_takes(tmp_path, migrated_store):
    db = tmp_path / "mlflow.db"
    shutil.copy(migrated_store, db)
    directory = spool_dir(tmp_path)
    records = [
        TrackedRun(eval="e" * 300, variant="v" * 300, suite="core", session="s", prompts={"p" * 300: "Hi {{x}}"}),
        TrackedRun(eval="e" * 300, variant="v" * 299 + "w", suite="core", session="s"),  # the same cut, not the same run
        TrackedRun(eval="../../etc/passwd", variant="a/b\\c:d", suite="core", session="s"),
    ]
    paths = [spool(directory, record) for record in records]
    assert len(set(paths)) == 3
    for path in paths:
        assert path.parent == directory and len(path.name) <= 160
    tracker = Tracker(f"sqlite:///{db}").open()
    from pytest_promptgate.tracking import send_spooled

    sent = send_spooled(tracker, directory)
    client = MlflowClient(tracking_uri=tracker.uri)
    assert sorted(client.get_run(run_id).data.tags["promptgate.variant"] for run_id in sent) == sorted(
        record.variant for record in records
    )
    assert list(directory.glob("*.json")) == []
    assert os.listdir(directory) == [".gitignore"]
    # The artifacts too: no name longer than 100 characters (and ".txt"), whatever the eval's and the prompt's names.
    stored = list((tmp_path / "mlartifacts").rglob("*"))
    assert any(path.name == "prompts" for path in stored)
    assert max(len(path.name.removesuffix(".txt")) for path in stored) == 100
