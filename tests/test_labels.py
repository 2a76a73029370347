"""People's labels (DESIGN §11, issue 16): NAME.labels.jsonl beside an eval file, checked like the eval file, shown
in failure text and reports, counted in failure modes; and the labels template that round-trips."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

EVAL = """
eval: routing
suites: [core]
prompts: {p: {template: "{{message}}"}}
target: app:label
threshold: 0.5
graders: [{type: equals, value: "{{expected}}", failure_mode: wrong_label}]
cases:
  - {id: r1, vars: {message: "refund now"}, expected: refund}
  - {id: r2, vars: {message: "money back"}, expected: refund}
  - {id: r3, vars: {message: "hello there"}, expected: refund}
"""


def sha(output: str) -> str:
    """An output's digest as labels hold it, computed here independently of the plugin."""
    return hashlib.sha256(output.encode()).hexdigest()[:16]


def rows(*labels: dict) -> str:
    return "".join(json.dumps(label) + "\n" for label in labels)


def test_labels_show_in_failure_text_and_reports_and_count_as_failure_modes(project, pytester):
    project("routing.eval.yaml", EVAL)
    project("routing.labels.jsonl", rows(
        {"case": "r3", "output_sha": sha("other"), "rating": "bad", "failure_mode": "greeting_missed",
         "feedback": "a greeting is not a refund request", "annotator": "ana", "at": "2026-12-01T10:00:00Z"},
        {"case": "r1", "variant": "default", "rating": "good", "annotator": "bo"},
        {"case": "r2", "rating": ""},  # not rated yet: waits for a person
    ))
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-report", "r.json", "--prompt-report-md", "r.md",
                                "--prompt-report-html", "r.html")
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "*FAILED equals ?wrong_label?: *",
        "  LABEL bad ?greeting_missed? by ana (this output): a greeting is not a refund request",
    ])
    report = json.loads((pytester.path / "r.json").read_text())
    assert report["evals"][0]["failure_modes"] == {"greeting_missed": 1, "wrong_label": 1}
    labels = {c["case_id"]: [(label["rating"], label["annotator"]) for label in c["labels"]] for c in report["cases"]}
    assert labels == {"r1": [("good", "bo")], "r2": [], "r3": [("bad", "ana")]}
    markdown = (pytester.path / "r.md").read_text()
    assert "- failure modes of routing [default]: greeting_missed 1, wrong_label 1" in markdown
    assert "- labels of routing [default]: 2 on 2 case(s), 1 good, 1 bad; 1 about this session's outputs" in markdown
    assert "label bad [greeting_missed] by ana: a greeting is not a refund request" in (pytester.path / "r.html").read_text()


def test_a_label_about_an_earlier_output_shows_but_does_not_count(project, pytester):
    project("routing.eval.yaml", EVAL)
    project("routing.labels.jsonl", rows(
        {"case": "r3", "output_sha": sha("something else"), "rating": "bad", "failure_mode": "rude"}))
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-report", "r.json")
    result.stdout.fnmatch_lines(["  LABEL bad ?rude? (an earlier output)"])
    assert json.loads((pytester.path / "r.json").read_text())["evals"][0]["failure_modes"] == {"wrong_label": 1}


def test_a_bad_labels_file_is_a_located_error_of_its_eval(project, pytester):
    project("routing.eval.yaml", EVAL)
    project("routing.labels.jsonl", rows(
        {"case": "r1", "rating": "good"},
        {"case": "r33", "rating": "bad"},
        {"case": "r1", "rating": "meh"},
        {"case": "r2", "ratting": "bad"},
    ) + "{not json\n" + rows({"case": "r2", "variant": "terse", "rating": "bad"}))
    result = pytester.runpytest("--prompt-suite", "core")
    assert result.ret == 1
    result.stdout.fnmatch_lines([
        "invalid eval file (5 problem(s)):",
        "routing.labels.jsonl:2: case: unknown case id 'r33': the eval has no such case (did you mean 'r3'?)",
        "routing.labels.jsonl:3: rating: expected one of: good, bad (got 'meh')",
        "routing.labels.jsonl:4: ratting: unknown key 'ratting' (did you mean 'rating'?)*",
        "routing.labels.jsonl:5:2: invalid JSON: *",
        "routing.labels.jsonl:6: variant: unknown variant 'terse' (variants: default)",
    ])


def test_the_ini_key_points_at_a_directory_of_labels_files(project, pytester):
    project("evals/routing.eval.yaml", EVAL)
    project("labels/routing.labels.jsonl", rows({"case": "r3", "rating": "bad", "failure_mode": "greeting_missed"}))
    pytester.makeini("[pytest]\npromptgate_labels = labels\n")
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-report", "r.json")
    result.stdout.fnmatch_lines(["  LABEL bad ?greeting_missed?"])
    assert json.loads((pytester.path / "r.json").read_text())["evals"][0]["failure_modes"]["greeting_missed"] == 1


@pytest.mark.parametrize("args", [(), ("-n", "2")], ids=["no-xdist", "xdist"])
def test_labels_reach_the_controller_under_xdist(project, pytester, args):
    project("routing.eval.yaml", EVAL)
    project("routing.labels.jsonl", rows({"case": "r3", "rating": "bad", "failure_mode": "greeting_missed"}))
    result = pytester.runpytest_subprocess("--prompt-suite", "core", "--prompt-report", "r.json", *args)
    assert result.ret == 0
    assert json.loads((pytester.path / "r.json").read_text())["evals"][0]["failure_modes"]["greeting_missed"] == 1


def test_the_label_template_round_trips(project, pytester):
    """Failed and flaky outputs become rows to fill in; filled in, the next session reads them; run again, the
    template keeps people's ratings and adds only new outputs."""
    project("routing.eval.yaml", EVAL)
    pytester.makeini("[pytest]\npromptgate_labels = labels\n")
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-label-template", "labels")
    result.stdout.fnmatch_lines(["promptgate: 1 output(s) to label in */labels/routing.labels.jsonl"])
    path = pytester.path / "labels/routing.labels.jsonl"
    [row] = [json.loads(line) for line in path.read_text().splitlines()]
    assert row == {"case": "r3", "variant": "default", "output_sha": sha("other"), "rating": "", "failure_mode": "",
                   "feedback": "", "annotator": "", "at": "", "output": "other"}

    pytester.runpytest("--prompt-suite", "core")  # an unrated row waits for a person: no error, no label
    row.update(rating="bad", failure_mode="greeting_missed", feedback="not a refund", annotator="ana")
    path.write_text(json.dumps(row) + "\n")
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-label-template", "labels", "--prompt-report", "r.json")
    result.stdout.fnmatch_lines([
        "  LABEL bad ?greeting_missed? by ana (this output): not a refund",
        "promptgate: no new failed or flaky output to label in */labels",
    ])
    assert json.loads(path.read_text()) == row  # kept, not written twice
    assert json.loads((pytester.path / "r.json").read_text())["evals"][0]["failure_modes"]["greeting_missed"] == 1


def test_flaky_cases_get_a_row_per_distinct_output(project, pytester):
    from conftest import COIN, coin_eval

    pytester.makepyfile(coin=COIN)
    project("coin.eval.yaml", coin_eval(0.0, steady="hhh", wobbly="hth", lost="ttt"))
    pytester.runpytest("--prompt-suite", "core", "--prompt-label-template", "todo")
    rows = [json.loads(line) for line in (pytester.path / "todo/coin.labels.jsonl").read_text().splitlines()]
    assert [(r["case"], r["output"]) for r in rows] == [("wobbly", "heads"), ("wobbly", "tails"), ("lost", "tails")]


def test_the_human_grader_lets_labels_of_the_exact_output_decide(project, pytester):
    """Opt-in: with {type: human}, a bad label about this output fails the case, a good one passes it, whatever
    the (here optional) equals grader says."""
    project("routing.eval.yaml", EVAL.replace(
        'failure_mode: wrong_label}]', 'failure_mode: wrong_label, required: false}, {type: human}]'))
    project("routing.labels.jsonl", rows(
        {"case": "r1", "output_sha": sha("refund"), "rating": "bad", "feedback": "too curt", "annotator": "ana"},
        {"case": "r3", "output_sha": sha("other"), "rating": "good", "annotator": "bo"},
        {"case": "r2", "output_sha": sha("an old output"), "rating": "bad"},
    ))
    result = pytester.runpytest("--prompt-suite", "core", "-v")
    result.stdout.fnmatch_lines([
        "*::default::r1 FAILED*", "*::default::r2 PASSED*", "*::default::r3 PASSED*",
        "  FAILED human: labelled bad by ana (routing.labels.jsonl:1): too curt",
    ])


LABEL_KEYS = ["case", "variant", "output_sha", "rating", "failure_mode", "feedback", "annotator", "at", "output"]
label_values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20),
                         st.sampled_from(["r1", "r3", "default", "good", "bad", "", "0123456789abcdef", "x" * 300]),
                         st.lists(st.integers(), max_size=2))
label_rows = st.one_of(
    st.dictionaries(st.sampled_from(LABEL_KEYS) | st.text(max_size=6), label_values, max_size=6).map(json.dumps),
    st.text(max_size=40),
    st.binary(max_size=40).map(lambda raw: raw.decode("utf-8", "replace")),
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(label_rows, max_size=6))
def test_any_labels_file_loads_or_is_a_located_problem(tmp_path_factory, lines):
    """Whatever a labels file holds, the eval loads with its labels or fails with problems at the file's lines."""
    from pytest_promptgate.graders import GraderRegistry
    from pytest_promptgate.schema import EvalFileError, load_eval

    directory = tmp_path_factory.mktemp("fuzz")
    (directory / "routing.eval.yaml").write_text(EVAL.replace("app:label", "echo"))
    (directory / "routing.labels.jsonl").write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    try:
        loaded = load_eval(directory / "routing.eval.yaml", GraderRegistry.build([]).options_model)
    except EvalFileError as exc:
        assert exc.problems and all(p.file.endswith("routing.labels.jsonl") and p.line for p in exc.problems)
        return
    assert all(label.rating in ("good", "bad") for case in loaded.cases for label in case.labels)


def test_a_label_for_one_variant_stays_with_it(project, pytester):
    project("routing.eval.yaml", EVAL.replace("threshold: 0.5", "threshold: 0.5\nvariants: [{name: a}, {name: b}]"))
    project("routing.labels.jsonl", rows({"case": "r3", "variant": "b", "rating": "bad", "failure_mode": "only_b"}))
    # -rN: no short test summary, which repeats failure texts in full when CI is set (pytest does not cut them there)
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-report", "r.json", "-rN")
    report = json.loads((pytester.path / "r.json").read_text())
    assert {e["variant"]: e["failure_modes"] for e in report["evals"]} == {
        "a": {"wrong_label": 1}, "b": {"only_b": 1, "wrong_label": 1}}
    assert str(result.stdout).count("LABEL bad [only_b]") == 1


def test_a_label_template_that_cannot_be_written_fails_the_session_in_one_line(project, pytester):
    project("routing.eval.yaml", EVAL)
    (pytester.path / "taken").write_text("a file, not a directory")
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-label-template", "taken")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["promptgate: could not write the labels template in */taken: *"])
    assert "Traceback" not in str(result.stdout)


def test_labels_reach_the_mlflow_results_table(project, pytester, tracking_on):
    from mlflow import MlflowClient

    project("routing.eval.yaml", EVAL)
    project("routing.labels.jsonl", rows({"case": "r3", "rating": "bad", "failure_mode": "greeting_missed",
                                          "feedback": "not a refund", "annotator": "ana"}))
    assert pytester.runpytest("--prompt-suite", "core").ret == 0
    client = MlflowClient(tracking_on)
    [run] = client.search_runs([client.get_experiment_by_name("promptgate/routing").experiment_id])
    assert run.data.metrics["failure_mode.greeting_missed.count"] == 1
    table = json.loads(Path(client.download_artifacts(run.info.run_id, "promptgate_results.json", str(pytester.path)))
                       .read_text())
    rows_by_case = {row[0]: dict(zip(table["columns"], row, strict=True)) for row in table["data"]}
    assert rows_by_case["r3"]["labels"] == "bad [greeting_missed] by ana: not a refund"
    assert rows_by_case["r3"]["failure_modes"] == "greeting_missed, wrong_label"
    assert rows_by_case["r1"]["labels"] == ""
