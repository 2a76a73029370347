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
    from ..tracking import EvalHistory, TrackingStatus

#: Longest text a cell of the page shows (an output, vars, a reason); longer text is cut with a marker, so a
#: 1 MB output costs the page 2 000 characters.
MAX_CELL_CHARS = 2_000

#: Case rows shown at once; the filter shows the first this many that match, and a button the next this many.
#: Laying out every row of 10 000 cost Chromium seconds (docs/html-report.md); the page holds them all.
PAGE_ROWS = 500

#: Cases the page holds at most: every failed, error and flaky case first, then passing ones, up to this many.
#: A page of 10 000 loads in about 2 s in Chromium; 100 000 cases made a 47 MB page (docs/html-report.md). The
#: JSON report and each run's MLflow results table hold every case.
MAX_PAGE_CASES = 10_000

#: Flipped cases shown per (eval, variant); the JSON report holds them all.
MAX_FLIPS_SHOWN = 100

#: The chart's geometry, in SVG user units: where the pass-rate axis starts and how wide it is, the height of a row.
_AXIS_X, _AXIS_WIDTH, _ROW_HEIGHT = 220, 460, 30


def html_report(
    checks: Sequence[EvalCheck], outcome: SessionOutcome, cases: Sequence[Mapping[str, Any]],
    best: Sequence[BestVariant] = (), tracking: TrackingStatus | None = None, findings: Findings | None = None,
    flipped: Sequence[FlippedCases] = (), history: Mapping[str, EvalHistory] | None = None,
    promotion: Mapping[str, Any] | None = None, extra: Sequence[str] = (),
) -> str:
    """The session as one HTML page: verdict cards, the charts, the flipped cases, the trend, the promotion,
    failure modes, every case.

    The keyword arguments as for :func:`~pytest_promptgate.report.json.json_report`; ``extra``: sections other
    rooms render (``--prompt-optimize``'s), already escaped, placed after the case table.
    """
    data = json_report(checks, outcome, cases, best, tracking, findings, flipped, history, promotion)
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
        _promotion(data["promotion"]),
        _cards(data["evals"], data["tracking"]),
        _chart(data["evals"]),
        _latency_and_cost(data["evals"]),
        flipped_section(data["flipped_cases"]),
        _trend(data["trend"]),
        _notes(notes),
        _failure_modes(data["evals"]),
        _case_table(data["cases"]),
        *extra,
        f"<script>{_SCRIPT}</script>",
        "</body></html>",
    ]) + "\n"


def bounded(text: str, limit: int = MAX_CELL_CHARS, length: int | None = None) -> str:
    """``text`` escaped for HTML and cut at ``limit`` characters, saying how much was cut.

    ``length`` is the text's length before an earlier cut (a case result's ``output_chars``), so the count is
    of the characters the reader does not see, not of what was left after the first cut.
    """
    length = len(text) if length is None else length
    if length > limit:
        text = text[:limit] + f"… [{length - limit} chars cut]"
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
        ("p_adjusted", "adjusted p", f'{format_p(e["p_adjusted"])} ({e["correction"]})' if e["p_adjusted"] is not None
         else "-"),
        ("detectable_change", "detects", f'{e["detectable_change"] * 100:.1f} pp' if e["detectable_change"] is not None
         else "-"),
        ("cases", "cases", f"{e['passed']} passed, {e['failed']} failed, {e['errors']} errors, {e['flaky']} flaky"
         + (f" ({e['cases']} of {e['dataset_size']}: partial)" if e["partial"] else "")),
        ("cost", "cost", _usd(e["cost_usd_total"])),
        ("latency_p95", "p95 latency", _ms(e["latency_ms_p95"])),
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


def _latency_and_cost(evals: Sequence[Mapping[str, Any]]) -> str:
    """Latency (p50, p95) and cost per (eval, variant): a table with the figures, a latency chart, and cost
    against pass rate, where the variant worth having sits top left."""
    if not evals:
        return ""
    rows = "".join(
        f'<tr data-eval="{escape(e["eval"])}" data-variant="{escape(e["variant"])}"><td>{escape(e["eval"])}</td>'
        f'<td>{escape(e["variant"])}</td>'
        + "".join(f'<td class="number" data-field="{key}">{text}</td>' for key, text in _latency_cost_cells(e))
        + "</tr>"
        for e in evals
    )
    table = ('<table id="latency-cost-table"><thead><tr><th>eval</th><th>variant</th><th>p50 latency</th>'
             "<th>p95 latency</th><th>cost</th><th>cost per case</th></tr></thead><tbody>" + rows + "</tbody></table>")
    return ('<section id="latency-cost"><h2>Latency and cost</h2>' + table + _latency_chart(evals)
            + _cost_chart(evals) + "</section>")


def _latency_cost_cells(e: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [
        ("latency_p50", _ms(e["latency_ms_p50"])),
        ("latency_p95", _ms(e["latency_ms_p95"])),
        ("cost", _usd(e["cost_usd_total"])),
        ("cost_per_case", _usd(e["cost_usd_per_case"])),
    ]


def _latency_chart(evals: Sequence[Mapping[str, Any]]) -> str:
    """A bar per (eval, variant) to its p95 latency, the p50 part darker; scaled to the slowest p95."""
    timed = [e for e in evals if e["latency_ms_p95"] is not None]
    if not timed:
        return '<p class="legend">no latency measured (every case errored)</p>'
    slowest = max(e["latency_ms_p95"] for e in timed) or 1.0
    scale = (_AXIS_WIDTH - 120) / slowest  # room right of the longest bar for its label
    height = _ROW_HEIGHT * len(timed) + 10
    parts = [f'<svg id="latency-chart" role="img" viewBox="0 0 700 {height}" width="700" height="{height}">',
             "<title>p50 and p95 latency by variant</title>"]
    for row, e in enumerate(timed):
        top = row * _ROW_HEIGHT + 4
        label = f'{e["eval"]} [{e["variant"]}]'
        p50, p95 = e["latency_ms_p50"], e["latency_ms_p95"]
        parts.append(
            f'<text class="label" x="{_AXIS_X - 8}" y="{top + 15}">{bounded(label, 40)}</text>'
            f'<rect class="p95" x="{_AXIS_X}" y="{top}" width="{p95 * scale:.1f}" height="22">'
            f"<title>{escape(label)}: p95 {_ms(p95)}</title></rect>"
            f'<rect class="p50" x="{_AXIS_X}" y="{top}" width="{p50 * scale:.1f}" height="22">'
            f"<title>{escape(label)}: p50 {_ms(p50)}</title></rect>"
            f'<text class="value" x="{_AXIS_X + p95 * scale + 4:.1f}" y="{top + 15}">'
            f"{_ms(p50)} / {_ms(p95)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts) + '<p class="legend">dark: p50 latency; light: p95 latency (labels: p50 / p95)</p>'


def _cost_chart(evals: Sequence[Mapping[str, Any]]) -> str:
    """Cost per case against pass rate: a point per (eval, variant) whose cost is known."""
    priced = [e for e in evals if e["cost_usd_per_case"] is not None]
    if not priced:
        return '<p class="legend">no cost known (no prices for the models, or no tokens reported)</p>'
    dearest = max(e["cost_usd_per_case"] for e in priced) or 1.0
    left, top, width, height = 70, 10, 560, 200
    parts = [f'<svg id="cost-chart" role="img" viewBox="0 0 700 {height + 50}" width="700" height="{height + 50}">',
             "<title>cost per case against pass rate, a point per eval and variant</title>",
             _rate_axis(left, top, width, height),
             f'<text class="tick" x="{left}" y="{top + height + 16}">$0</text>'
             f'<text class="tick" x="{left + width}" y="{top + height + 16}">{_usd(dearest)}</text>'
             f'<text class="tick" x="{left + width / 2}" y="{top + height + 34}">cost per case</text>']
    placed: list[tuple[float, float]] = []  # where labels went: points close together keep theirs apart
    for e in priced:
        x = left + e["cost_usd_per_case"] / dearest * width
        y = top + (1 - e["pass_rate"]) * height
        label = f'{e["eval"]} [{e["variant"]}]'
        ly = y + 4
        while any(abs(ly - py) < 13 and abs(x - px) < 220 for px, py in placed):
            ly += 13
        placed.append((x, ly))
        parts.append(
            f'<circle class="point verdict-{escape(e["verdict"] or "none")}" cx="{x:.1f}" cy="{y:.1f}" r="5">'
            f"<title>{escape(label)}: {_rate(e['pass_rate'])} at {_usd(e['cost_usd_per_case'])} a case</title></circle>"
            # labels of points on the right half go to their left, inside the chart
            + (f'<text class="point-label" x="{x + 7:.1f}" y="{ly:.1f}">' if x < left + width / 2 else
               f'<text class="point-label end" x="{x - 7:.1f}" y="{ly:.1f}">') + f"{bounded(label, 40)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts) + '<p class="legend">a point per eval and variant: up is a higher pass rate, left is cheaper</p>'


def _trend(trend: Sequence[Mapping[str, Any]] | None) -> str:
    """Per eval, the pass rate of its recent complete runs (a line per variant, oldest left), a dashed mark where
    a prompt version changed, and the runs as a table."""
    if not trend:
        return ""
    parts = ['<section id="trend"><h2>Trend of recent complete runs</h2>']
    for entry in trend:
        runs = entry["runs"]
        if not runs:
            continue
        parts.append(f'<h3>{escape(entry["eval"])}</h3>' + _trend_chart(entry["eval"], runs) + _trend_table(runs))
    parts.append('<p class="legend">a line per variant, oldest run left; dashed line: a prompt version changed '
                 "since the run before of that variant</p></section>")
    return "".join(parts)


def _trend_chart(eval_name: str, runs: Sequence[Mapping[str, Any]]) -> str:
    left, top, width, height = 70, 10, 560, 150
    # A session's runs share its start: one position per session, oldest left.
    sessions = list(dict.fromkeys(run["date"] for run in runs))
    step = width / (len(sessions) - 1) if len(sessions) > 1 else 0
    position = {date: left + n * step if len(sessions) > 1 else left + width / 2 for n, date in enumerate(sessions)}
    xs = [position[run["date"]] for run in runs]
    parts = [f'<svg class="trend-chart" data-eval="{escape(eval_name)}" role="img" viewBox="0 0 700 {height + 30}" '
             f'width="700" height="{height + 30}"><title>pass rate of the recent complete runs of {escape(eval_name)}</title>',
             _rate_axis(left, top, width, height)]
    for x, run in zip(xs, runs):
        if run["prompts_changed"]:
            changes = _change_text(run["prompts_changed"])
            parts.append(f'<line class="prompt-change" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + height}">'
                         f"<title>{bounded(changes, 200)}</title></line>"
                         + (f'<text class="change-label" x="{x + 3:.1f}"' if x < left + width / 2 else
                            f'<text class="change-label end" x="{x - 3:.1f}"')
                         + f' y="{top + height + 16}">{bounded(changes, 40)}</text>')
    for n, variant in enumerate(dict.fromkeys(run["variant"] for run in runs)):
        points = [(x, top + (1 - run["pass_rate"]) * height, run) for x, run in zip(xs, runs)
                  if run["variant"] == variant and run["pass_rate"] is not None]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)
        parts.append(f'<polyline class="trend-line series-{n % 4}" points="{path}"/>'
                     f'<text class="series-label series-{n % 4}" x="{left + width + 8}" y="{top + 12 + 14 * n}">'
                     f"{bounded(variant, 10)}</text>")
        parts += [f'<circle class="trend-point series-{n % 4}" cx="{x:.1f}" cy="{y:.1f}" r="4"><title>{escape(variant)}: '
                  f'{_rate(run["pass_rate"])} ({escape(run["date"])}, run {escape(run["run_id"])})</title></circle>'
                  for x, y, run in points]
    return "".join(parts) + "</svg>"


def _trend_table(runs: Sequence[Mapping[str, Any]]) -> str:
    rows = "".join(
        f'<tr data-run-id="{escape(run["run_id"])}"><td>{escape(run["date"])}</td><td>{escape(run["variant"])}</td>'
        f'<td class="number" data-field="pass_rate">{_rate(run["pass_rate"]) if run["pass_rate"] is not None else "-"}</td>'
        f'<td class="number">{run["cases"] if run["cases"] is not None else "-"}</td><td>{escape(run["verdict"] or "-")}</td>'
        f"<td>{_changes(run['prompts_changed'])}</td><td><code>{escape(run['run_id'])}</code></td></tr>"
        for run in runs
    )
    return ('<table class="trend-table"><thead><tr><th>date (UTC)</th><th>variant</th><th>pass rate</th><th>cases</th>'
            "<th>verdict</th><th>prompts changed</th><th>run id</th></tr></thead><tbody>" + rows + "</tbody></table>")


def _changes(changes: Sequence[Mapping[str, Any]] | None) -> str:
    if changes is None:
        return "-"  # the first run shown: nothing before it to compare with
    return bounded(_change_text(changes), 400) if changes else "none"


def _change_text(changes: Sequence[Mapping[str, Any]]) -> str:
    """``router 3 → 4, style (none) → 1``: each prompt whose version changed, as the trend table says it."""
    return ", ".join(f"{c['name']} {c['before'] or '(none)'} → {c['after'] or '(none)'}" for c in changes)


def _promotion(promotion: Mapping[str, Any] | None) -> str:
    """What ``--promote`` did: the alias moved (forced or not) or refused, and every reason it gave."""
    if promotion is None:
        return ""
    p = promotion
    target = f"{p['prompt']} version {p['candidate_version']} ({p['source']}) to alias {p['alias']!r}"
    before = f"version {p['alias_version_before']}" if p["alias_version_before"] is not None else "no version"
    if p["promoted"]:
        head = f"promoted {target} (it was at {before}) by {p['actor']}" + (", forced past the blocks below" if p["forced"] else "")
    else:
        head = f"refused to promote {target}; it stays at {before}"
    reasons = [*p["blocked_because"], *p["problems"]]
    items = "".join(f"<li>{bounded(reason)}</li>" for reason in reasons)
    state = "promoted" if p["promoted"] else "refused"
    return (f'<section id="promotion" class="{state}"><h2>Promotion</h2><p class="decision {state}">{escape(head)}</p>'
            + (f'<ul class="reasons">{items}</ul>' if items else "") + "</section>")


def _rate_axis(left: float, top: float, width: float, height: float) -> str:
    """The axes of a chart whose height is a pass rate, 0% at the bottom, 100% at the top."""
    return (f'<path class="axis" d="M{left} {top}V{top + height}H{left + width}"/>'
            f'<text class="label" x="{left - 6}" y="{top + 4}">100%</text>'
            f'<text class="label" x="{left - 6}" y="{top + height}">0%</text>')


def _ms(value: float | None) -> str:
    return f"{value:.1f} ms" if value is not None else "-"


def _usd(value: float | None) -> str:
    return f"${value:.6f}" if value is not None else "-"


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


def page_cases(cases: Sequence[Mapping[str, Any]], limit: int | None = None) -> Sequence[Mapping[str, Any]]:
    """The cases the page holds, in their order: all of them, or ``limit`` (:data:`MAX_PAGE_CASES`) -- the failed,
    error and flaky cases first (the first ``limit`` of them), then as many passing ones as there is room for."""
    limit = MAX_PAGE_CASES if limit is None else limit
    if len(cases) <= limit:
        return cases
    passing = [not _noteworthy(c) for c in cases]
    kept = [i for i, ok in enumerate(passing) if not ok][:limit]
    kept += [i for i, ok in enumerate(passing) if ok][: limit - len(kept)]
    return [cases[i] for i in sorted(kept)]


def _noteworthy(case: Mapping[str, Any]) -> bool:
    return case["error"] is not None or not case["passed"] or bool(case["flaky"])


def _case_table(all_cases: Sequence[Mapping[str, Any]]) -> str:
    """The cases (:func:`page_cases`), with the controls that filter them by eval, variant, outcome and text."""
    cases = page_cases(all_cases)
    held = "" if len(cases) == len(all_cases) else (
        f'<p id="held">This page holds {len(cases)} of the session\'s {len(all_cases)} cases: every failed, error '
        f"and flaky one ({sum(map(_noteworthy, all_cases))}) first, then passing ones. The JSON report "
        "(--prompt-report) and each run's results table in MLflow hold them all.</p>"
    )
    controls = "".join(
        f'<label>{name} <select id="filter-{name}" name="{name}"><option value="">all</option>'
        + "".join(f'<option value="{escape(v)}">{bounded(v, 80)}</option>' for v in values) + "</select></label>"
        for name, values in (
            ("eval", dict.fromkeys(c["eval"] for c in all_cases)),
            ("variant", dict.fromkeys(c["variant"] for c in all_cases)),
            ("outcome", ("passed", "failed", "error")),
        )
    )
    return (
        '<section id="cases"><h2>Cases</h2>' + held + '<p class="controls">' + controls
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
    outputs = "".join(f"<pre>{bounded(run['output'], length=run.get('output_chars'))}</pre>" for run in runs)
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
svg .baseline{fill:#6a1b9a}svg .p95{fill:#cfd8dc}svg .p50{fill:#607d8b}svg .axis{stroke:#666;fill:none}
svg .point{fill:#90a4ae;stroke:#222}svg .point.verdict-PASS{fill:#81c784}svg .point.verdict-IMPROVED{fill:#64b5f6}
svg .point.verdict-WARNING{fill:#ffb74d}svg .point.verdict-REGRESSION{fill:#e57373}
#latency-cost-table{margin-bottom:.6em}svg .trend-line{fill:none;stroke-width:2}svg .prompt-change{stroke:#6a1b9a;stroke-dasharray:4 3}
svg .series-0{stroke:#1565c0;fill:#1565c0}svg .series-1{stroke:#ef6c00;fill:#ef6c00}svg .series-2{stroke:#2e7d32;fill:#2e7d32}
svg .series-3{stroke:#6a1b9a;fill:#6a1b9a}polyline.trend-line{fill:none}svg .change-label{fill:#6a1b9a;font-size:10px}
svg .point-label.end,svg .change-label.end{text-anchor:end}svg .series-label{stroke:none}
#promotion{border:1px solid #ccc;border-radius:4px;padding:.2em .9em;margin:.8em 0}#promotion .decision{font-weight:600}
.decision.promoted{color:#176b2c}.decision.refused{color:#a4161a}.legend{color:#555;font-size:.85em}
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
