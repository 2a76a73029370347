"""MLflow tracking on real stores: a SQLite file in tmp_path, and a real ``mlflow server`` on 127.0.0.1.

Runs are read back through a separate ``MlflowClient``, never through the code under test.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from mlflow_server import MlflowServer, free_port, mlflow_server  # noqa: F401  (a real `mlflow server`)
from pytest_promptgate.results import CaseResult, GraderRecord, RunRecord, summarize
from pytest_promptgate.template import prompt_digest
from pytest_promptgate.verdicts import GATE_METRICS
from pytest_promptgate.tracking import (
    MAX_PARAM_VALUE, MAX_TAG_VALUE, RESULTS_FILE, Baseline, BaselineError, TrackedRun, Tracker, TrackingError,
    TrackingUnavailable, ci_tags, display_uri, find_baseline, git_tags, log_eval_run, metric_key,
    rejected_spool, resolve_tracking_uri, send_spooled, spool, spool_dir, spooled, summary_metrics, tracking_failure,
)

SYSTEM = "You label support messages. Message: {{ message }}"


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite store, copied by each test: migrating a fresh file takes seconds."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    Tracker(f"sqlite:///{path}").open()
    return path


@pytest.fixture
def store(tmp_path: Path, template_db: Path) -> Tracker:
    """A tracker on a SQLite store of its own in ``tmp_path/store``."""
    (tmp_path / "store").mkdir()
    shutil.copy(template_db, tmp_path / "store" / "mlflow.db")
    return Tracker(f"sqlite:///{tmp_path}/store/mlflow.db").open()


def reader(uri: str):
    """A client of our own to read what was logged."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def case(case_id: str, passed: bool, *, error: str | None = None, mode: str | None = None, eval: str = "triage",
         variant: str = "base") -> CaseResult:
    grader = GraderRecord(name="label", type="equals", passed=passed, score=float(passed),
                          reason="" if passed else "expected refund", failure_mode=mode)
    runs = () if error else (RunRecord(output=f"out {case_id}", latency_ms=100.0 + len(case_id), passed=passed,
                                        score=float(passed), graders=(grader,), input_tokens=100, output_tokens=10,
                                        cost_usd=0.001, model="gpt-4o-mini"),)
    return CaseResult(eval=eval, variant=variant, case_id=case_id, passed=passed and not error,
                      score=None if error else float(passed), runs=runs, error=error,
                      vars={"message": f"msg {case_id}"}, expected="refund", tags=("smoke",))


def record(*, eval: str = "triage", variant: str = "base", session: str = "s1", complete: bool = True,
           outcomes: dict[str, bool] | None = None, start: int | None = None, branch: str | None = "main",
           **kwargs) -> TrackedRun:
    outcomes = {"c1": True, "c2": False, "c3": True} if outcomes is None else outcomes
    cases = [case(cid, ok, mode=None if ok else "wrong_label", eval=eval, variant=variant) for cid, ok in outcomes.items()]
    [summary] = summarize(cases)
    tags = {"git.commit": "0" * 40, "git.dirty": "false"}
    if branch is not None:
        tags["git.branch"] = branch
    fields = dict(
        eval=eval, variant=variant, suite="core", session=session, complete=complete,
        params={"dataset_hash": "abc123", "repeat": 1, "target": "app:label", "model": "gpt-4o-mini", "temperature": 0.2},
        metrics=summary_metrics(summary), tags=tags, cases=[c.to_dict() for c in cases],
        prompts={"system": SYSTEM},
    )
    if start is not None:
        fields.update(start_time_ms=start, end_time_ms=start + 500)
    fields.update(kwargs)
    return TrackedRun(**fields)


# --------------------------------------------------------------------------- import weight and URIs


def test_module_imports_nothing_heavy():
    code = (
        "import sys, pytest_promptgate.tracking\n"
        "heavy = {'mlflow', 'sqlalchemy', 'alembic', 'requests', 'pandas', 'pydantic', 'yaml'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_tracking_uri_precedence(tmp_path):
    env = {"MLFLOW_TRACKING_URI": "http://env:5000"}
    assert resolve_tracking_uri("sqlite:///opt.db", "http://ini", env) == "sqlite:///opt.db"
    assert resolve_tracking_uri(None, "http://ini", env) == "http://ini"
    assert resolve_tracking_uri("", "  ", env) == "http://env:5000"
    assert resolve_tracking_uri(None, None, {}, cwd=tmp_path) == f"sqlite:///{tmp_path}/mlflow.db"


def test_default_tracking_uri_is_mlflows_own(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    assert mlflow.tracking._tracking_service.utils._tracking_uri is None  # nobody called set_tracking_uri
    assert resolve_tracking_uri(None, None, {}) == mlflow.get_tracking_uri() == f"sqlite:///{tmp_path}/mlflow.db"


def test_default_tracking_uri_with_a_legacy_file_store(tmp_path, monkeypatch):
    import mlflow

    (tmp_path / "mlruns" / "0").mkdir(parents=True)  # ./mlruns holding an experiment: MLflow keeps using it
    (tmp_path / "mlruns" / "0" / "meta.yaml").write_text("name: Default\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    assert resolve_tracking_uri(None, None, {"MLFLOW_ALLOW_FILE_STORE": "true"}) == mlflow.get_tracking_uri()
    assert mlflow.get_tracking_uri().startswith("file:")
    # ... but MLflow 3.17 refuses to open a file store without that opt-in: then the SQLite default.
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    with pytest.raises(TrackingError, match="maintenance mode"):
        Tracker(mlflow.get_tracking_uri()).open()
    assert resolve_tracking_uri(None, None, {}) == f"sqlite:///{tmp_path}/mlflow.db"


def test_display_uri_hides_passwords():
    assert display_uri("postgresql://bob:s3cret@db:5432/mlflow") == "postgresql://bob:***@db:5432/mlflow"
    assert display_uri("https://mlflow.example.com") == "https://mlflow.example.com"


def test_relative_sqlite_uri_is_fixed_where_the_tracker_was_made(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tracker = Tracker("sqlite:///sub/x.db")
    assert tracker.uri == f"sqlite:///{tmp_path}/sub/x.db"
    assert tracker.artifact_root == tmp_path / "sub" / "mlartifacts"
    assert Tracker("http://127.0.0.1:5000").artifact_root is None


# --------------------------------------------------------------------------- keys, metrics, git, CI


def test_metric_keys_are_what_mlflow_accepts():
    assert metric_key("grader.label.pass_rate") == "grader.label.pass_rate"
    assert metric_key("grader.mots clés/é?.pass_rate") == "grader.mots cl_s/__.pass_rate"
    assert metric_key("a//b") == "a__b"
    assert metric_key("/abs") == "_abs"
    assert metric_key("..") == "_."
    assert len(metric_key("x" * 300)) == 250


def test_summary_metrics_are_the_documented_names():
    judged = case("c1", True)
    judged = replace(judged, runs=(replace(judged.runs[0], judge_input_tokens=50, judge_output_tokens=5,
                                           judge_cost_usd=0.0002, judge_latency_ms=(30.0, 40.0)),))
    cases = [judged, case("c2", False, mode="wrong_label"), case("c3", False, error="boom")]
    [summary] = summarize(cases)
    metrics = summary_metrics(summary)
    assert set(GATE_METRICS) <= set(metrics)
    assert (metrics["judge_calls"], metrics["judge_input_tokens"], metrics["judge_cost_usd_total"]) == (2, 50, 0.0002)
    assert "judge_calls" not in summary_metrics(summarize(cases[1:])[0])  # no judge asked: no judge metrics
    assert metrics["pass_rate"] == pytest.approx(1 / 3)
    assert (metrics["total_cases"], metrics["passed_cases"], metrics["failed_cases"], metrics["error_cases"],
            metrics["flaky_cases"]) == (3, 1, 1, 1, 0)
    assert metrics["grader.label.pass_rate"] == 0.5
    assert metrics["failure_mode.wrong_label.count"] == 1
    assert all(isinstance(v, float) for v in metrics.values())

    [errors_only] = summarize([case("c1", False, error="boom")])
    assert "average_score" not in summary_metrics(errors_only)  # None is left out, not logged as 0


def git(cwd, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=cwd, check=True,
                   capture_output=True, timeout=30)


def test_git_tags(tmp_path):
    assert git_tags(tmp_path, env={}) == {}  # not a repository
    git(tmp_path, "init", "-q", "-b", "feature/x")
    (tmp_path / "a.txt").write_text("a")
    git(tmp_path, "add", "a.txt")
    git(tmp_path, "commit", "-q", "-m", "one")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    (tmp_path / "untracked.db").write_text("x")  # untracked files do not make the checkout dirty
    assert git_tags(tmp_path, env={}) == {"git.commit": head, "git.branch": "feature/x", "git.dirty": "false"}
    (tmp_path / "a.txt").write_text("changed")
    assert git_tags(tmp_path, env={})["git.dirty"] == "true"
    git(tmp_path, "checkout", "-q", "--detach")
    assert "git.branch" not in git_tags(tmp_path, env={})
    assert git_tags(tmp_path, env={"CI_COMMIT_BRANCH": "main"})["git.branch"] == "main"  # GitLab checks out detached


def test_ci_tags():
    github = {"GITHUB_ACTIONS": "true", "GITHUB_RUN_ID": "42", "GITHUB_SHA": "abc", "GITHUB_REF_NAME": "main",
              "GITHUB_ACTOR": "ann", "GITHUB_REPOSITORY": "acme/app", "GITHUB_SERVER_URL": "https://github.com"}
    assert ci_tags(github) == {
        "ci.provider": "github", "ci.run_id": "42", "ci.commit": "abc", "ci.ref": "main", "ci.actor": "ann",
        "ci.repository": "acme/app", "ci.url": "https://github.com/acme/app/actions/runs/42",
    }
    gitlab = {"GITLAB_CI": "true", "CI": "true", "CI_PIPELINE_ID": "7", "CI_COMMIT_SHA": "def"}
    assert ci_tags(gitlab) == {"ci.provider": "gitlab", "ci.run_id": "7", "ci.commit": "def"}
    assert ci_tags({"CI": "true", "BUILD_ID": "9"}) == {"ci.provider": "ci", "ci.run_id": "9"}
    assert ci_tags({"CI": "false"}) == {}
    assert ci_tags({}) == {}


# --------------------------------------------------------------------------- logging runs to SQLite


def test_runs_land_in_mlflow_as_documented(store, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # artifacts must not follow the current directory
    given_tags = {"git.commit": "1" * 40, "git.branch": "main", "git.dirty": "true", **ci_tags({"CI": "1", "BUILD_ID": "9"})}
    first = record(start=1_700_000_000_000, verdict="PASS", tags=given_tags)
    second = record(variant="terse", session="s1", start=1_700_000_001_000, complete=False,
                    outcomes={"c1": True, "c2": True}, verdict="WARNING", baseline_run_id="r0",
                    params={"prompt.system": "7", "repeat": 3})
    ids = [log_eval_run(store, first), log_eval_run(store, second)]
    assert list(elsewhere.iterdir()) == []  # no ./mlruns, nothing at all in the current directory

    client = reader(store.uri)
    experiment = client.get_experiment_by_name("promptgate/triage")
    assert experiment.artifact_location == (tmp_path / "store" / "mlartifacts" / "promptgate" / "triage").as_uri()
    runs = {r.info.run_id: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == set(ids)

    run = runs[ids[0]]
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "triage/base PASS 66.7%"
    assert (run.info.start_time, run.info.end_time) == (1_700_000_000_000, 1_700_000_000_500)
    assert run.data.params == {
        "eval": "triage", "variant": "base", "suite": "core", "dataset_hash": "abc123", "repeat": "1",
        "target": "app:label", "model": "gpt-4o-mini", "temperature": "0.2", "prompt.system": prompt_digest(SYSTEM),
    }
    assert prompt_digest(SYSTEM).startswith("sha256:") and len(prompt_digest(SYSTEM)) == len("sha256:") + 12
    assert run.data.metrics == pytest.approx(first.metrics)
    documented = {"pass_rate", "grader.label.pass_rate", "failure_mode.wrong_label.count", "latency_ms_p95"}
    assert documented <= set(run.data.metrics)
    assert client.get_metric_history(ids[0], "pass_rate")[0].step == 0
    tags = run.data.tags
    assert {k: v for k, v in tags.items() if k.startswith(("promptgate.", "git.", "ci."))} == {
        "promptgate.record": first.record_id, "promptgate.session": "s1", "promptgate.suite": "core",
        "promptgate.eval": "triage", "promptgate.variant": "base", "promptgate.complete": "true",
        "promptgate.verdict": "PASS", "git.commit": "1" * 40, "git.branch": "main", "git.dirty": "true",
        "ci.provider": "ci", "ci.run_id": "9",
    }
    assert tags["mlflow.source.git.commit"] == "1" * 40
    assert json.loads(tags["mlflow.loggedArtifacts"]) == [{"path": RESULTS_FILE, "type": "table"}]

    other = runs[ids[1]]
    assert other.data.tags["promptgate.complete"] == "false"
    assert other.data.tags["promptgate.baseline_run_id"] == "r0"
    assert other.data.params["prompt.system"] == "7"  # a registry version given by the caller is kept
    assert other.data.params["repeat"] == "3"

    # Artifacts: the results table in MLflow's table shape, and the prompt text; on disk beside the store.
    assert sorted(a.path for a in client.list_artifacts(ids[0])) == [RESULTS_FILE, "prompts"]
    assert [a.path for a in client.list_artifacts(ids[0], "prompts")] == ["prompts/system.txt"]
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    table = json.loads(Path(client.download_artifacts(ids[0], RESULTS_FILE, str(downloads))).read_text())
    assert set(table) == {"columns", "data"}
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    assert [(r["case_id"], r["outcome"], r["passed"]) for r in rows] == [("c1", "passed", True), ("c2", "failed", False),
                                                                         ("c3", "passed", True)]
    assert rows[1]["graders"] == "label: FAIL (0.00) expected refund"
    assert rows[1]["failure_modes"] == "wrong_label"
    assert rows[1]["output"] == "out c2" and json.loads(rows[1]["vars"]) == {"message": "msg c2"}
    assert Path(client.download_artifacts(ids[0], "prompts/system.txt", str(downloads))).read_text() == SYSTEM
    on_disk = tmp_path / "store" / "mlartifacts" / "promptgate" / "triage" / ids[0] / "artifacts"
    assert (on_disk / RESULTS_FILE).is_file() and (on_disk / "prompts" / "system.txt").is_file()


def test_results_table_loads_with_mlflows_own_reader(store, monkeypatch):
    run_id = log_eval_run(store, record(outcomes={"c1": True, "c2": False}))
    # load_table searches through the fluent API, on the global tracking URI whatever the client's.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    client = reader(store.uri)
    frame = client.load_table(store.find_experiment("triage"), RESULTS_FILE, run_ids=[run_id])  # pandas: tests only
    assert list(frame["case_id"]) == ["c1", "c2"]
    assert list(frame["passed"]) == [True, False]


def test_long_values_are_cut_and_the_cut_is_recorded(store):
    rec = record(params={"system_notes": "p" * 7000, "weird key!": "v"}, tags={"note": "t" * 9000})
    run = reader(store.uri).get_run(log_eval_run(store, rec))
    assert len(run.data.params["system_notes"]) == MAX_PARAM_VALUE
    assert run.data.params["system_notes"].endswith("… [cut from 7000 chars]")
    assert len(run.data.tags["note"]) == MAX_TAG_VALUE
    assert run.data.tags["promptgate.truncated"] == "param:system_notes,tag:note"
    assert run.data.params["weird key_"] == "v"


def test_more_params_than_one_batch_holds(store):
    rec = record(params={f"p{i:03d}": i for i in range(150)})
    run = reader(store.uri).get_run(log_eval_run(store, rec))
    assert {f"p{i:03d}" for i in range(150)} <= set(run.data.params)
    assert run.info.status == "FINISHED"


def test_deleted_experiment_is_a_clear_error(store):
    log_eval_run(store, record())
    client = reader(store.uri)
    client.delete_experiment(client.get_experiment_by_name("promptgate/triage").experiment_id)
    fresh = Tracker(store.uri).open()
    with pytest.raises(TrackingError, match="is deleted.*restore it"):
        log_eval_run(fresh, record())
    # Not a "first run": the comparison cannot be made until the experiment is restored.
    with pytest.raises(TrackingError, match="is deleted.*restore it"):
        find_baseline(fresh, "triage", "base")


# --------------------------------------------------------------------------- baselines


def test_baseline_is_the_latest_complete_finished_run_of_the_variant(store):
    t = 1_700_000_000_000
    old = log_eval_run(store, record(session="s1", start=t))
    main = log_eval_run(store, record(session="s2", start=t + 1000, outcomes={"c1": True, "c2": True, "c9": False}))
    log_eval_run(store, record(session="s3", start=t + 2000, complete=False))  # -k, --lf, errors: never a baseline
    other_variant = log_eval_run(store, record(session="s3", variant="terse", start=t + 2500))
    feature = log_eval_run(store, record(session="s4", start=t + 3000, branch="feature/x"))
    quoted = log_eval_run(store, record(session="s5", start=t + 3100, branch="it's"))
    both_quotes = log_eval_run(store, record(session="s5b", start=t + 3200, branch="a'b\"c"))
    log_eval_run(store, record(session="s6", start=t + 3300, verdict="REGRESSION"))  # below the bar: not the bar
    current = log_eval_run(store, record(session="now", start=t + 5000))
    # A run that never finished (a crashed session) is newer than all of them, and tagged complete.
    client = reader(store.uri)
    crashed = client.create_run(store.find_experiment("triage"), start_time=t + 4000,
                                tags={"promptgate.variant": "base", "promptgate.complete": "true", "git.branch": "main"})

    def pick(variant="base", **kwargs):
        found = find_baseline(store, "triage", variant, **kwargs)
        return found.run_id if found else None

    assert pick(branch="main", exclude_session="now") == main
    assert pick(exclude_session="now") == both_quotes
    assert pick() == current
    assert pick(branch="feature/x") == feature
    assert pick(branch="it's") == quoted
    assert pick(branch="a'b\"c") == both_quotes  # no MLflow literal holds both quotes: filtered here
    assert pick(branch="release") is None
    assert pick("terse") == other_variant
    assert pick("unknown") is None
    assert find_baseline(store, "no-such-eval", "base") is None
    assert crashed.info.run_id not in {pick(), pick(branch="main")}

    baseline = find_baseline(store, "triage", "base", branch="main", exclude_session="now")
    assert isinstance(baseline, Baseline)
    assert (baseline.eval, baseline.variant, baseline.start_time, baseline.status, baseline.complete) == (
        "triage", "base", t + 1000, "FINISHED", True)
    assert baseline.metrics["pass_rate"] == pytest.approx(2 / 3)
    assert baseline.prompt_versions == {"system": prompt_digest(SYSTEM)}
    assert (baseline.session, baseline.branch) == ("s2", "main")
    assert baseline.case_outcomes() == {"c1": True, "c2": True, "c9": False}

    # Pinned: that run, even when it is older or incomplete; errors for unknown runs and other evals' runs.
    assert find_baseline(store, "triage", "base", run_id=old).run_id == old
    assert find_baseline(store, "triage", "base", run_id=old, branch="feature/x").run_id == old
    with pytest.raises(BaselineError, match="does not exist"):
        find_baseline(store, "triage", "base", run_id="0" * 32)
    elsewhere = log_eval_run(store, record(eval="refunds"))
    with pytest.raises(BaselineError, match="is a run of eval 'refunds', not of 'triage'"):
        find_baseline(store, "triage", "base", run_id=elsewhere)
    foreign = client.create_run(store.find_experiment("triage")).info.run_id  # logged by something else
    with pytest.raises(BaselineError, match="not a pytest-promptgate run"):
        find_baseline(store, "triage", "base", run_id=foreign)


def test_case_outcomes_of_a_run_without_results_table(store):
    client = reader(store.uri)
    bare = client.create_run(store.experiment_for("triage"), tags={"promptgate.eval": "triage"})
    assert find_baseline(store, "triage", "base", run_id=bare.info.run_id).case_outcomes() == {}


class CountingTracker(Tracker):
    """A real tracker whose client counts its ``search_runs`` calls (the real client answers them)."""

    searches = 0

    @property
    def client(self):
        real, tracker = super().client, self

        class Counting:
            def __getattr__(self, name):
                return getattr(real, name)

            def search_runs(self, *args, **kwargs):
                tracker.searches += 1
                return real.search_runs(*args, **kwargs)

        return Counting()


def test_baseline_lookup_is_a_few_searches_whatever_fails_the_bar(store):
    # A variant that keeps failing the bar: every newer run is REGRESSION (or WORSE, with --prompt-fail-on).
    # The lookup used to page through all of them, 20 at a time.
    t = 1_700_000_000_000
    good = log_eval_run(store, record(session="good", start=t, verdict="PASS"))
    client = reader(store.uri)
    experiment = store.find_experiment("triage")
    for i in range(100):
        run = client.create_run(experiment, start_time=t + 10_000 + i, tags={
            "promptgate.variant": "base", "promptgate.complete": "true", "git.branch": "main",
            "promptgate.session": f"bad{i}", "promptgate.verdict": "WORSE" if i % 10 == 0 else "REGRESSION"})
        client.set_terminated(run.info.run_id, end_time=t + 20_000 + i)
    tracker = CountingTracker(store.uri)

    def pick(**kwargs):
        tracker.searches = 0
        found = find_baseline(tracker, "triage", "base", **kwargs)
        assert tracker.searches <= 3
        return found.run_id if found else None

    assert pick(exclude_verdicts=["REGRESSION", "WORSE"]) == good
    assert pick(exclude_verdicts=["REGRESSION", "WORSE"], branch="a'b\"c") is None
    assert pick(exclude_verdicts=["REGRESSION"]) != good  # a WORSE run passes when only REGRESSION fails
    # A run logged without a verdict (no baseline then, or an older plugin) still counts, newest first.
    unjudged = log_eval_run(store, record(session="first", start=t + 5000))
    assert pick(exclude_verdicts=["REGRESSION", "WORSE"]) == unjudged
    assert pick(exclude_verdicts=[]) == pick(exclude_verdicts=["WORSE"])


# --------------------------------------------------------------------------- the spool


def test_spool_round_trip(store, tmp_path):
    directory = spool_dir(tmp_path)
    assert directory == tmp_path / ".promptgate" / "spool"
    rec = record(start=1_700_000_000_000, verdict="PASS")
    path = spool(directory, rec)
    assert path.parent == directory and path.suffix == ".json"
    assert "*" in (directory / ".gitignore").read_text()
    assert [p.name for p in directory.iterdir() if p.name.endswith(".tmp")] == []
    # Every field survives, as JSON data (the cases' tuples come back as lists).
    assert TrackedRun.from_dict(json.loads(path.read_text())).to_dict() == json.loads(json.dumps(rec.to_dict()))
    assert spooled(directory) == [path]

    [run_id] = send_spooled(store, directory)
    assert spooled(directory) == []
    run = reader(store.uri).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.start_time == 1_700_000_000_000  # the run keeps the time it was made, not the time it was sent
    assert run.data.tags["promptgate.verdict"] == "PASS"
    assert send_spooled(store, directory) == []


def test_spooled_runs_are_sent_oldest_first(store, tmp_path):
    directory = spool_dir(tmp_path)
    newer = record(session="s2", start=1_700_000_002_000)
    older = record(session="s1", start=1_700_000_001_000)
    spool(directory, newer)
    spool(directory, older)
    sent = send_spooled(store, directory)
    sessions = [reader(store.uri).get_run(r).data.tags["promptgate.session"] for r in sent]
    assert sessions == ["s1", "s2"]
    assert find_baseline(store, "triage", "base").session == "s2"


def test_a_spooled_run_goes_to_the_store_it_was_meant_for(store, tmp_path):
    directory = spool_dir(tmp_path)
    elsewhere = spool(directory, record(session="s1", tracking_uri="http://tracking.example:5000"))
    here = spool(directory, record(session="s2", tracking_uri=display_uri(store.uri), experiment_prefix="team"))
    [run_id] = send_spooled(store, directory)
    assert spooled(directory) == [elsewhere]  # waits for a session on that server
    assert not here.exists()
    run = reader(store.uri).get_run(run_id)
    assert run.data.tags["promptgate.session"] == "s2"
    assert reader(store.uri).get_experiment(run.info.experiment_id).name == "team/triage"


def test_a_spooled_run_is_never_logged_twice(store, tmp_path):
    directory = spool_dir(tmp_path)
    delivered = record(session="s1")
    first = log_eval_run(store, delivered)  # it arrived, but the session never heard back and spooled it
    spool(directory, delivered)
    half = record(session="s2")
    client = reader(store.uri)
    stale = client.create_run(store.experiment_for("triage"),
                              tags={"promptgate.record": half.record_id}).info.run_id  # the batch never arrived
    spool(directory, half)

    sent = send_spooled(store, directory)
    assert sent[0] == first
    assert client.get_run(stale).info.status == "FAILED"
    assert client.get_run(sent[1]).info.status == "FINISHED"
    assert len(client.search_runs([store.experiment_for("triage")])) == 3


def test_unreadable_spool_files_are_set_aside(store, tmp_path):
    directory = spool_dir(tmp_path)
    directory.mkdir(parents=True)
    (directory / "0000000000000-broken.json").write_text("{not json")
    spool(directory, record())
    [run_id] = send_spooled(store, directory)
    assert spooled(directory) == []
    [rejected] = rejected_spool(directory)
    assert rejected.name == "0000000000000-broken.json"
    assert "unreadable spool file" in (rejected.parent / "0000000000000-broken.reason.txt").read_text()


# --------------------------------------------------------------------------- failures in our words


def test_every_failure_becomes_a_tracking_error_in_one_line(tmp_path):
    import sqlalchemy

    uri = "sqlite:////stores/mlflow.db"
    where = "MLflow tracking at sqlite:////stores/mlflow.db"
    refused = TrackingError("as it was")
    assert tracking_failure(refused, uri, "x") is refused
    # Anything nothing more is known about: its type and the first line of its message.
    failure = tracking_failure(KeyError("runs"), uri, "logging run e/v")
    assert (type(failure), str(failure)) == (TrackingError, f"{where}: logging run e/v failed: MLflow failed: KeyError: 'runs'")
    assert str(tracking_failure(ValueError("first\nsecond"), uri)) == f"{where}: MLflow failed: ValueError: first"
    # A database's own words, without SQLAlchemy's: no autoflush note, no SQL, no link.
    try:
        try:
            raise sqlite3.OperationalError("attempt to write a readonly database")
        except sqlite3.OperationalError as orig:
            raise sqlalchemy.exc.OperationalError("INSERT INTO runs VALUES (?)", ("x",), orig) from orig
    except sqlalchemy.exc.OperationalError as error:
        wrapped = error
    assert "[SQL:" in str(wrapped) and "sqlalche.me" in str(wrapped)
    failure = tracking_failure(wrapped, uri, "logging run e/v")
    assert (type(failure), str(failure)) == (
        TrackingUnavailable, f"{where} is unavailable (logging run e/v): attempt to write a readonly database",
    )
    # A file: its error and its name.
    failure = tracking_failure(FileNotFoundError(2, "No such file or directory", "/stores/x"), uri, "reading")
    assert str(failure) == f"{where}: reading failed: No such file or directory: /stores/x"


# --------------------------------------------------------------------------- unreachable tracking


def test_unreachable_server_fails_fast_and_clearly(monkeypatch):
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    started = time.monotonic()
    message = rf"MLflow tracking at {uri} is unavailable \(opening the store\): connection refused"
    with pytest.raises(TrackingUnavailable, match=message):
        Tracker(uri).open()
    with pytest.raises(TrackingUnavailable):
        log_eval_run(Tracker(uri), record())
    with pytest.raises(TrackingUnavailable):
        find_baseline(Tracker(uri), "triage", "base")
    assert time.monotonic() - started < 10
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # set only while talking to MLflow


# --------------------------------------------------------------------------- a real mlflow server


def test_logging_to_a_tracking_server(mlflow_server: MlflowServer, tmp_path, capfd):
    tracker = Tracker(mlflow_server.uri).open()
    run_id = log_eval_run(tracker, record(eval="served", start=1_700_000_000_000))
    assert "View run" not in capfd.readouterr().out  # MLflow prints run links unless told not to

    client = reader(mlflow_server.uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["promptgate.eval"] == "served"
    assert run.data.params["prompt.system"] == prompt_digest(SYSTEM)
    assert run.data.metrics["pass_rate"] == pytest.approx(2 / 3)
    assert client.get_experiment(run.info.experiment_id).artifact_location.startswith("mlflow-artifacts:")
    table = json.loads(Path(client.download_artifacts(run_id, RESULTS_FILE, str(tmp_path))).read_text())
    assert [row[0] for row in table["data"]] == ["c1", "c2", "c3"]
    assert Path(client.download_artifacts(run_id, "prompts/system.txt", str(tmp_path))).read_text() == SYSTEM
    assert find_baseline(tracker, "served", "base").case_outcomes() == {"c1": True, "c2": False, "c3": True}
    assert list(mlflow_server.artifacts.rglob(RESULTS_FILE))  # stored by the server, under its destination


def test_runs_survive_a_server_crash(mlflow_server: MlflowServer, tmp_path):
    tracker = Tracker(mlflow_server.uri).open()
    before = log_eval_run(tracker, record(eval="crash", session="s1", start=1_700_000_000_000))
    mlflow_server.kill()

    directory = spool_dir(tmp_path)
    lost = record(eval="crash", session="s2", start=1_700_000_001_000)
    started = time.monotonic()
    # Refused, or lost: the client may reuse a kept-alive connection the crash cut.
    with pytest.raises(TrackingUnavailable, match=r"unavailable \(logging run crash/base\): connection (refused|lost)$"):
        log_eval_run(tracker, lost)
    assert time.monotonic() - started < 10
    spool(directory, lost)

    mlflow_server.start()  # the same port and store: the server is back
    [sent] = send_spooled(Tracker(mlflow_server.uri).open(), directory)
    assert spooled(directory) == []
    run = reader(mlflow_server.uri).get_run(sent)
    assert (run.info.status, run.data.tags["promptgate.session"]) == ("FINISHED", "s2")
    baseline = find_baseline(tracker, "crash", "base")
    assert baseline.run_id == sent and sent != before
    assert baseline.case_outcomes() == {"c1": True, "c2": False, "c3": True}


def test_same_store_ignores_case_and_a_trailing_slash():
    from pytest_promptgate.tracking import same_store

    assert same_store("http://127.0.0.1:5000", "HTTP://127.0.0.1:5000/")
    assert same_store("sqlite:////tmp/x/mlflow.db", "sqlite:////tmp/x/mlflow.db")
    assert not same_store("http://127.0.0.1:5000", "http://127.0.0.1:5001")
    assert not same_store("sqlite:////tmp/x/mlflow.db", "sqlite:////tmp/y/mlflow.db")


def test_a_new_sqlite_store_is_a_copy_of_a_migrated_template(tmp_path, monkeypatch):
    from pytest_promptgate.tracking import template_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = Tracker(f"sqlite:///{tmp_path}/a/mlflow.db").open()
    [template] = template_dir().glob("mlflow-*.db")
    second = Tracker(f"sqlite:///{tmp_path}/b/mlflow.db").open()
    for tracker, directory in ((first, "a"), (second, "b")):
        client = reader(tracker.uri)
        # MLflow's own Default experiment, made when the copy was opened, points into the current directory.
        assert [e.name for e in client.search_experiments()] == ["Default"]
        run_id = log_eval_run(tracker, record())
        assert client.get_run(run_id).info.status == "FINISHED"
        assert (tmp_path / directory / "mlartifacts").is_dir()
    # The template itself holds no experiment (read with sqlite3: opening it with MLflow would add one).
    import sqlite3

    with contextlib.closing(sqlite3.connect(template)) as connection:
        assert connection.execute("SELECT COUNT(*) FROM experiments").fetchone() == (0,)
        assert connection.execute("SELECT COUNT(*) FROM runs").fetchone() == (0,)
