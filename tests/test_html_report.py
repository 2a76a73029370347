"""--prompt-report-html: one self-contained page whose numbers are the JSON report's, with untrusted outputs as text."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from chromium import chromium

EVAL = """
eval: routing
suites: [core]
prompts: {p: {template: "{{message}}"}}
target: app:async_label
variants: [{name: a}, {name: b, prompts: {p: {template: "x {{message}}"}}}]
threshold: 0.5
graders: [{type: equals, value: "{{expected}}", failure_mode: wrong_label}]
gates:
  on_fail: warn
  rules: [{metric: pass_rate, min: 0.9}]
cases:
  - {id: r1, vars: {message: "refund now"}, expected: refund}
  - {id: r2, vars: {message: "money back"}, expected: refund}
  - {id: r3, vars: {message: "hello"}, expected: refund}
"""

HOSTILE_APP = '''
def reply(vars):
    if vars["kind"] == "big":
        return "A" * 1_000_000 + "</textarea>"
    return "<script>alert(1)</script></textarea><img src=x onerror=alert(2)>"
'''

HOSTILE_EVAL = """
eval: hostile
suites: [core]
prompts: {p: {template: "{{kind}}"}}
target: hostile:reply
threshold: 0
graders: [{type: contains, value: "never there", failure_mode: missing}]
cases:
  - {id: script, vars: {kind: "<script>alert(3)</script>"}}
  - {id: big, vars: {kind: big}}
"""


class Page(HTMLParser):
    """What a reader of the page sees: the cards' fields, the case rows' cells, the tags and the page's text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.cards: dict[tuple[str, str], dict[str, str]] = {}
        #: The latency and cost table's cells, by (eval, variant) and field.
        self.figures: dict[tuple[str, str], dict[str, str]] = {}
        self.rows: list[dict[str, str]] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._card: dict[str, str] | None = None
        self._field: str | None = None
        self._cell: list[str] | None = None
        self._in_script = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "article":
            self._card = self.cards[(a["data-eval"], a["data-variant"])] = {}
        elif tag == "dd" and self._card is not None:
            self._field = a["data-field"]
            self._card[self._field] = ""
        elif tag == "tr" and "data-eval" in a and "data-outcome" not in a:
            self._card = self.figures[(a["data-eval"], a["data-variant"])] = {}
        elif tag == "td" and "data-field" in a and self._card is not None:
            self._field = a["data-field"]
            self._card[self._field] = ""
        elif tag == "tr" and "data-outcome" in a:
            self.rows.append({"eval": a["data-eval"], "variant": a["data-variant"], "outcome": a["data-outcome"],
                              "hidden": "hidden" in a, "cells": []})
        elif tag == "td" and self.rows:
            self._cell = []
        elif tag == "script":
            self._in_script = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("article", "tr"):
            self._card = None
        if tag in ("dd", "td"):
            self._field = None
        if tag == "td" and self._cell is not None:
            self.rows[-1]["cells"].append("".join(self._cell))
            self._cell = None
        elif tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)
        if self._field is not None and self._card is not None:
            self._card[self._field] += data
        if self._cell is not None:
            self._cell.append(data)


def percent(text: str) -> float:
    return float(text.rstrip("%")) / 100


def run(pytester: pytest.Pytester, *args: str, ret: int = 0) -> tuple[Page, dict, str]:
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-report", "out/evals.json",
                                "--prompt-report-html", "out/evals.html", *args)
    assert result.ret == ret, result.stdout.str()
    text = (pytester.path / "out/evals.html").read_text(encoding="utf-8")
    return Page(text), json.loads((pytester.path / "out/evals.json").read_text()), text


def test_the_cards_say_what_the_json_report_says(project, pytester, tracking_on):
    project("routing.eval.yaml", EVAL)
    run(pytester)  # the baseline
    page, report, text = run(pytester)
    assert set(page.cards) == {("routing", "a"), ("routing", "b")}
    for entry in report["evals"]:
        card = page.cards[(entry["eval"], entry["variant"])]
        assert percent(card["pass_rate"]) == pytest.approx(entry["pass_rate"], abs=5e-4)
        low, high = card["ci95"].split(" – ")
        assert [percent(low), percent(high)] == pytest.approx(entry["pass_rate_ci95"], abs=5e-4)
        assert percent(card["threshold"]) == pytest.approx(entry["threshold"])
        assert percent(card["baseline"]) == pytest.approx(entry["baseline_pass_rate"], abs=5e-4)
        assert float(card["delta"].removesuffix(" pp")) / 100 == pytest.approx(entry["delta"], abs=5e-4)
        assert float(card["p_value"].removeprefix("p=")) == pytest.approx(entry["p_value"], abs=5e-4)
        assert card["cases"] == f"{entry['passed']} passed, {entry['failed']} failed, 0 errors, 0 flaky"
        assert float(card["cost"].lstrip("$")) == pytest.approx(entry["cost_usd_total"], abs=5e-7)
        assert float(card["latency_p95"].removesuffix(" ms")) == pytest.approx(entry["latency_ms_p95"], abs=0.05)
        assert f'class="card verdict-{entry["verdict"]}"' in text
        figures = page.figures[(entry["eval"], entry["variant"])]
        assert float(figures["latency_p50"].removesuffix(" ms")) == pytest.approx(entry["latency_ms_p50"], abs=0.05)
        assert float(figures["latency_p95"].removesuffix(" ms")) == pytest.approx(entry["latency_ms_p95"], abs=0.05)
        assert float(figures["cost"].lstrip("$")) == pytest.approx(entry["cost_usd_total"], abs=5e-7)
        assert float(figures["cost_per_case"].lstrip("$")) == pytest.approx(entry["cost_usd_per_case"], abs=5e-7)
    assert "tripped (warn): pass_rate 0.666667 below min 0.9" in text
    assert len(page.rows) == len(report["cases"]) == 6
    assert sorted((r["variant"], r["cells"][2], r["outcome"]) for r in page.rows) == sorted(
        (c["variant"], c["case_id"], "passed" if c["passed"] else "failed") for c in report["cases"]
    )
    svg = {tag for tag, _ in page.tags if tag in ("svg", "rect", "line", "path", "circle")}
    assert svg == {"svg", "rect", "line", "path", "circle"}
    charts = [a.get("id") or a["class"] for tag, a in page.tags if tag == "svg"]
    assert charts == ["pass-rate-chart", "latency-chart", "cost-chart", "trend-chart"]
    assert sum(a.get("class", "").startswith("point") for tag, a in page.tags if tag == "circle") == 2
    assert sum(a.get("class") == "threshold" for tag, a in page.tags) == 2
    assert sum(a.get("class") == "baseline" for tag, a in page.tags) == 2
    assert not re.search(r"https?://", text)  # self-contained: nothing to fetch


def test_the_trend_marks_prompt_changes_and_the_page_is_logged_with_the_runs(project, pytester, tracking_on, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("PROMPTGATE_TRACKING_AGENT", "on")  # the trend is read, and the page logged, by the agent
    project("routing.eval.yaml", EVAL)
    run(pytester)
    run(pytester)
    project("routing.eval.yaml", EVAL.replace('template: "{{message}}"', 'template: "Label: {{message}}"'))
    page, report, text = run(pytester)
    [trend] = report["trend"]
    assert trend["eval"] == "routing"
    runs = trend["runs"]
    assert [r["variant"] for r in runs] == ["a", "b"] * 3  # this session's runs are the newest
    assert [r["run_id"] for r in runs[-2:]] == [e["run_id"] for e in report["evals"]]
    assert [r["prompts_changed"] for r in runs[:2]] == [None, None]  # nothing shown before them
    assert [r["prompts_changed"] for r in runs[2:4]] == [[], []]
    changed = runs[4]["prompts_changed"]
    assert [(c["name"], c["before"] != c["after"]) for c in changed] == [("p", True)]  # variant a's prompt only
    assert runs[5]["prompts_changed"] == []  # b has its own template, unchanged
    marks = [a for tag, a in page.tags if a.get("class") == "prompt-change"]
    assert len(marks) == 1
    assert f"p {changed[0]['before']} → {changed[0]['after']}" in text
    table = re.findall(r'<tr data-run-id="([0-9a-f]+)">.*?data-field="pass_rate">([0-9.]+)%<', text)
    assert [run_id for run_id, _ in table] == [r["run_id"] for r in runs]
    assert [float(rate) / 100 for _, rate in table] == pytest.approx([r["pass_rate"] for r in runs], abs=5e-4)
    assert sum(a.get("class", "").startswith("trend-point") for tag, a in page.tags) == 6
    client = MlflowClient(tracking_uri=tracking_on)
    for entry in report["evals"]:
        assert "evals.html" in [f.path for f in client.list_artifacts(entry["run_id"])]
        logged = client.download_artifacts(entry["run_id"], "evals.html", str(pytester.path / entry["variant"]))
        assert Path(logged).read_text(encoding="utf-8") == text


def test_untrusted_outputs_are_text_and_bounded(project, pytester):
    pytester.makepyfile(hostile=HOSTILE_APP)
    project("hostile.eval.yaml", HOSTILE_EVAL)
    page, report, text = run(pytester, "--prompt-no-tracking")
    assert [tag for tag, _ in page.tags].count("script") == 1  # the page's own filter script, nothing else
    assert "alert" not in "".join(page.scripts)
    assert not any(tag in ("img", "textarea") for tag, _ in page.tags)
    script, big = sorted(page.rows, key=lambda r: r["cells"][2], reverse=True)
    assert "<script>alert(1)</script></textarea><img src=x onerror=alert(2)>" in script["cells"][7]
    assert '"kind": "<script>alert(3)</script>"' in script["cells"][5]
    # the 1 MB line, cut to 2 000 characters, says how many of its characters are not shown (not of the record's cut)
    assert re.fullmatch(r"A{2000}… \[998011 chars cut\]", big["cells"][7])
    assert "<td>missing</td>" in text  # the failure modes' table
    assert len(text) < 60_000
    assert report["cases"][0]["runs"][0]["output"].startswith("<script>")  # the JSON keeps the output as it was


def test_the_table_shows_the_first_500_cases_of_many(project, pytester):
    cases = "".join(f"  - {{id: c{n}, vars: {{message: 'refund {n}'}}, expected: refund}}\n" for n in range(501))
    project("many.eval.yaml", "eval: many\nsuites: [core]\nprompts: {p: {template: '{{message}}'}}\n"
            "target: app:label\nthreshold: 0.5\ngraders: [{type: equals, value: '{{expected}}'}]\ncases:\n" + cases)
    page, report, text = run(pytester)
    assert len(page.rows) == len(report["cases"]) == 501  # the page holds every case, for the filter to find
    assert [row["hidden"] for row in page.rows] == [False] * 500 + [True]
    assert '<span id="shown">500</span> of <span id="matching">501</span>' in text
    assert any(tag == "button" and a.get("id") == "more" and "hidden" not in a for tag, a in page.tags)


def test_a_page_over_its_limit_holds_the_failures_first_and_says_where_the_rest_are(project, pytester, monkeypatch):
    """100 000 cases made a 47 MB page: the page holds MAX_PAGE_CASES (here 10), failed and error cases first."""
    from pytest_promptgate.report import html

    monkeypatch.setattr(html, "MAX_PAGE_CASES", 10)
    cases = "".join(f"  - {{id: c{n}, vars: {{message: 'refund {n}'}}, expected: {'refund' if n % 7 else 'other'}}}\n"
                    for n in range(30))
    project("many.eval.yaml", "eval: many\nsuites: [core]\nprompts: {p: {template: '{{message}}'}}\n"
            "target: app:label\nthreshold: 0.5\ngraders: [{type: equals, value: '{{expected}}'}]\ncases:\n" + cases)
    page, report, text = run(pytester)
    assert len(report["cases"]) == 30  # the JSON report holds every case
    failing = [c["case_id"] for c in report["cases"] if not c["passed"]]
    assert failing == ["c0", "c7", "c14", "c21", "c28"]
    shown = [row["cells"][2] for row in page.rows]
    assert len(shown) == 10 and set(failing) <= set(shown)
    assert shown == [c["case_id"] for c in report["cases"] if c["case_id"] in shown]  # in the session's order
    assert shown[:6] == ["c0", "c1", "c2", "c3", "c4", "c5"]  # then the first passing ones
    assert ("This page holds 10 of the session's 30 cases: every failed, error and flaky one (5) first, then passing "
            "ones. The JSON report (--prompt-report) and each run's results table in MLflow hold them all.") in text
    assert '<span id="matching">10</span>' in text


def test_written_with_tracking_off_from_the_ini_setting(project, pytester):
    project("routing.eval.yaml", EVAL)
    project("tox.ini", "[pytest]\npromptgate_report_html = reports/evals.html\n")
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-no-tracking")
    assert result.ret == 0
    page = Page((pytester.path / "reports/evals.html").read_text(encoding="utf-8"))
    assert page.cards[("routing", "a")]["baseline"] == "off (tracking off)"
    assert page.cards[("routing", "a")]["delta"] == "-"


def test_written_when_the_tracking_server_is_down(project, pytester, tracking_on):
    project("routing.eval.yaml", EVAL)
    page, report, _ = run(pytester, "--prompt-tracking-uri", "http://127.0.0.1:9")
    assert report["tracking"]["state"] == "unavailable"
    assert page.cards[("routing", "b")]["baseline"] == "unavailable"
    assert report["trend"] is None
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-tracking-uri", "http://127.0.0.1:9",
                                "--prompt-report-html", "out/again.html")
    result.stdout.fnmatch_lines(["the HTML report is not logged with the 2 run(s) kept on disk (MLflow was not reached); "
                                 f"it is at {pytester.path / 'out/again.html'}"])


def test_a_page_that_cannot_be_written_fails_the_session(project, pytester):
    project("routing.eval.yaml", EVAL)
    Path(pytester.path / "blocked").write_text("a file, not a directory")
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-no-tracking", "--prompt-report-html", "blocked/r.html")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["promptgate: could not write the report */blocked/r.html: *"])


def test_chromium_opens_the_page_from_disk_and_filters_the_cases(project, pytester, tmp_path, tracking_on):
    pytester.makepyfile(hostile=HOSTILE_APP)
    project("hostile.eval.yaml", HOSTILE_EVAL)
    project("routing.eval.yaml", EVAL)
    run(pytester)
    run(pytester)  # a trend of two sessions
    page = pytester.path / "out/evals.html"
    with chromium(tmp_path) as browser:
        browser.open(page)
        assert browser.run("return document.querySelectorAll('#pass-rate-chart rect.bar').length") == 3
        assert browser.run("return document.querySelectorAll('#pass-rate-chart .threshold').length") == 3
        assert browser.run("return document.querySelectorAll('#pass-rate-chart .whisker').length") == 3
        assert browser.run("return document.querySelectorAll('#latency-chart rect.p95').length") == 3
        assert browser.run("return document.querySelectorAll('#cost-chart circle.point').length") == 2  # hostile: no cost
        assert browser.run("return document.querySelectorAll('svg.trend-chart').length") == 2  # an eval each
        assert browser.run("return document.querySelectorAll('svg.trend-chart polyline.trend-line').length") == 3
        size = "return document.getElementById('cost-chart').getBoundingClientRect().width"
        assert browser.run(size) > 0  # laid out, not just present
        visible = "return Array.from(document.querySelectorAll('#cases tbody tr')).filter(r => r.offsetHeight > 0).length"
        assert browser.run(visible) == 8
        browser.type("#filter-text", "hello")
        assert browser.run(visible) == 2  # r3 of each routing variant
        assert browser.run("return document.getElementById('shown').textContent") == "2"
        browser.run("var s = document.getElementById('filter-variant'); s.value = 'b';"
                    " s.dispatchEvent(new Event('input'))")
        assert browser.run(visible) == 1
        assert browser.run("return document.querySelectorAll('img').length") == 0  # the hostile <img onerror> is text
        browser.screenshot(tmp_path / "report.png")
        console = [entry for entry in browser.log("browser") if entry["level"] in ("SEVERE", "WARNING")]
        requests = [json.loads(entry["message"])["message"] for entry in browser.log("performance")]
    assert console == []
    urls = [m["params"]["request"]["url"] for m in requests if m["method"] == "Network.requestWillBeSent"]
    # from the page's own request on, nothing else (what comes before is the browser's new-tab page)
    assert urls[urls.index(page.as_uri()):] == [page.as_uri()]
    assert (tmp_path / "report.png").read_bytes().startswith(b"\x89PNG")
