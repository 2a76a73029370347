"""A model judge's agreement with people (DESIGN §5.1, issue 16.1): Cohen's kappa and its interval, checked against
statsmodels, and shown in the reports where labels and a judge cover the same outputs."""

from __future__ import annotations

import hashlib
import json
import warnings

import pytest
from hypothesis import given, strategies as st
from statsmodels.stats.inter_rater import cohens_kappa as statsmodels_kappa

from pytest_promptgate.improve import cohens_kappa


@pytest.mark.parametrize("table", [
    [[20, 5], [10, 15]],
    [[45, 15], [25, 15]],  # Wikipedia's second example: kappa 0.1304
    [[1, 0], [0, 1]],
    [[0, 3], [4, 0]],
    [[11, 2, 0], [1, 9, 3], [0, 2, 14]],
])
def test_kappa_and_interval_match_statsmodels(table):
    ours, theirs = cohens_kappa(table), statsmodels_kappa(table)
    assert ours.kappa == pytest.approx(theirs.kappa, abs=1e-12)
    assert (ours.low, ours.high) == (pytest.approx(max(-1, theirs.kappa_low), abs=1e-9),
                                     pytest.approx(min(1, theirs.kappa_upp), abs=1e-9))


@given(st.lists(st.integers(0, 40), min_size=4, max_size=4))
def test_kappa_matches_statsmodels_on_any_two_by_two_table(cells):
    table = [cells[:2], cells[2:]]
    ours = cohens_kappa(table)
    if ours is None:  # empty, or both raters used one category only: statsmodels divides by zero there
        n, first = sum(cells), (cells[0] + cells[1]) * (cells[0] + cells[2]) + (cells[2] + cells[3]) * (cells[1] + cells[3])
        assert n == 0 or first == n * n
        return
    with warnings.catch_warnings():  # statsmodels' kappa_max divides by zero for tables with an empty row
        warnings.simplefilter("ignore", RuntimeWarning)
        theirs = statsmodels_kappa(table)
    assert ours.kappa == pytest.approx(theirs.kappa, abs=1e-9)
    if ours.low is not None:
        assert ours.low == pytest.approx(max(-1, theirs.kappa_low), abs=1e-9)
        assert ours.high == pytest.approx(min(1, theirs.kappa_upp), abs=1e-9)


def test_kappa_matches_scikit_learn_on_rating_lists():
    sklearn = pytest.importorskip("sklearn.metrics")
    judge = [True, True, False, True, False, False, True, True, False, True]
    people = [True, False, False, True, False, True, True, True, False, False]
    table = [[sum(j == a and p == b for j, p in zip(judge, people, strict=True)) for b in (True, False)] for a in (True, False)]
    assert cohens_kappa(table).kappa == pytest.approx(sklearn.cohen_kappa_score(judge, people))


EVAL = """
eval: judged
suites: [core]
prompts: {p: {template: "{{answer}}"}}
target: echo
threshold: 0
graders:
  - {type: label_model, judge: "judges:judge", prompt: "Polite? {{output}}", labels: [polite, rude], passing_labels: [polite]}
cases:
"""

JUDGE = """
def judge(prompt):
    return '{"label": "polite"}' if "please" in prompt.lower() else '{"label": "rude"}'
"""

#: answer → what a person said of it (the judge calls it polite when it says "please").
ANSWERS = {
    "Please wait": "good", "Please hold on": "good", "Please go away": "bad", "Sure, please": "good",
    "No.": "bad", "Whatever": "bad", "Here you are": "good", "Go away": "bad",
}


def test_reports_give_the_judges_agreement_with_people(project, pytester):
    pytester.makepyfile(judges=JUDGE)
    cases = "".join(f"  - {{id: c{i}, vars: {{answer: {json.dumps(a)}}}}}\n" for i, a in enumerate(ANSWERS))
    project("judged.eval.yaml", EVAL + cases)
    project("judged.labels.jsonl", "".join(
        json.dumps({"case": f"c{i}", "output_sha": hashlib.sha256(a.encode()).hexdigest()[:16], "rating": rating}) + "\n"
        for i, (a, rating) in enumerate(ANSWERS.items())))
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-report", "r.json", "--prompt-report-md", "r.md",
                                "--prompt-report-html", "r.html")
    judge_says = ["please" in a.lower() for a in ANSWERS]
    people_say = [rating == "good" for rating in ANSWERS.values()]
    table = [[sum(j == x and p == y for j, p in zip(judge_says, people_say, strict=True)) for y in (True, False)] for x in (True, False)]
    expected = statsmodels_kappa(table)
    line = (f"judge label_model of judged [default] agrees with people on 6 of 8 labelled output(s) (75%): "
            f"kappa {expected.kappa:.2f} [95% CI {max(-1, expected.kappa_low):.2f}, {min(1, expected.kappa_upp):.2f}]")
    assert line.endswith("kappa 0.50 [95% CI -0.10, 1.00]")  # statsmodels' upper bound, 1.10, cut to where kappa lies
    result.stdout.fnmatch_lines([line])
    [agreement] = json.loads((pytester.path / "r.json").read_text())["judge_agreement"]
    assert (agreement["judge"], agreement["pairs"], agreement["agreed"]) == ("label_model", 8, 6)
    assert agreement["kappa"] == pytest.approx(expected.kappa)
    assert f"- {line}" in (pytester.path / "r.md").read_text()
    assert line in (pytester.path / "r.html").read_text()
