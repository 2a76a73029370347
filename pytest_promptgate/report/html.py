"""The HTML report: one self-contained page a reviewer opens from a CI artifact (``--prompt-report-html PATH``).

Rendered from the JSON report's data, so every number on the page is the one the
JSON report holds. No network: the CSS is inline, the charts are inline SVG and the
only script filters the case table. Model outputs, vars, expected values and
reasons are untrusted text: each is escaped, and cut at :data:`MAX_CELL_CHARS`.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from ..results import label_text
from ..verdicts import BestVariant, EvalCheck, FlippedCases, RunComparison, SessionOutcome, format_p
from .json import compare_json, json_report
from .summary import compared_p, note_lines, run_date, versions_text

if TYPE_CHECKING:
    from ..improve import Findings
    from ..tracking import TrackingStatus

#: Longest text a cell of the page shows (an output, vars, a reason); longer text is cut with a marker, so a
#: 1 MB output costs the page 2 000 characters.
MAX_CELL_CHARS = 2_000

#: Case rows shown at once; the filter shows the first this many that match, and a button the next this many.
#: Laying out every row of 10 000 cost Chromium seconds (docs/html-report.md); the page holds them all.
PAGE_ROWS = 500

#: Flipped cases shown per (eval, variant); the JSON report holds them all.
MAX_FLIPS_SHOWN = 100

#: The chart's geometry, in SVG user units: where the pass-rate axis starts and how wide it is, the height of a row.
_AXIS_X, _AXIS_WIDTH, _ROW_HEIGHT = 220, 460, 30


def html_report(
    checks: Sequence[EvalCheck], outcome: SessionOutcome, cases: Sequence[Mapping[str, Any]],
    best: Sequence[BestVariant] = (), tracking: TrackingStatus | None = None, findings: Findings | None = None,
    flipped: Sequence[FlippedCases] = (),
) -> str:
    """The session as one HTML page: verdict cards, the pass-rate chart, the flipped cases, failure modes,
    every case."""
    data = json_report(checks, outcome, cases, best, tracking, findings, flipped)
    notes = note_lines(checks, best, tracking) + (findings.lines() if findings else [])
    verdict_class = "passed" if data["passed"] else "failed"
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>promptgate report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>promptgate</h1>",
        f'<p id="conclusion" class="{verdict_class}">{escape(data["conclusion"])}</p>',
        _cards(data["evals"], data["tracking"]),
        _chart(data["evals"]),
        flipped_section(data["flipped_cases"]),
        _notes(notes),
        _failure_modes(data["evals"]),
        _case_table(data["cases"]),
        f"<script>{_SCRIPT}</script>",
        "</body></html>",
    ]) + "\n"


def bounded(text: str, limit: int = MAX_CELL_CHARS) -> str:
    """``text`` escaped for HTML and cut at ``limit`` characters, saying how much was cut."""
    if len(text) > limit:
        text = text[:limit] + f"… [{len(text) - limit} chars cut]"
    return escape(text)


def _cards(evals: Sequence[Mapping[str, Any]], tracking: Mapping[str, Any] | None) -> str:
    return '<section id="cards">' + "".join(_card(e, tracking) for e in evals) + "</section>"


def _card(e: Mapping[str, Any], tracking: Mapping[str, Any] | None) -> str:
    """One (eval, variant): its verdict and the figures that decided it."""
    verdict = e["verdict"] or "?"
    ci = e["pass_rate_ci95"]
    fields = [
        ("pass_rate", "pass rate", _rate(e["pass_rate"])),
        ("ci95", "95% interval", _interval(ci)),
        ("threshold", "threshold", _rate(e["threshold"]) if e["threshold"] is not None else "?"),
        ("baseline", "baseline", _rate(e["baseline_pass_rate"]) if e["baseline_pass_rate"] is not None
         else _no_baseline(e, tracking)),
        ("delta", "delta", f"{e['delta'] * 100:+.1f} pp" if e["delta"] is not None else "-"),
        ("p_value", "p-value", format_p(e["p_value"]) if e["p_value"] is not None else "-"),
        ("cases", "cases", f"{e['passed']} passed, {e['failed']} failed, {e['errors']} errors, {e['flaky']} flaky"
         + (f" ({e['cases']} of {e['dataset_size']}: partial)" if e["partial"] else "")),
        ("cost", "cost", f"${e['cost_usd_total']:.6f}" if e["cost_usd_total"] is not None else "-"),
        ("latency_p95", "p95 latency", f"{e['latency_ms_p95']:.1f} ms" if e["latency_ms_p95"] is not None else "-"),
    ]
    rows = "".join(f'<dt>{label}</dt><dd data-field="{key}">{escape(text)}</dd>' for key, label, text in fields)
    gates = "".join(
        f'<li class="{"held" if g["passed"] else "tripped"}">{"held" if g["passed"] else "tripped"} '
        f'({escape(g["on_fail"])}): {bounded(g["reason"] or g["metric"])}</li>'
        for g in e["gates"]
    )
    first = " (first run)" if e["first_run"] else ""
    return (
        f'<article class="card verdict-{escape(verdict)}" data-eval="{escape(e["eval"])}" '
        f'data-variant="{escape(e["variant"])}">'
        f'<h2>{escape(e["eval"])} <span class="variant">[{escape(e["variant"])}]</span> '
        f'<span class="verdict">{escape(verdict)}{first}</span></h2>'
        f'<p class="reason">{bounded(e["verdict_reason"] or "")}</p><dl>{rows}</dl>'
        + (f'<ul class="gates">{gates}</ul>' if gates else "") + "</article>"
    )


def _no_baseline(e: Mapping[str, Any], tracking: Mapping[str, Any] | None) -> str:
    """The baseline of a card compared with nothing, in the summary table's words."""
    if tracking is not None and tracking["state"] == "off":
        return "off (tracking off)"
    return "- (first run)" if e["first_run"] in (None, True) else "unavailable"


def _chart(evals: Sequence[Mapping[str, Any]]) -> str:
    """Pass rate by variant: a bar per (eval, variant), its 95% interval as a whisker, the threshold as a dashed
    line, the baseline's pass rate as a diamond."""
    if not evals:
        return ""
    height = _ROW_HEIGHT * len(evals) + 30
    parts = [f'<svg id="pass-rate-chart" role="img" viewBox="0 0 700 {height}" width="700" height="{height}">',
             "<title>pass rate by variant, with 95% intervals, thresholds and baselines</title>"]
    for tick in (0, 0.25, 0.5, 0.75, 1):
        x = _x(tick)
        parts.append(f'<line class="grid" x1="{x}" y1="0" x2="{x}" y2="{height - 20}"/>'
                     f'<text class="tick" x="{x}" y="{height - 6}">{tick:.0%}</text>')
    for row, e in enumerate(evals):
        top = row * _ROW_HEIGHT + 4
        middle = top + 11
        label = f'{e["eval"]} [{e["variant"]}]'
        parts.append(f'<text class="label" x="{_AXIS_X - 8}" y="{middle + 4}">{bounded(label, 40)}</text>')
        parts.append(f'<rect class="bar verdict-{escape(e["verdict"] or "none")}" x="{_AXIS_X}" y="{top}" '
                     f'width="{_x(e["pass_rate"]) - _AXIS_X:.1f}" height="22"><title>{escape(label)}: '
                     f'{_rate(e["pass_rate"])}</title></rect>')
        if e["pass_rate_ci95"]:
            low, high = (_x(bound) for bound in e["pass_rate_ci95"])
            parts.append(f'<path class="whisker" d="M{low:.1f} {middle}H{high:.1f}M{low:.1f} {middle - 5}V{middle + 5}'
                         f'M{high:.1f} {middle - 5}V{middle + 5}"/>')
        if e["threshold"] is not None:
            x = _x(e["threshold"])
            parts.append(f'<line class="threshold" x1="{x:.1f}" y1="{top - 2}" x2="{x:.1f}" y2="{top + 24}">'
                         f'<title>threshold {_rate(e["threshold"])}</title></line>')
        if e["baseline_pass_rate"] is not None:
            x = _x(e["baseline_pass_rate"])
            parts.append(f'<path class="baseline" d="M{x:.1f} {middle - 6}l5 6l-5 6l-5 -6z">'
                         f'<title>baseline {_rate(e["baseline_pass_rate"])}</title></path>')
    parts.append("</svg>")
    legend = ('<p class="legend">bar: pass rate; whisker: 95% interval; dashed line: threshold; '
              "diamond: baseline's pass rate</p>")
    return '<section id="chart"><h2>Pass rate by variant</h2>' + "".join(parts) + legend + "</section>"


def flipped_section(entries: Sequence[Mapping[str, Any]], title: str = "Flipped cases against the baseline") -> str:
    """The cases whose outcome changed between two runs (JSON report entries, :func:`flipped_json`), newly failing
    first: vars, expected, both outputs side by side with their diff, and each side's reasons."""
    if not entries:
        return ""
    return f'<section id="flipped"><h2>{escape(title)}</h2>' + "".join(_flipped(e) for e in entries) + "</section>"


def _flipped(e: Mapping[str, Any]) -> str:
    """One (eval, variant)'s flips, at most :data:`MAX_FLIPS_SHOWN` of them."""
    before = f"before: run {e['before_run_id']}"
    after = f"after: run {e['after_run_id']}" if e["after_run_id"] else "after: this session"
    head = (f'<div class="flips" data-eval="{escape(e["eval"])}" data-variant="{escape(e["variant"])}">'
            f'<h3>{escape(e["eval"])} <span class="variant">[{escape(e["variant"])}]</span></h3>')
    if e["cases"] is None:
        return head + f'<p class="problem">flipped cases unavailable: {bounded(e["problem"] or "unknown")}</p></div>'
    counts = (f'<p class="flip-counts"><span data-field="newly_failing">{e["newly_failing"]}</span> newly failing, '
              f'<span data-field="newly_passing">{e["newly_passing"]}</span> newly passing '
              f"({escape(before)}; {escape(after)})</p>")
    shown = e["cases"][:MAX_FLIPS_SHOWN]
    more = len(e["cases"]) - len(shown)
    rest = f'<p class="more">{more} more flipped case(s) are in the JSON report</p>' if more else ""
    return head + counts + "".join(_flip(flip, before, after) for flip in shown) + rest + "</div>"


def _flip(flip: Mapping[str, Any], before: str, after: str) -> str:
    """One flipped case: what it asked, both runs' outputs side by side, their diff, each side's reasons."""
    old, new = flip["before"], flip["after"]
    sides = "".join(
        f'<td class="side"><p class="outcome">{escape(label)}: '
        f'<span class="{escape(side["outcome"])}">{escape(side["outcome"])}</span></p>'
        f'<pre class="output">{bounded(side["output"] or "")}</pre>'
        + "".join(f'<pre class="reason">{bounded(r)}</pre>' for r in side["reasons"]) + "</td>"
        for label, side in ((before, old), (after, new))
    )
    return (
        f'<div class="flip newly-{escape(flip["newly"])}" data-case="{escape(flip["case_id"])}">'
        f'<h4>{bounded(flip["case_id"], 200)}: newly {escape(flip["newly"])} '
        f'({escape(old["outcome"])} → {escape(new["outcome"])})</h4>'
        f'<dl><dt>vars</dt><dd><pre>{bounded(flip["vars"] or "")}</pre></dd>'
        f'<dt>expected</dt><dd><pre>{bounded(flip["expected"] or "")}</pre></dd></dl>'
        f'<table class="sides"><tbody><tr>{sides}</tr><tr><td colspan="2"><p class="outcome">diff</p>'
        f'<pre class="diff">{output_diff(old["output"] or "", new["output"] or "")}</pre></td></tr></tbody></table></div>'
    )


#: Token pairs up to which the diff matches every token (about 250 tokens, some 1 000 characters, a side).
_EXACT_DIFF_PAIRS = 60_000

_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")


def output_diff(before: str, after: str, limit: int = MAX_CELL_CHARS) -> str:
    """The word-level diff of two outputs as escaped HTML: removed text in ``<del>``, added text in ``<ins>``.

    Only the first ``limit`` characters of each are compared (and said so), which bounds the page. The
    common start and end are set aside first, so one changed word in a long output is found exactly. In
    between, difflib's matching grows with the square of the tokens: up to :data:`_EXACT_DIFF_PAIRS` token
    pairs every token is matched (40 ms at most, measured); beyond, difflib's autojunk (tokens in over 1% of a
    long text only extend matches) keeps it near a millisecond, where matching every token of two unrelated
    2 000-character outputs took 0.4 s.
    """
    cut = len(before) > limit or len(after) > limit
    a, b = _TOKEN.findall(before[:limit]), _TOKEN.findall(after[:limit])
    head = 0
    while head < min(len(a), len(b)) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < min(len(a), len(b)) - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    middle_a, middle_b = a[head:len(a) - tail], b[head:len(b) - tail]
    parts = [escape("".join(a[:head]))]
    exact = len(middle_a) * len(middle_b) <= _EXACT_DIFF_PAIRS
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, middle_a, middle_b, autojunk=not exact).get_opcodes():
        if op == "equal":
            parts.append(escape("".join(middle_a[i1:i2])))
            continue
        if i2 > i1:
            parts.append(f"<del>{escape(''.join(middle_a[i1:i2]))}</del>")
        if j2 > j1:
            parts.append(f"<ins>{escape(''.join(middle_b[j1:j2]))}</ins>")
    parts.append(escape("".join(a[len(a) - tail:])))
    if cut:
        parts.append(f"… [diff of the first {limit} characters]")
    return "".join(parts)


def compare_html(rc: RunComparison) -> str:
    """``--prompt-compare`` as one HTML page: both runs, the comparison, and the flipped section of the report."""
    data = compare_json(rc)
    rows = "".join(
        f'<tr data-run="{role}"><th>{role}</th><td>{escape(r["run_id"])}</td><td>{run_date(r["start_time_ms"])}</td>'
        f'<td>{bounded(versions_text(r["prompt_versions"]), 200)}</td>'
        f'<td class="number">{_of(r["passed"], r["cases"])}</td>'
        f'<td class="number" data-field="pass_rate">{_rate(r["pass_rate"]) if r["pass_rate"] is not None else "-"}</td>'
        f'<td class="number" data-field="ci95">{_interval(r["pass_rate_ci95"])}</td></tr>'
        for role, r in (("before", data["before"]), ("after", data["after"]))
    )
    delta = f"{data['delta'] * 100:+.1f} pp" if data["delta"] is not None else "-"
    title = f'{data["eval"]} [{data["variant"]}]'
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>promptgate compare: {escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>promptgate compare: {escape(title)}</h1>",
        ('<section id="runs"><table><thead><tr><th></th><th>run</th><th>started</th><th>prompts</th>'
         f"<th>passed/cases</th><th>pass rate</th><th>95% interval</th></tr></thead><tbody>{rows}</tbody></table>"
         f'<p>delta <span data-field="delta">{delta}</span>, '
         f'<span data-field="p_value">{escape(compared_p(data))}</span></p></section>'),
        flipped_section([data["flipped_cases"]], title="Flipped cases"),
        "</body></html>",
    ]) + "\n"


def _of(passed: int | None, total: int | None) -> str:
    return f"{passed}/{total}" if total is not None else "-"


def _interval(ci: Sequence[float] | None) -> str:
    return f"{_rate(ci[0])} – {_rate(ci[1])}" if ci else "-"


def _x(rate: float) -> float:
    return _AXIS_X + rate * _AXIS_WIDTH


def _notes(notes: Sequence[str]) -> str:
    if not notes:
        return ""
    return '<section id="notes"><h2>Notes</h2><ul>' + "".join(f"<li>{bounded(n)}</li>" for n in notes) + "</ul></section>"


def _failure_modes(evals: Sequence[Mapping[str, Any]]) -> str:
    """How many cases of each variant failed in each failure mode (the graders' ``failure_mode``)."""
    rows = [
        f"<tr><td>{escape(e['eval'])}</td><td>{escape(e['variant'])}</td><td>{bounded(mode)}</td>"
        f'<td class="number">{count}</td><td class="number">{_rate(count / e["cases"]) if e["cases"] else "-"}</td></tr>'
        for e in evals
        for mode, count in sorted(e["failure_modes"].items(), key=lambda item: -item[1])
    ]
    if not rows:
        return ""
    return ('<section id="failure-modes"><h2>Failure modes</h2><table><thead><tr><th>eval</th><th>variant</th>'
            "<th>failure mode</th><th>cases</th><th>share</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></section>")


def _case_table(cases: Sequence[Mapping[str, Any]]) -> str:
    """Every case, with the controls that filter it by eval, variant, outcome and text."""
    controls = "".join(
        f'<label>{name} <select id="filter-{name}" name="{name}"><option value="">all</option>'
        + "".join(f'<option value="{escape(v)}">{bounded(v, 80)}</option>' for v in values) + "</select></label>"
        for name, values in (
            ("eval", dict.fromkeys(c["eval"] for c in cases)),
            ("variant", dict.fromkeys(c["variant"] for c in cases)),
            ("outcome", ("passed", "failed", "error")),
        )
    )
    return (
        '<section id="cases"><h2>Cases</h2><p class="controls">' + controls
        + '<label>text <input id="filter-text" type="search" placeholder="output, vars, reason…"></label> '
        f'<span id="shown">{min(len(cases), PAGE_ROWS)}</span> of <span id="matching">{len(cases)}</span> '
        f'matching case(s) shown <button id="more" type="button"{"" if len(cases) > PAGE_ROWS else " hidden"}>'
        f"show {PAGE_ROWS} more</button></p>"
        "<table><thead><tr><th>eval</th><th>variant</th><th>case</th><th>outcome</th><th>score</th>"
        "<th>vars</th><th>expected</th><th>output</th><th>reasons</th><th>ms</th></tr></thead><tbody>"
        + "".join(_case_row(c, shown=n < PAGE_ROWS) for n, c in enumerate(cases)) + "</tbody></table></section>"
    )


def _case_row(case: Mapping[str, Any], shown: bool) -> str:
    outcome = "error" if case["error"] is not None else ("passed" if case["passed"] else "failed")
    runs = case["runs"]
    outputs = "".join(f"<pre>{bounded(run['output'])}</pre>" for run in runs)
    reasons = [case["error"]] if case["error"] is not None else []
    reasons += [f"{g['name']}: {g['reason']}" for run in runs for g in run["graders"] if not g["passed"]]
    reasons += ["label " + label_text(label) for label in case.get("labels", ())]
    latency = ", ".join(f"{run['latency_ms']:.0f}" for run in runs)
    score = f"{case['score']:.3f}" if case["score"] is not None else "-"
    return (
        f'<tr data-eval="{escape(case["eval"])}" data-variant="{escape(case["variant"])}" data-outcome="{outcome}"{"" if shown else " hidden"}>'
        f"<td>{escape(case['eval'])}</td><td>{escape(case['variant'])}</td><td>{bounded(case['case_id'], 200)}</td>"
        f'<td class="{outcome}">{outcome}{" (flaky)" if case["flaky"] else ""}</td><td class="number">{score}</td>'
        f"<td><pre>{bounded(_text(case['vars']))}</pre></td><td><pre>{bounded(_text(case['expected']))}</pre></td>"
        f"<td>{outputs}</td><td>{''.join(f'<pre>{bounded(r)}</pre>' for r in reasons)}</td>"
        f'<td class="number">{latency}</td></tr>'
    )


def _text(value: Any) -> str:
    """Vars and expected values as a reader knows them: strings as they are, anything else as JSON."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _rate(value: float) -> str:
    return f"{value:.1%}"


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
h1{margin:0 0 .3em}h2{font-size:1.1em;margin:1.2em 0 .4em}
#conclusion{font-weight:600;padding:.5em .8em;border-radius:4px}
.passed{color:#176b2c}.failed,.error{color:#a4161a}
#conclusion.passed{background:#e6f4ea}#conclusion.failed{background:#fde8e8}
#cards{display:flex;flex-wrap:wrap;gap:.8em}
.card{border:1px solid #ccc;border-left:6px solid #999;border-radius:4px;padding:.3em .9em .6em;min-width:260px;max-width:380px}
.card h2{margin:.3em 0}.card .variant{color:#555;font-weight:normal}
.card .verdict{float:right;font-size:.85em;padding:0 .4em;border-radius:3px;background:#eee}
.card .reason{color:#444;font-size:.9em;margin:.2em 0}
.card dl{display:grid;grid-template-columns:auto 1fr;gap:.1em .8em;margin:.4em 0}
.card dt{color:#555}.card dd{margin:0;font-variant-numeric:tabular-nums}
.gates{margin:.3em 0;padding-left:1.2em;font-size:.9em}.gates .tripped{color:#a4161a}
.verdict-PASS{border-left-color:#2e7d32}.verdict-IMPROVED{border-left-color:#1565c0}
.verdict-WARNING{border-left-color:#ef8f00}.verdict-REGRESSION{border-left-color:#c62828}
svg text{font:12px system-ui,sans-serif}svg .label{text-anchor:end}svg .tick{text-anchor:middle;fill:#666}
svg .grid{stroke:#e3e3e3}svg .bar{fill:#90a4ae}svg .bar.verdict-PASS{fill:#81c784}
svg .bar.verdict-IMPROVED{fill:#64b5f6}svg .bar.verdict-WARNING{fill:#ffb74d}svg .bar.verdict-REGRESSION{fill:#e57373}
svg .whisker{stroke:#222;stroke-width:1.5;fill:none}svg .threshold{stroke:#000;stroke-dasharray:3 2;stroke-width:2}
svg .baseline{fill:#6a1b9a}.legend{color:#555;font-size:.85em}
table{border-collapse:collapse;font-size:.9em}th,td{border:1px solid #ddd;padding:.2em .4em;vertical-align:top;text-align:left}
th{background:#f4f4f4;position:sticky;top:0}td.number{text-align:right;font-variant-numeric:tabular-nums}
pre{margin:0;white-space:pre-wrap;word-break:break-word;max-width:40em;font-size:.95em}
.controls label{margin-right:1em}
.flip{border:1px solid #ddd;border-left:6px solid #999;border-radius:4px;margin:.6em 0;padding:.2em .8em .6em}
.flip.newly-failing{border-left-color:#c62828}.flip.newly-passing{border-left-color:#2e7d32}
.flip h4{margin:.3em 0}.flip dl{display:grid;grid-template-columns:auto 1fr;gap:.1em .8em;margin:.3em 0}
.flip dd{margin:0}.sides{width:100%;table-layout:fixed}.sides td{width:50%}.side .outcome,.flip .outcome{margin:0;color:#555}
.diff del{background:#fde8e8;color:#a4161a}.diff ins{background:#e6f4ea;color:#176b2c;text-decoration:none}
.problem{color:#a4161a}
"""

#: Filters the case table, showing the first ``PAGE_ROWS`` rows that match (more on request); the row texts are
#: lowered once, so a keystroke over 10 000 rows stays quick.
_SCRIPT = """
(function () {
  var rows = Array.prototype.slice.call(document.querySelectorAll("#cases tbody tr"));
  var texts = rows.map(function (row) { return row.textContent.toLowerCase(); });
  var selects = ["eval", "variant", "outcome"].map(function (name) { return document.getElementById("filter-" + name); });
  var text = document.getElementById("filter-text"), more = document.getElementById("more");
  var page = %d, limit = page;
  function apply() {
    var query = text.value.trim().toLowerCase(), matching = 0;
    for (var i = 0; i < rows.length; i++) {
      var keep = !query || texts[i].indexOf(query) >= 0;
      for (var j = 0; keep && j < selects.length; j++) {
        keep = !selects[j].value || rows[i].dataset[selects[j].name] === selects[j].value;
      }
      if (keep) { matching++; }
      rows[i].hidden = !keep || matching > limit;
    }
    document.getElementById("shown").textContent = String(Math.min(matching, limit));
    document.getElementById("matching").textContent = String(matching);
    more.hidden = matching <= limit;
  }
  selects.concat([text]).forEach(function (control) {
    control.addEventListener("input", function () { limit = page; apply(); });
  });
  more.addEventListener("click", function () { limit += page; apply(); });
})();
""" % PAGE_ROWS
