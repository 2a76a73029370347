"""``pytest --prompt-trend``: each eval's pass-rate history, read back from a real SQLite MLflow store.

The story makes four sessions of two evals (one of them with two variants), with
pass rates that move, a ``-k`` partial run and a changed prompt, then reads the
trend as a user does, in table and JSON form. Expected pass rates come from the
wrong answers the test planted; run ids and dates from an ``MlflowClient`` of the
test's own. The direction rule is unit tested as the pure function it is.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from mlflow_server import free_port
from pytest_promptgate.promote import DEGRADING, IMPROVING, STABLE, direction, eval_trend
from pytest_promptgate.template import prompt_digest
from pytest_promptgate.tracking import EvalHistory, TrendRun

QUALITY = '''
from pathlib import Path

def answer(vars, variant):
    """Says "yes", unless wrong.txt lists the case id (every variant) or ID@VARIANT."""
    with open("calls.txt", "a") as calls:
        calls.write(vars["id"] + "\\n")
    wrong = Path("wrong.txt").read_text().split() if Path("wrong.txt").exists() else []
    return "no" if vars["id"] in wrong or f"{vars['id']}@{variant}" in wrong else "yes"
'''

TEMPLATE = "Is {{id}} fine? Answer yes or no."
STORY = """
eval: story
suites: [core]
prompts: {ask: {template: "%s"}}
target: quality:answer
threshold: 0.7
graders: [{type: equals, value: "yes"}]
cases:
""" % TEMPLATE + "".join(f"  - {{id: c{i:02d}, vars: {{id: c{i:02d}}}}}\n" for i in range(20))
OTHER = """
eval: other
suites: [extra]
prompts: {ask: {template: "Is {{id}} all right?"}}
target: quality:answer
variants:
  - name: control
  - name: terse
    prompts: {ask: {template: "{{id}} ok?"}}
threshold: 0.5
graders: [{type: equals, value: "yes"}]
cases:
""" + "".join(f"  - {{id: o{i:02d}, vars: {{id: o{i:02d}}}}}\n" for i in range(10))


def runs_of(uri: str, eval_name: str) -> list:
    """Every run of the eval, oldest first (a session's variants in the order they were logged)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(f"promptgate/{eval_name}")
    return sorted(client.search_runs([experiment.experiment_id]), key=lambda r: (r.info.start_time, r.info.end_time))


def date(run) -> str:
    return datetime.fromtimestamp(run.info.start_time / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


@pytest.fixture
def history(project, pytester, tracking_on):
    """Four sessions on a fresh store; returns a function running ``pytest --prompt-trend ARGS``."""
    pytester.makepyfile(quality=QUALITY)
    project("story.eval.yaml", STORY)
    project("other.eval.yaml", OTHER)

    def session(wrong: str, *args: str) -> int:
        (pytester.path / "wrong.txt").write_text(wrong)
        return pytester.runpytest("--prompt-suite", "all", *args).ret

    # story: 16/20, 18/20, a -k run of c00-c02 (1/3, partial), then 20/20 with a new prompt.
    # other: control 10/10, 9/10, -, 7/10; terse 10/10, 10/10, -, 9/10 (the -k run selects none of its cases).
    assert session("c00 c01 c02 c03") == 0
    assert session("c00 c01 o00@control") == 0
    assert session("c00 c01", "-k", "c00 or c01 or c02") == 1  # 1/3 is below story's threshold
    (pytester.path / "story.eval.yaml").write_text(STORY.replace("Answer yes", "Reply yes"))
    assert session("o00@control o01@control o02@control o00@terse") == 0
    (pytester.path / "calls.txt").unlink()

    def trend(*args: str) -> pytest.RunResult:
        return pytester.runpytest("--prompt-trend", *args)

    trend.uri = tracking_on
    return trend


def test_trend_story(history, pytester):
    story, other = runs_of(history.uri, "story"), runs_of(history.uri, "other")
    assert [r.data.tags["promptgate.variant"] for r in other] == ["control", "terse"] * 3
    old, new = prompt_digest(TEMPLATE), prompt_digest(TEMPLATE.replace("Answer", "Reply"))

    table = history("--prompt-suite", "core")  # a suite that would otherwise run evals: the trend runs none
    assert table.ret == 0
    table.stdout.fnmatch_lines([
        f"promptgate trend: 1 eval(s) in {history.uri}; up to 10 run(s) per eval, newest last",
        "",
        "story [[]default]: pass rate 100.0%, improving (80.0% -> 90.0% -> 100.0%, last 3 complete runs)",
        "run id * date (UTC) * variant * cases * pass rate * avg score * verdict * prompts changed",
        "-----*",
        f"{story[0].info.run_id}  {date(story[0])}  default * 20 * 80.0% * 0.80  PASS * first run",
        f"{story[1].info.run_id}  {date(story[1])}  default * 20 * 90.0% * 0.90  IMPROVED",
        f"{story[2].info.run_id}  {date(story[2])}  default * 3 partial * 33.3% * 0.33  REGRESSION",
        f"{story[3].info.run_id}  {date(story[3])}  default * 20 * 100.0% * 1.00  IMPROVED * ask {old} -> {new}",
        "",
        "partial: not every case ran (-k, --lf, deselection, -x, an interrupted session) or a case errored; "
        "shown, never used for the direction",
        "direction: the newest of the last 3 complete runs of a variant against the oldest of them; "
        "a move of 2 pp or less, or of one case, is stable",
    ], consecutive=True)
    assert not (pytester.path / "calls.txt").exists()  # no target was called
    assert "passed" not in table.stdout.str() and "collected" not in table.stdout.str()

    # Both evals, by name; `other` has one line per variant, and no prompt changes: its variants'
    # prompts differ, but each run is compared with the previous run of its own variant.
    both = history()
    both.stdout.fnmatch_lines([
        "promptgate trend: 2 eval(s) in *",
        "",
        "other [[]control]: pass rate 70.0%, degrading (100.0% -> 90.0% -> 70.0%, last 3 complete runs)",
        "other [[]terse]: pass rate 90.0%, stable (100.0% -> 100.0% -> 90.0%, last 3 complete runs)",
        "run id *",
        "-----*",
        *(f"{run.info.run_id} * {run.data.tags['promptgate.variant']} * 10 * {run.data.metrics['pass_rate']:.1%} *"
          for run in other),
        "",
        "story [[]default]: *improving*",
    ], consecutive=True)
    other_rows = [line for line in both.stdout.lines if any(line.startswith(r.info.run_id) for r in other)]
    assert [line.endswith("first run") for line in other_rows] == [True, True, False, False, False, False]
    assert not any("sha256" in line for line in other_rows)

    data = json.loads(history("--prompt-trend-format", "json").stdout.str())
    assert (data["tracking_uri"], data["limit"], data["evals_without_runs"]) == (history.uri, 10, [])
    assert [e["name"] for e in data["evals"]] == ["other", "story"]
    other_json, story_json = data["evals"]
    # An eval with several variants is summed up by the one doing worst.
    assert (other_json["variant"], other_json["direction"], other_json["latest_pass_rate"]) == ("control", DEGRADING, 0.7)
    assert [(v["name"], v["direction"], v["latest_pass_rate"]) for v in other_json["variants"]] == [
        ("control", DEGRADING, 0.7), ("terse", STABLE, 0.9),
    ]
    assert other_json["variants"][0]["direction_run_ids"] == [r.info.run_id for r in other[0::2]]
    assert [r["pass_rate"] for r in other_json["runs"]] == [1.0, 1.0, 0.9, 1.0, 0.7, 0.9]
    assert (story_json["variant"], story_json["direction"], story_json["latest_run_id"]) == (
        "default", IMPROVING, story[3].info.run_id,
    )
    complete = [story[0], story[1], story[3]]
    assert story_json["direction_run_ids"] == [r.info.run_id for r in complete]
    assert story_json["runs"] == [
        {
            "run_id": run.info.run_id,
            "date": datetime.fromtimestamp(run.info.start_time / 1000, tz=timezone.utc).isoformat(timespec="seconds")
            .replace("+00:00", "Z"),
            "variant": "default",
            "complete": complete_run,
            "cases": cases,
            "pass_rate": pytest.approx(rate),
            "average_score": pytest.approx(rate),
            "verdict": run.data.tags["promptgate.verdict"],
            "prompt_versions": {"ask": version},
            "first_run": run is story[0],
            "prompts_changed": changed,
        }
        for run, complete_run, cases, rate, version, changed in [
            (story[0], True, 20, 16 / 20, old, []),
            (story[1], True, 20, 18 / 20, old, []),
            (story[2], False, 3, 1 / 3, old, []),
            (story[3], True, 20, 20 / 20, new, [{"name": "ask", "before": old, "after": new}]),
        ]
    ]
    assert [r["verdict"] for r in story_json["runs"]] == ["PASS", "IMPROVED", "REGRESSION", "IMPROVED"]

    # The limit cuts the rows, not the direction; the oldest row shown still says what changed
    # since its variant's previous run, which is no longer shown.
    limited = history("--prompt-trend-limit", "1")
    limited.stdout.fnmatch_lines([
        "other [[]terse]: pass rate 90.0%, stable *",
        "run id *",
        "-----*",
        f"{other[5].info.run_id} * terse * 10 * 90.0% * 0.90  {other[5].data.tags['promptgate.verdict']}",
        "",
        "story [[]default]: pass rate 100.0%, improving (80.0% -> 90.0% -> 100.0%, last 3 complete runs)",
        "run id *",
        "-----*",
        f"{story[3].info.run_id} * 100.0% * 1.00  IMPROVED * ask {old} -> {new}",
        "",
        "direction: *",  # the partial run is not shown, so neither is its note
    ], consecutive=True)
    assert "other [control]" not in limited.stdout.str()
    two = json.loads(history("--prompt-trend-limit", "2", "--prompt-trend-format", "json").stdout.str())
    assert [[r["run_id"] for r in e["runs"]] for e in two["evals"]] == [
        [r.info.run_id for r in other[4:]], [r.info.run_id for r in story[2:]],
    ]
    assert [e["direction"] for e in two["evals"]] == [DEGRADING, IMPROVING]
    assert not any(r["first_run"] or r["prompts_changed"] for r in two["evals"][0]["runs"])

    # Filters: by eval name (repeated or with commas), by suite; what matches nothing says so.
    assert [e["name"] for e in json.loads(history("--prompt-trend-eval", "other", "--prompt-trend-format", "json")
                                          .stdout.str())["evals"]] == ["other"]
    by_name = history("--prompt-trend-eval", "story,nosuch", "--prompt-trend-eval", "other")
    assert by_name.ret == 0
    by_name.stdout.fnmatch_lines(["promptgate trend: 2 eval(s) in *", "promptgate: no runs of eval(s) nosuch"])
    assert "story [default]" in history("--prompt-suite", "all").stdout.str()
    extra = history("--prompt-suite", "extra")
    assert "other [control]" in extra.stdout.str() and "story [" not in extra.stdout.str()
    for args in (["--prompt-trend-eval", "nosuch"], ["--prompt-suite", "nosuch"], ["--prompt-suite", "core", "--prompt-trend-eval", "other"]):
        nothing = history(*args)
        assert (nothing.ret, nothing.stdout.lines) == (0, [f"promptgate: no eval runs found in {history.uri}"])

    # Under xdist the trend is the same command, on the controller: it starts no workers.
    assert json.loads(history("-n", "2", "--prompt-trend-format", "json").stdout.str()) == data
    assert not (pytester.path / "calls.txt").exists()


def test_an_empty_store_has_no_eval_runs(pytester, tracking_on):
    result = pytester.runpytest("--prompt-trend")
    assert (result.ret, result.stdout.lines) == (0, [f"promptgate: no eval runs found in {tracking_on}"])
    data = json.loads(pytester.runpytest("--prompt-trend", "--prompt-trend-format", "json").stdout.str())
    assert (data["evals"], data["tracking_uri"]) == ([], tracking_on)


def test_a_store_that_does_not_exist_is_not_created(pytester, tracking_on):
    (pytester.path / "mlflow.db").unlink()
    result = pytester.runpytest("--prompt-trend")
    assert (result.ret, result.stdout.lines) == (0, [f"promptgate: no eval runs found in {tracking_on}"])
    assert not (pytester.path / "mlflow.db").exists()


def test_unreachable_tracking_is_one_line_and_exit_1(pytester):
    uri = f"http://127.0.0.1:{free_port()}"
    result = pytester.runpytest("--prompt-trend", "--prompt-tracking-uri", uri)
    assert result.ret == 1
    assert result.stdout.lines == []
    assert result.stderr.lines == [
        f"promptgate: --prompt-trend: MLflow tracking at {uri} is unavailable (opening the store): connection refused"
    ]


@pytest.mark.parametrize(("args", "message"), [
    (["--prompt-trend-limit", "0"], "*--prompt-trend-limit: expected a whole number of runs, 1 or more; got '0'"),
    (["--prompt-trend-limit", "ten"], "*--prompt-trend-limit: expected a whole number of runs, 1 or more; got 'ten'"),
    (["--prompt-trend-format", "csv"], "*--prompt-trend-format: invalid choice: 'csv' (choose from *table*json*)"),
    (["--prompt-no-tracking"], "*--prompt-trend reads the runs in MLflow; it cannot be combined with --prompt-no-tracking"),
    (["--prompt-sync"], "*--prompt-trend and --prompt-sync are separate commands; run one at a time"),
    (["--promote", "router"], "*--promote and --prompt-trend are separate commands; run one at a time"),
])
def test_usage_errors(pytester, args, message):
    result = pytester.runpytest("--prompt-trend", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


# --------------------------------------------------------------------------- the direction rule


@pytest.mark.parametrize(("rates", "cases", "expected"), [
    ([], None, None),
    ([0.5], None, None),
    ([0.5, 0.9], None, None),  # two complete runs are not a trend yet
    ([0.5, 0.6, 0.9], None, IMPROVING),
    ([0.9, 0.6, 0.5], None, DEGRADING),
    ([0.8, 0.1, 0.8], None, STABLE),  # the run between does not count
    ([0.1, 0.8, 0.9, 0.8], None, STABLE),  # only the last three do
    ([0.50, 0.9, 0.52], None, STABLE),  # 2 pp is within the tolerance (0.52 - 0.50 is 0.020000000000000018)
    ([0.50, 0.9, 0.53], None, IMPROVING),
    ([0.53, 0.1, 0.50], None, DEGRADING),
    ([0.50, 0.5, 0.53], [100, 100, 100], IMPROVING),  # one case is 1 pp: the 2 pp tolerance is the larger
    ([0.50, 0.5, 0.53], [20, 20, 20], STABLE),  # one case is 5 pp
    ([0.85, 0.9, 0.90], [20, 20, 20], STABLE),  # exactly one case (0.90 - 0.85 is 0.05000000000000004)
    ([0.85, 0.9, 0.95], [20, 20, 20], IMPROVING),  # two cases
    ([0.90, 0.9, 0.95], [10, 10, 20], STABLE),  # one case of the smaller run is 10 pp
    ([0.90, 0.9, 0.80], [None, 20, 10], STABLE),
    ([0.90, 0.9, 0.79], [None, 20, None], DEGRADING),  # unknown case counts: only the 2 pp
])
def test_direction(rates, cases, expected):
    assert direction(rates, cases) == expected


def run(run_id: str, variant: str, rate: float | None, *, complete: bool = True, prompt: str = "v1") -> TrendRun:
    return TrendRun(
        run_id=run_id, eval="e", variant=variant, start_time=0, complete=complete, pass_rate=rate, average_score=rate,
        total_cases=100, verdict="PASS", suites=("core",), prompt_versions={"p": prompt},
    )


def test_an_eval_is_summed_up_by_its_worst_variant_and_rows_compare_within_a_variant():
    a1, a2, a3 = run("a1", "a", 0.9), run("a2", "a", 0.5, complete=False), run("a3", "a", 0.8, prompt="v2")
    b0, b1, b2 = run("b0", "b", 0.6), run("b1", "b", 0.7, prompt="v3"), run("b2", "b", 0.95, prompt="v3")
    history = EvalHistory(
        eval="e", experiment="promptgate/e", runs=(a1, b1, a2, b2, a3),
        complete={"a": (run("a0", "a", 0.9), a1, a3), "b": (b0, b1, b2)}, earlier={"b": b0},
    )
    trend = eval_trend(history)
    assert [(v.variant, v.direction, v.latest) for v in trend.variants] == [("a", DEGRADING, a3), ("b", IMPROVING, b2)]
    assert trend.headline.variant == "a"
    changes = [(row.run.run_id, row.prompts_changed) for row in trend.rows]
    assert [(run_id, None if c is None else [(x.name, x.before, x.after) for x in c]) for run_id, c in changes] == [
        ("a1", None), ("b1", [("p", "v1", "v3")]), ("a2", []), ("b2", []), ("a3", [("p", "v1", "v2")]),
    ]
    # Equal directions: the lower latest pass rate speaks for the eval.
    stable = EvalHistory("e", "promptgate/e", (a1, b1), {"a": (a1, a1, a1), "b": (b1, b1, b1)}, {})
    assert eval_trend(stable).headline.variant == "b"
    # A variant with no complete run has no latest pass rate and no direction.
    partial_only = eval_trend(EvalHistory("e", "promptgate/e", (a2,), {}, {}))
    assert (partial_only.headline.latest, partial_only.headline.direction) == (None, None)
