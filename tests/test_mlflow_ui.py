"""MLflow's UI shows what matters without configuring columns: each run's name and Markdown description."""

from __future__ import annotations

import re

from test_junit import APP, EVAL


def test_run_names_and_notes_carry_verdict_pass_rate_baseline_and_flips(pytester, tracking_on, monkeypatch):
    from mlflow import MlflowClient

    pytester.makepyfile(app=APP)
    pytester.syspathinsert()
    (pytester.path / "routing.eval.yaml").write_text(EVAL.replace("THRESHOLD", "0.5"))
    assert pytester.runpytest("--prompt-suite", "core").ret == 0  # r3 fails: 2/3, PASS
    monkeypatch.setenv("ROUTING_BROKEN", "1")  # r1 and r2 fail now too: 0/3, REGRESSION
    assert pytester.runpytest("--prompt-suite", "core").ret == 1

    client = MlflowClient(tracking_uri=tracking_on)
    experiment = client.get_experiment_by_name("promptgate/routing")
    runs = client.search_runs([experiment.experiment_id], "params.variant = 'a'", order_by=["attributes.start_time ASC"])
    first, second = runs
    assert first.info.run_name == "routing/a PASS 66.7%"
    assert second.info.run_name == "routing/a REGRESSION 0.0%"
    note = second.data.tags["mlflow.note.content"]
    assert note.startswith("**REGRESSION**: pass rate **0.0%** (95% interval 0.0% to ")
    assert ", threshold 50.0%\n" in note
    assert "- verdict: pass rate 0.0% below threshold 50%" in note
    assert "- cases: 3 (0 passed, 3 failed, 0 errors)\n" in note
    assert re.search(rf"^- baseline: run `{first.info.run_id}` at 66\.7%, delta -66\.7 pp \(p=[0-9.]+\)$", note, re.M)
    assert "- flipped against the baseline: 2 case(s), 2 newly failing, 0 newly passing\n" in note
    assert "- baseline: none (a first run" in first.data.tags["mlflow.note.content"]

    # The filter docs/mlflow.md gives for the runs that regressed.
    regressed = client.search_runs([experiment.experiment_id], "tags.promptgate.verdict = 'REGRESSION'")
    assert sorted(run.info.run_name for run in regressed) == ["routing/a REGRESSION 0.0%", "routing/b REGRESSION 0.0%"]


def test_a_long_eval_name_keeps_the_verdict_in_the_run_name(pytester, tracking_on):
    from mlflow import MlflowClient

    pytester.makepyfile(app=APP)
    pytester.syspathinsert()
    name = "routing-" + "x" * 90  # names are at most 100 characters; with "/a", more than a run name keeps
    (pytester.path / "routing.eval.yaml").write_text(EVAL.replace("THRESHOLD", "0.5").replace("eval: routing", f"eval: {name}"))
    assert pytester.runpytest("--prompt-suite", "core").ret == 0
    client = MlflowClient(tracking_uri=tracking_on)
    experiment = client.get_experiment_by_name(f"promptgate/{name}")
    names = sorted(run.info.run_name for run in client.search_runs([experiment.experiment_id]))
    assert [len(n) for n in names] == [len("PASS 66.7%") + 81] * 2
    assert all(n.startswith("routing-xxx") and n.endswith("… PASS 66.7%") for n in names)
