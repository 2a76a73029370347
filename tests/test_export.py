"""--prompt-export (issue 16.3): the session's annotated dataset as JSON lines, read back with MLflow's own
evaluation-dataset API."""

from __future__ import annotations

import json

import pytest

EVAL = """
eval: routing
suites: [core]
prompts: {p: {template: "Route: {{message}}"}}
target: app:label
threshold: 0.5
graders:
  - {type: equals, value: "{{expected}}", failure_mode: wrong_label}
  - {type: latency, max_ms: 60000}
cases:
  - {id: r1, vars: {message: "refund now"}, expected: refund, tags: [plain]}
  - {id: r3, vars: {message: "hello there"}, expected: refund}
"""


def exported(pytester) -> list[dict]:
    return [json.loads(line) for line in (pytester.path / "out/dataset.jsonl").read_text().splitlines()]


def test_export_rows_hold_inputs_output_grades_labels_and_provenance(project, pytester, tracking_on):
    project("routing.eval.yaml", EVAL)
    project("routing.labels.jsonl", json.dumps({"case": "r3", "rating": "bad", "failure_mode": "greeting_missed",
                                                "feedback": "not a refund", "annotator": "ana"}) + "\n")
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-export", "out/dataset.jsonl")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["promptgate: exported 2 output(s) to */out/dataset.jsonl"])
    r1, r3 = exported(pytester)
    from mlflow import MlflowClient

    [run] = MlflowClient(tracking_on).search_runs(
        [MlflowClient(tracking_on).get_experiment_by_name("promptgate/routing").experiment_id])
    assert r1["inputs"] == {"vars": {"message": "refund now"}, "prompts": {"p": "Route: refund now"}}
    assert (r1["outputs"], r1["expectations"], r1["case_tags"]) == ("refund", {"expected": "refund"}, ["plain"])
    assert (r1["eval"], r1["variant"], r1["case_id"], r1["run"]) == ("routing", "default", "r1", 1)
    assert r1["run_id"] == run.info.run_id and r1["session"] == run.data.tags["promptgate.session"]
    assert r1["dataset_hash"] == run.data.params["dataset_hash"]
    assert r1["prompts"] == {"p": {"version": run.data.params["prompt.p"]}}
    assert r1["labels"] == [] and r1["failure_modes"] == []
    assert (r3["passed"], r3["case_outcome"], r3["failure_modes"]) == (False, "failed", ["greeting_missed", "wrong_label"])
    assert [(g["name"], g["passed"], g["reason"]) for g in r3["graders"]][0] == ("equals", False, "expected 'refund', got 'other'")
    assert [(label["annotator"], label["feedback"]) for label in r3["labels"]] == [("ana", "not a refund")]


# MLflow's dataset store uses a loader strategy SQLAlchemy 2.1 deprecates (DESIGN §6.1), on every query; importing
# mlflow.genai's evaluation harness warns about MLflow's own type hints.
@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")
@pytest.mark.filterwarnings("ignore:.*Any type hint is inferred as AnyType:UserWarning")
@pytest.mark.filterwarnings("ignore:Starting with pandas version 4.0")
def test_export_loads_as_an_mlflow_evaluation_dataset(project, pytester, tmp_path, monkeypatch):
    """The rows as they are go into an MLflow evaluation dataset, and into mlflow.genai.evaluate as static outputs."""
    project("routing.eval.yaml", EVAL)
    pytester.runpytest("--prompt-suite", "core", "--prompt-export", "out/dataset.jsonl")
    rows = exported(pytester)

    import mlflow
    from mlflow.genai import evaluate, scorer
    from mlflow.genai.datasets import create_dataset

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'datasets.db'}")
    monkeypatch.setattr(mlflow.tracking._tracking_service.utils, "_tracking_uri", None)
    experiment = mlflow.create_experiment("datasets")
    dataset = create_dataset(name="routing-failures", experiment_id=[experiment])
    dataset.merge_records(rows)
    frame = dataset.to_df().sort_values("tags", key=lambda tags: tags.map(lambda t: t["promptgate.case"]))
    assert frame["inputs"].tolist() == [row["inputs"] for row in rows]
    assert frame["expectations"].tolist() == [{"expected": "refund"}] * 2
    assert frame["outputs"].tolist() == ["refund", "other"]

    @scorer
    def same_label(outputs: str, expectations: dict) -> bool:
        return outputs == expectations["expected"]

    mlflow.set_experiment(experiment_id=experiment)
    results = evaluate(data=rows, scorers=[same_label])
    assert results.metrics["same_label/mean"] == pytest.approx(sum(row["passed"] for row in rows) / len(rows))


@pytest.mark.parametrize("args", [(), ("-n", "2")], ids=["no-xdist", "xdist"])
def test_an_error_case_is_exported_without_output_and_workers_export_rendered_prompts(project, pytester, args):
    project("crashy.eval.yaml", """
        eval: crashy
        suites: [core]
        prompts: {p: {messages: [{role: system, content: "Be brief."}, {role: user, content: "{{message}}"}]}}
        target: app:crash
        threshold: 0
        graders: [{type: equals, value: ok}]
        cases:
          - {id: fine, vars: {message: "hi"}}
          - {id: broken, vars: {message: "boom"}}
        """)
    result = pytester.runpytest_subprocess("--prompt-suite", "core", "--prompt-export", "out/dataset.jsonl", *args)
    result.stdout.fnmatch_lines(["promptgate: exported 2 output(s) to *"])
    rows = {row["case_id"]: row for row in exported(pytester)}
    assert rows["fine"]["inputs"]["prompts"] == {"p": [{"role": "system", "content": "Be brief."},
                                                       {"role": "user", "content": "hi"}]}
    assert (rows["fine"]["outputs"], rows["fine"]["passed"], rows["fine"]["run"]) == ("ok", True, 1)
    broken = rows["broken"]
    assert (broken["outputs"], broken["run"], broken["case_outcome"], broken["graders"]) == (None, None, "error", [])
    assert "KeyError" in broken["error"]
