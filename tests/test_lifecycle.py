"""The life of an eval on a real SQLite MLflow store: first run, baselines, verdicts, partial runs, gates.

Each step is a pytest session in the pytester project; what it logged is read back
with an ``MlflowClient`` of the test's own. p-values are checked against SciPy.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scipy.stats import binomtest, fisher_exact

from pytest_promptgate.template import prompt_digest
from pytest_promptgate.tracking import RESULTS_FILE

QUALITY = '''
from pathlib import Path

def answer(vars):
    """Says "yes" unless the case id is listed in wrong.txt."""
    wrong = Path("wrong.txt").read_text().split() if Path("wrong.txt").exists() else []
    return "no" if vars["id"] in wrong else "yes"
'''

CASES = [f"c{i:02d}" for i in range(20)]
TEMPLATE = "Is {{id}} fine? Answer yes or no."

STORY = f"""
eval: story
suites: [core]
prompts: {{ask: {{template: "{TEMPLATE}"}}}}
target: quality:answer
variants: [{{name: default, params: {{temperature: 0.2}}}}]
threshold: 0.7
warn_drop: 0.1
graders: [{{type: equals, value: "yes", failure_mode: said_no}}]
cases:
""" + "".join(f"  - {{id: {c}, vars: {{id: {c}}}}}\n" for c in CASES)


IMPORTS_MLFLOW = (
    "import sys\n"
    "def pytest_unconfigure(config):\n"
    "    open('imported.txt', 'w').write(str(any(m.split('.')[0] == 'mlflow' for m in sys.modules)))\n"
)


@pytest.fixture
def story(project, pytester, tracking_on, request, monkeypatch):
    """The story eval in the project, tracking on; returns a function running one session with N wrong answers.

    Sessions run in this process (MLflow is imported here already, so they open it in pytest's process);
    parametrized indirectly with ``"agent"``, each runs in a process of its own whose MLflow calls are made by
    the tracking agent: that process must never import MLflow itself.
    """
    pytester.makepyfile(quality=QUALITY)
    project("story.eval.yaml", STORY)
    agent = getattr(request, "param", "here") == "agent"
    if agent:
        monkeypatch.setenv("PROMPTGATE_TRACKING_AGENT", "on")
        pytester.makeconftest(IMPORTS_MLFLOW)

    def run(wrong: int, *args: str) -> pytest.RunResult:
        (pytester.path / "wrong.txt").write_text(" ".join(CASES[:wrong]))
        if not agent:
            return pytester.runpytest("--prompt-suite", "core", "--prompt-report", "report.json", *args)
        result = pytester.runpytest_subprocess("--prompt-suite", "core", "--prompt-report", "report.json", *args)
        assert (pytester.path / "imported.txt").read_text() == "False"
        return result

    run.uri = tracking_on
    run.report = lambda: json.loads((pytester.path / "report.json").read_text())
    return run


def client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def runs_of(uri: str, eval_name: str = "story") -> list:
    """Every run of the eval's experiment, oldest first."""
    c = client(uri)
    experiment = c.get_experiment_by_name(f"promptgate/{eval_name}")
    return sorted(c.search_runs([experiment.experiment_id]), key=lambda r: r.info.start_time)


def only(report: dict) -> dict:
    [entry] = report["evals"]
    return entry


@pytest.mark.parametrize("story", ["here", "agent"], indirect=True)
def test_first_run_then_pass_regression_warning_improved(story):
    first = story(0)
    assert first.ret == 0
    first.stdout.fnmatch_lines(["story*default*20*0/0/0*100.0% ?84%-100%?*70%*-*-*PASS (first run)*"])
    assert only(story.report())["first_run"] is True

    same = story(0)
    assert same.ret == 0
    same.stdout.fnmatch_lines(["story*default*20*100.0%*70%*100.0%*+0.0 pp (p=1.000)*PASS*"])
    [run1, run2] = runs_of(story.uri)
    assert only(story.report())["baseline_run_id"] == run1.info.run_id

    degraded = story(8)  # 12/20 = 60% < 70%
    assert degraded.ret == 1
    degraded.stdout.fnmatch_lines([
        "story*default*60.0%*70%*100.0%*-40.0 pp (p=0.008)*REGRESSION*",
        "story [default]: REGRESSION: pass rate 60.0% below threshold 70%",
        "promptgate: session FAILED: 1 eval variant(s) with verdict REGRESSION",
    ])
    entry = only(story.report())
    # 8 shared cases broke, none was fixed: McNemar's exact test is a binomial test on the 8 discordant pairs.
    assert entry["p_value"] == pytest.approx(binomtest(0, 8, 0.5).pvalue)
    assert (entry["test"], entry["shared_cases"], entry["broken_cases"], entry["fixed_cases"]) == ("mcnemar", 20, 8, 0)

    # A REGRESSION run is logged, but the bar stays the last run that met it: 17/20 against run 2's 20/20.
    small_drop = story(3)
    assert small_drop.ret == 0  # WARNING does not fail the session by default
    entry = only(story.report())
    assert (entry["verdict"], entry["baseline_run_id"]) == ("WARNING", run2.info.run_id)
    assert entry["delta"] == pytest.approx(-0.15)
    assert entry["p_value"] == pytest.approx(binomtest(0, 3, 0.5).pvalue)
    small_drop.stdout.fnmatch_lines(["story [default]: WARNING: dropped 15.0 pp from 100.0% (p=0.250)"])

    better = story(1)  # 19/20 against the WARNING run's 17/20
    assert better.ret == 0
    entry = only(story.report())
    warning_run = runs_of(story.uri)[-2]
    assert (entry["verdict"], entry["baseline_run_id"]) == ("IMPROVED", warning_run.info.run_id)
    better.stdout.fnmatch_lines(["story [default]: IMPROVED: rose 10.0 pp from 85.0% (p=0.500)"])

    verdicts = [(r.data.tags["promptgate.verdict"], r.data.tags.get("promptgate.baseline_run_id")) for r in runs_of(story.uri)]
    assert verdicts == [
        ("PASS", None), ("PASS", run1.info.run_id), ("REGRESSION", run2.info.run_id),
        ("WARNING", run2.info.run_id), ("IMPROVED", warning_run.info.run_id),
    ]
    assert {r.data.tags["promptgate.complete"] for r in runs_of(story.uri)} == {"true"}
    assert len({r.data.tags["promptgate.session"] for r in runs_of(story.uri)}) == 5


def test_partial_runs_are_logged_but_never_become_baselines(story, pytester):
    assert story(0).ret == 0
    [full] = runs_of(story.uri)
    partial = story(2, "-k", "c00 or c01 or c02")  # the two wrong cases and one right one
    partial.stdout.fnmatch_lines([
        "story*default*3/20*2/0/0*33.3%*",
        "cases ran/total: a partial run*compared with the baseline on the same cases*",
    ])
    entry = only(story.report())
    # Compared on the three cases both runs share: 3/3 then, 1/3 now.
    assert (entry["baseline_pass_rate"], entry["shared_cases"]) == (1.0, 3)
    assert story(0, "--lf").ret == 0  # --lf reruns the two failed cases only: partial too
    after = story(0)
    assert only(story.report())["baseline_run_id"] == full.info.run_id
    assert after.ret == 0
    completeness = [r.data.tags["promptgate.complete"] for r in runs_of(story.uri)]
    assert completeness == ["true", "false", "false", "true"]
    assert [r.data.metrics["total_cases"] for r in runs_of(story.uri)] == [20, 3, 2, 20]


def test_a_run_with_an_error_case_is_not_complete(story, pytester):
    pytester.makepyfile(quality=QUALITY + '\n\ndef crash(vars):\n    if vars["id"] == "c05":\n        raise RuntimeError("down")\n    return "yes"\n')
    (pytester.path / "story.eval.yaml").write_text(STORY.replace("quality:answer", "quality:crash"))
    result = story(0)
    result.assert_outcomes(passed=19, errors=1)
    assert result.ret == 0  # 95% is above the threshold
    [run] = runs_of(story.uri)
    assert run.data.tags["promptgate.complete"] == "false"
    assert run.data.metrics["error_cases"] == 1


def test_a_run_reads_back_with_the_documented_layout(story, pytester):
    assert story(2).ret == 0
    [run] = runs_of(story.uri)
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "story/default PASS 90.0%"  # what MLflow's run list shows
    assert {k: params[k] for k in ("eval", "variant", "suite", "repeat", "target", "temperature", "cache")} == {
        "eval": "story", "variant": "default", "suite": "core", "repeat": "1", "target": "quality:answer",
        "temperature": "0.2", "cache": "off",
    }
    assert params["prompt.ask"] == prompt_digest(TEMPLATE)
    assert len(params["dataset_hash"]) >= 8
    assert metrics["pass_rate"] == pytest.approx(18 / 20)
    assert (metrics["total_cases"], metrics["passed_cases"], metrics["failed_cases"], metrics["error_cases"]) == (20, 18, 2, 0)
    assert metrics["grader.equals.pass_rate"] == pytest.approx(18 / 20)
    assert metrics["failure_mode.said_no.count"] == 2
    assert {"latency_ms_p50", "latency_ms_p95", "latency_ms_p99", "latency_ms_avg", "average_score"} <= set(metrics)
    assert tags["promptgate.eval"] == "story" and tags["promptgate.variant"] == "default"
    assert tags["promptgate.suite"] == "core" and tags["promptgate.block_promote"] == "false"
    assert tags["promptgate.verdict"] == "PASS" and "promptgate.baseline_run_id" not in tags

    c = client(story.uri)
    artifacts = {a.path for a in c.list_artifacts(run.info.run_id)}
    assert artifacts == {RESULTS_FILE, "prompts"}
    table = json.loads(Path(c.download_artifacts(run.info.run_id, RESULTS_FILE, str(pytester.path))).read_text())
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    assert sorted(r["case_id"] for r in rows) == CASES
    assert {r["case_id"] for r in rows if not r["passed"]} == {"c00", "c01"}
    prompt = c.download_artifacts(run.info.run_id, "prompts/ask.txt", str(pytester.path))
    assert Path(prompt).read_text() == TEMPLATE
    # Artifacts live beside the store, not in ./mlruns of whatever the current directory was.
    assert not (pytester.path / "mlruns").exists()
    assert list((pytester.path / "mlartifacts").rglob(RESULTS_FILE))


def test_a_changed_prompt_is_listed_against_the_baseline(story, pytester):
    assert story(0).ret == 0
    (pytester.path / "story.eval.yaml").write_text(STORY.replace("Answer yes or no.", "Reply yes or no."))
    result = story(0)
    before, after = prompt_digest(TEMPLATE), prompt_digest(TEMPLATE.replace("Answer", "Reply"))
    result.stdout.fnmatch_lines([f"story [[]default]: prompts changed since baseline run *: ask {before} -> {after}"])
    assert only(story.report())["prompts_changed"] == [{"name": "ask", "before": before, "after": after}]


def test_significance_and_fail_on_options(story):
    assert story(0).ret == 0
    # 17/20 after 20/20: a 15 pp drop with p = 0.25, not significant at 0.05: PASS, so nothing fails.
    result = story(3, "--prompt-significance", "0.05", "--prompt-fail-on", "regression,warning")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["story*default*85.0%*-15.0 pp (p=0.250)*PASS*"])
    assert only(story.report())["verdict_reason"] == ("dropped 15.0 pp from 100.0%, not significant "
                                                     "(n too small to detect < 22.9 pp; p=0.250, alpha 0.05)")
    # 14/20 after that 17/20: a WARNING, which fails the session when asked to.
    result = story(6, "--prompt-fail-on", "regression,warning")
    assert only(story.report())["verdict"] == "WARNING"
    assert result.ret == 1
    result.stdout.fnmatch_lines(["promptgate: session FAILED: 1 eval variant(s) with verdict REGRESSION/WARNING"])
    # A run whose verdict failed its session is not the next baseline: running the same change again still fails.
    again = story(6, "--prompt-fail-on", "regression,warning")
    assert (again.ret, only(story.report())["verdict"], only(story.report())["baseline_pass_rate"]) == (1, "WARNING", 0.85)
    assert story(10, "--prompt-fail-on", "none").ret == 0  # a REGRESSION that fails nothing
    assert only(story.report())["verdict"] == "REGRESSION"
    result = story(0, "--prompt-fail-on", "bogus")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--prompt-fail-on*unknown verdict 'bogus'*"])


def test_baseline_branch_and_pinned_baseline(story, pytester):
    assert story(0).ret == 0  # the project is not a git checkout: no git.branch tag
    result = story(0, "--prompt-baseline-branch", "main")
    entry = only(story.report())
    assert entry["first_run"] is True and entry["baseline_run_id"] is None
    assert result.ret == 0
    [first, _] = runs_of(story.uri)
    assert story(4).ret == 0  # 16/20: a WARNING against the latest run
    pinned = story(4, "--prompt-baseline", first.info.run_id)
    assert pinned.ret == 0
    assert only(story.report())["baseline_run_id"] == first.info.run_id
    missing = story(0, "--prompt-baseline", "0" * 32)
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines(["*--prompt-baseline: baseline run '000*' does not exist*"])


def test_unpaired_comparison_when_no_case_is_shared(story, pytester):
    assert story(0).ret == 0
    renamed = STORY.replace("{id: c", "{id: n").replace("vars: {id: n", "vars: {id: c")
    (pytester.path / "story.eval.yaml").write_text(renamed)
    story(5)  # new case ids: nothing to pair, so Fisher's exact test on 20/20 against 15/20
    entry = only(story.report())
    assert (entry["test"], entry["shared_cases"]) == ("fisher", 0)
    assert entry["p_value"] == pytest.approx(fisher_exact([[15, 5], [20, 0]]).pvalue)


@pytest.mark.parametrize(("on_fail", "exit_status"), [("warn", 0), ("fail", 1), ("block_promote", 0)])
def test_gate_actions_are_tagged_on_the_run(story, pytester, on_fail, exit_status):
    gated = STORY.replace("cases:\n", f"gates:\n  on_fail: {on_fail}\n  rules: [{{metric: pass_rate, min: 0.95}}]\ncases:\n")
    (pytester.path / "story.eval.yaml").write_text(gated)
    result = story(2)  # 90% < 95%
    assert result.ret == exit_status
    [run] = runs_of(story.uri)
    assert run.data.tags["promptgate.block_promote"] == ("true" if on_fail == "block_promote" else "false")
    assert run.data.tags["promptgate.gates_tripped"] == f"{on_fail}: pass_rate 0.9 below min 0.95"


def test_tracking_off_logs_nothing(story, pytester):
    result = story(0, "--prompt-no-tracking")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["tracking off: no MLflow runs logged, no baselines compared"])
    assert not runs_of_any(story.uri)


def runs_of_any(uri: str) -> list:
    c = client(uri)
    return [r for e in c.search_experiments() for r in c.search_runs([e.experiment_id])]


def test_n2_logs_one_run_per_eval_and_variant_with_the_same_metrics(story, pytester):
    two_variants = STORY.replace(
        "variants: [{name: default, params: {temperature: 0.2}}]",
        'variants: [{name: default}, {name: shout, prompts: {ask: {template: "IS {{id}} FINE?"}}}]',
    )
    (pytester.path / "story.eval.yaml").write_text(two_variants)
    (pytester.path / "other.eval.yaml").write_text(STORY.replace("eval: story", "eval: other"))
    (pytester.path / "wrong.txt").write_text("c03 c07 c11")
    metrics = {}
    for name, args in {"plain": ("-p", "no:xdist"), "n2": ("-n", "2")}.items():
        result = pytester.runpytest_subprocess("--prompt-suite", "core", *args)
        assert result.ret == 0, name
        result.stdout.fnmatch_lines(["logged 3 run(s) to MLflow at *"])
        runs = runs_of(story.uri, "story") + runs_of(story.uri, "other")
        mine = [r for r in runs if r.info.run_id not in {m for v in metrics.values() for m in v}]
        assert sorted((r.data.tags["promptgate.eval"], r.data.tags["promptgate.variant"]) for r in mine) == [
            ("other", "default"), ("story", "default"), ("story", "shout"),
        ]
        assert len({r.data.tags["promptgate.session"] for r in mine}) == 1
        metrics[name] = {
            r.info.run_id: (r.data.tags["promptgate.eval"], r.data.tags["promptgate.variant"],
                            {k: v for k, v in r.data.metrics.items() if not k.startswith("latency_ms")})
            for r in mine
        }
    assert sorted(metrics["plain"].values(), key=str) == sorted(metrics["n2"].values(), key=str)


def test_stopped_and_interrupted_sessions_are_logged_but_incomplete(story, pytester):
    stopped = story(2, "-x")  # stops at the first failed case, c00
    assert stopped.ret == 1
    pytester.makepyfile(quality=QUALITY + '\n\ndef interrupt(vars):\n    if vars["id"] == "c05":\n        raise KeyboardInterrupt\n    return "yes"\n')
    (pytester.path / "story.eval.yaml").write_text(STORY.replace("quality:answer", "quality:interrupt"))
    (pytester.path / "wrong.txt").write_text("")
    # In a process of its own: an in-process run passes the KeyboardInterrupt on to this test.
    interrupted = pytester.runpytest_subprocess("--prompt-suite", "core")
    assert interrupted.ret == pytest.ExitCode.INTERRUPTED
    runs = runs_of(story.uri)
    assert [(r.data.tags["promptgate.complete"], r.data.metrics["total_cases"]) for r in runs] == [("false", 1), ("false", 5)]
    assert {r.info.status for r in runs} == {"FINISHED"}


def test_mlflow_is_imported_only_when_evals_ran(story, pytester, monkeypatch):
    """pytest's own process never imports MLflow when its tracking agent logs the runs; without the agent, only
    when evals ran."""
    pytester.makeconftest(IMPORTS_MLFLOW)
    pytester.makepyfile(test_plain="def test_one():\n    assert True\n")
    for agent, imported in (("auto", "False"), ("off", "True")):
        monkeypatch.setenv("PROMPTGATE_TRACKING_AGENT", agent)
        nothing_selected = pytester.runpytest_subprocess("--prompt-suite", "nightly", "test_plain.py")
        assert nothing_selected.ret == 0
        assert (pytester.path / "imported.txt").read_text() == "False"
        assert not runs_of_any(story.uri)
    for agent, imported in (("auto", "False"), ("off", "True")):
        monkeypatch.setenv("PROMPTGATE_TRACKING_AGENT", agent)
        before = len(runs_of_any(story.uri))
        evals_ran = pytester.runpytest_subprocess("--prompt-suite", "core")
        assert evals_ran.ret == 0
        assert (pytester.path / "imported.txt").read_text() == imported
        assert len(runs_of_any(story.uri)) == before + 1
