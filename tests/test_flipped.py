"""Flipped cases against the baseline (issue 14): in the JSON report and the HTML page, newly failing first,
with both outputs side by side and their diff; untrusted outputs stay text; a missing baseline table is said."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pytest_promptgate.report.html import output_diff
from pytest_promptgate.verdicts import flipped_cases

APP = '''
from pathlib import Path

OUTPUTS = {
    "good": {"r1": "refund", "r2": "refund", "r3": "refund please", "r4": "refund"},
    "bad": {"r1": "refund", "r2": "<script>alert(1)</script></textarea> nope", "r3": "other", "r4": "other"},
}

def reply(vars):
    return OUTPUTS[Path("mode.txt").read_text().strip()][vars["id"]]
'''

EVAL = """
eval: routing
suites: [core]
prompts: {p: {template: "{{id}}"}}
target: flipapp:reply
threshold: 0.25
graders: [{type: equals, value: "{{expected}}"}]
cases:
  - {id: r1, vars: {id: r1}, expected: refund}
  - {id: r2, vars: {id: r2}, expected: refund}
  - {id: r3, vars: {id: r3}, expected: other}
  - {id: r4, vars: {id: r4}, expected: refund}
"""


class FlipPage(HTMLParser):
    """The flipped section as a reader sees it: each flip's case id and direction, its texts, the counts."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.flips: list[dict[str, str]] = []
        self.fields: dict[str, str] = {}
        self.tags: list[str] = []
        self.problems: list[str] = []
        self._field: str | None = None
        self._in: str | None = None  # the class of the <pre> or <p> being read
        self._section: str | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "section":
            self._section = a.get("id")
        if self._section != "flipped":
            return
        if tag == "div" and "data-case" in a:
            self.flips.append({"case": a["data-case"], "class": a["class"], "outputs": [], "diff": "", "reasons": []})
        elif tag == "span" and "data-field" in a:
            self._field = a["data-field"]
            self.fields[self._field] = ""
        elif tag in ("pre", "p") and a.get("class") in ("output", "diff", "reason", "problem"):
            self._in = a["class"]
            if self._in == "output":
                self.flips[-1]["outputs"].append("")
            elif self._in == "reason":
                self.flips[-1]["reasons"].append("")
            elif self._in == "problem":
                self.problems.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("pre", "p"):
            self._in = None
        if tag == "span":
            self._field = None

    def handle_data(self, data: str) -> None:
        if self._field is not None:
            self.fields[self._field] += data
        if self._in == "output":
            self.flips[-1]["outputs"][-1] += data
        elif self._in == "reason":
            self.flips[-1]["reasons"][-1] += data
        elif self._in == "diff":
            self.flips[-1]["diff"] += data
        elif self._in == "problem":
            self.problems[-1] += data


def session(pytester: pytest.Pytester, mode: str, *args: str) -> tuple[FlipPage, dict, str, int]:
    (pytester.path / "mode.txt").write_text(mode)
    # Under xdist in a process of its own, as from a shell: the workers import the target from the project.
    run = pytester.runpytest_subprocess if "-n" in args else pytester.runpytest
    result = run("--prompt-suite", "core", "--prompt-report", "out/evals.json", "--prompt-report-html", "out/evals.html",
                 *args)
    text = (pytester.path / "out/evals.html").read_text(encoding="utf-8")
    return FlipPage(text), json.loads((pytester.path / "out/evals.json").read_text()), text, result.ret


@pytest.fixture
def flip_project(project, pytester):
    pytester.makepyfile(flipapp=APP)
    project("routing.eval.yaml", EVAL)


@pytest.mark.parametrize(("agent", "args"), [("off", ()), ("on", ("-n", "2"))])
def test_a_regressing_session_shows_the_newly_failing_cases_first_with_both_outputs(
    flip_project, pytester, tracking_on, monkeypatch, agent, args,
):
    monkeypatch.setenv("PROMPTGATE_TRACKING_AGENT", agent)  # the baseline's table read in pytest's process, or the agent's
    first, report, _, ret = session(pytester, "good", *args)
    assert ret == 0
    assert report["flipped_cases"] == [] and first.flips == []  # the first run has no baseline to flip against
    page, report, text, ret = session(pytester, "bad", *args)
    [entry] = report["flipped_cases"]
    baseline = report["evals"][0]["baseline_run_id"]
    assert (entry["before_run_id"], entry["newly_failing"], entry["newly_passing"]) == (baseline, 2, 1)
    # the numbers in the page are the JSON report's, and the comparison's
    assert page.fields == {"newly_failing": "2", "newly_passing": "1"}
    assert (report["evals"][0]["broken_cases"], report["evals"][0]["fixed_cases"]) == (2, 1)
    assert [(f["case"], f["class"]) for f in page.flips] == [
        ("r2", "flip newly-failing"), ("r4", "flip newly-failing"), ("r3", "flip newly-passing")]
    assert [c["case_id"] for c in entry["cases"]] == ["r2", "r4", "r3"]
    r2 = page.flips[0]
    assert r2["outputs"] == ["refund", "<script>alert(1)</script></textarea> nope"]  # before, after: as text
    assert r2["reasons"][0].startswith("equals: FAIL")  # the after side's failed grader, with its reason
    assert "refund" in r2["reasons"][0]
    r3 = page.flips[2]
    assert r3["outputs"] == ["refund please", "other"] and r3["reasons"][0].startswith("equals: FAIL")
    assert '<del>refund</del><ins>&lt;script&gt;alert' in text  # the diff, escaped
    assert '<ins>other</ins>' in text
    assert page.tags.count("script") == 1 and "textarea" not in page.tags  # only the page's own filter script
    assert f"before: run {baseline}; after: this session" in text
    assert entry["cases"][0]["after"]["output"] == "<script>alert(1)</script></textarea> nope"
    assert entry["cases"][0]["vars"] == '{"id": "r2"}' and entry["cases"][0]["expected"] == "refund"


def test_a_baseline_without_its_results_table_is_said_and_the_session_goes_on(flip_project, pytester, tracking_on):
    from mlflow.tracking import MlflowClient

    session(pytester, "good")
    client = MlflowClient(tracking_on)
    [run] = client.search_runs([client.get_experiment_by_name("promptgate/routing").experiment_id])
    table = Path(run.info.artifact_uri.removeprefix("file://")) / "promptgate_results.json"
    table.unlink()
    page, report, _, ret = session(pytester, "good")
    assert ret == 0
    [entry] = report["flipped_cases"]
    assert entry["cases"] is None and entry["newly_failing"] is None
    assert entry["problem"] == f"baseline run {run.info.run_id} has no results table (promptgate_results.json)"
    assert page.problems == [f"flipped cases unavailable: {entry['problem']}"]


def test_an_unreadable_results_table_is_said_and_the_session_goes_on(flip_project, pytester, tracking_on):
    from mlflow.tracking import MlflowClient

    session(pytester, "good")
    client = MlflowClient(tracking_on)
    [run] = client.search_runs([client.get_experiment_by_name("promptgate/routing").experiment_id])
    (Path(run.info.artifact_uri.removeprefix("file://")) / "promptgate_results.json").write_text('{"rows": 1}')
    page, report, _, ret = session(pytester, "good")
    assert ret == 0
    [entry] = report["flipped_cases"]
    assert "is not a promptgate results table" in entry["problem"]
    assert page.problems == [f"flipped cases unavailable: {entry['problem']}"]


def test_flips_are_changes_of_passed_newly_failing_first():
    def row(case: str, passed: bool, output: str = "x", error: str | None = None) -> dict:
        return {"case_id": case, "passed": passed, "outcome": "error" if error else ("passed" if passed else "failed"),
                "output": output, "graders": "" if passed else "equals: FAIL (0.00) no", "error": error,
                "vars": "{}", "expected": None}

    before = [row("a", False), row("b", True), row("c", True), row("d", False), row("gone", True), row("e", True)]
    after = [row("e", False), row("a", True), row("b", False), row("c", True), row("d", False, error="boom"),
             row("new", False)]
    flips = flipped_cases(before, after)
    assert [(f.case_id, f.newly) for f in flips] == [("b", "failing"), ("e", "failing"), ("a", "passing")]
    assert flips[0].after.reasons == ("equals: FAIL (0.00) no",)
    assert flipped_cases(before, after[::-1]) == flips  # whatever order the cases finished in


def test_the_diff_escapes_every_piece_and_is_bounded():
    diff = output_diff("say <b>hi</b>", "say <i>hi</i>")
    assert diff == "say &lt;<del>b</del><ins>i</ins>&gt;hi&lt;/<del>b</del><ins>i</ins>&gt;"
    big = output_diff("A" * 1_000_000, "B" * 1_000_000)
    assert len(big) < 5_000 and big.endswith("… [diff of the first 2000 characters]")


def test_a_long_output_with_one_word_changed_diffs_as_that_word():
    words = [f"word{n % 37}" for n in range(250)]  # repetitive and long: difflib's autojunk would drop every word
    changed = [*words[:100], "CHANGED", *words[101:200], "ALSO", *words[201:]]
    diff = output_diff(" ".join(words), " ".join(changed))
    assert diff.count("<del>") == diff.count("<ins>") == 2
    assert f"<del>{words[100]}</del><ins>CHANGED</ins>" in diff and f"<del>{words[200]}</del><ins>ALSO</ins>" in diff
    cut = output_diff(" ".join(words * 2), " ".join(changed * 2))  # over 2 000 characters: cut, both ends differ
    assert f"<del>{words[100]}</del><ins>CHANGED</ins>" in cut and cut.endswith("[diff of the first 2000 characters]")


def test_chromium_shows_the_flips_as_text(flip_project, pytester, tracking_on, tmp_path):
    from chromium import chromium

    session(pytester, "good")
    session(pytester, "bad")
    with chromium(tmp_path) as browser:
        browser.open(pytester.path / "out/evals.html")
        assert browser.run("return Array.from(document.querySelectorAll('#flipped .flip'), f => f.dataset.case)") == [
            "r2", "r4", "r3"]
        assert browser.run("return document.querySelectorAll('#flipped del, #flipped ins').length") == 6
        shown = browser.run("return document.querySelector('.flip[data-case=r2] td:nth-child(2) pre.output').textContent")
        assert shown == "<script>alert(1)</script></textarea> nope"
        browser.run("document.getElementById('flipped').scrollIntoView()")
        browser.screenshot(tmp_path / "flipped.png")
        console = [entry for entry in browser.log("browser") if entry["level"] in ("SEVERE", "WARNING")]
    assert console == []
    assert (tmp_path / "flipped.png").read_bytes().startswith(b"\x89PNG")
