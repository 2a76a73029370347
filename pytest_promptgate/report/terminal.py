"""What the terminal shows: the summary table and its lines, and the ``--promote`` decision."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..verdicts import BestVariant, EvalCheck, RunComparison, SessionOutcome
from .json import compare_json
from .summary import (
    compact_rows, compared_p, conclusion, footnote_lines, note_lines, run_date, summary_rows, versions_text,
)

if TYPE_CHECKING:
    from ..improve import Findings
    from ..tracking import TrackingStatus


#: The narrowest first column of the compact table: an eval/variant is cut to fit, never below this.
_MIN_LABEL = 12


def terminal_lines(
    checks: Sequence[EvalCheck], outcome: SessionOutcome, best: Sequence[BestVariant] = (),
    tracking: TrackingStatus | None = None, width: int | None = None, findings: Findings | None = None,
) -> list[str]:
    """The summary table (one row per eval and variant), then notes, then what decided the exit status.

    With a terminal ``width`` the full table is too wide for, the compact table (:func:`compact_rows`)
    is shown instead, and the notes wrap between words: a terminal's own wrapping would cut cells mid-word.
    """
    headers, rows = summary_rows(checks, tracking)
    lines = text_table(headers, rows, numeric_from=2) if rows else []
    if width is not None and any(len(line) > width for line in lines):
        lines = _compact_table(checks, tracking, width)
    notes = [*footnote_lines(checks), "", *note_lines(checks, best, tracking), *(findings.lines() if findings else []),
             conclusion(outcome)]
    if width is None:
        return lines + notes
    return lines + [wrapped for note in notes for wrapped in (textwrap.wrap(note, width, subsequent_indent="  ") or [""])]


def _compact_table(checks: Sequence[EvalCheck], tracking: TrackingStatus | None, width: int) -> list[str]:
    """The compact table, its eval names cut (``…``, the variant kept) as far as it takes to fit ``width``."""
    headers, rows = compact_rows(checks, tracking)
    lines = text_table(headers, rows, numeric_from=1)
    over = max(len(line) for line in lines) - width
    longest = max(len(row[0]) for row in rows)
    if over > 0 and longest > _MIN_LABEL:
        keep = max(_MIN_LABEL, longest - over, len(headers[0]))
        for row, check in zip(rows, checks):
            tail = "/" + check.summary.variant
            if len(row[0]) > keep:
                row[0] = row[0][:max(keep - len(tail) - 1, 1)] + "…" + tail
        lines = text_table(headers, rows, numeric_from=1)
    return lines


#: The longest reason a flipped case's line shows; the HTML report (``--prompt-report-html``) shows all of it.
_SHORT_REASON = 70


def compare_lines(rc: RunComparison, source: str) -> list[str]:
    """``--prompt-compare``: both runs with their pass rates, the delta and its p-value, then the flipped cases."""
    data = compare_json(rc)
    rows = [
        [role, r["run_id"], run_date(r["start_time_ms"]), versions_text(r["prompt_versions"]),
         f"{r['passed']}/{r['cases']}" if r["cases"] is not None else "-", _rate_and_interval(r)]
        for role, r in (("before", data["before"]), ("after", data["after"]))
    ]
    lines = [f"promptgate compare: {data['eval']} [{data['variant']}] (MLflow at {source})", ""]
    lines += text_table(["", "run", "started", "prompts", "passed", "pass rate [95% CI]"], rows, numeric_from=4)
    delta = f"{data['delta'] * 100:+.1f} pp" if data["delta"] is not None else "-"
    lines += ["", f"delta (after - before): {delta}, {compared_p(data)}"]
    flipped = data["flipped_cases"]
    if flipped["cases"] is None:
        return [*lines, f"flipped cases unavailable: {flipped['problem']}"]
    lines.append(f"newly failing: {flipped['newly_failing']}, newly passing: {flipped['newly_passing']}")
    if flipped["cases"]:
        flips = [[f["case_id"], f"{f['before']['outcome']} -> {f['after']['outcome']}", _short_reason(f)]
                 for f in flipped["cases"]]
        lines += ["", *text_table(["case", "before -> after", "reason"], flips, numeric_from=3)]
    return lines


def _rate_and_interval(run: dict[str, Any]) -> str:
    if run["pass_rate"] is None:
        return "-"
    ci = run["pass_rate_ci95"]
    return f"{run['pass_rate']:.1%}" + (f" [{ci[0] * 100:.0f}%-{ci[1] * 100:.0f}%]" if ci else "")


def _short_reason(flip: dict[str, Any]) -> str:
    """Why the failing side failed (after's when newly failing, before's when newly passing), on one short line."""
    side = flip["after"] if flip["newly"] == "failing" else flip["before"]
    reason = " ".join((side["reasons"][0] if side["reasons"] else "-").split())
    return reason if len(reason) <= _SHORT_REASON else reason[:_SHORT_REASON - 1] + "…"


def text_table(headers: list[str], rows: list[list[object]], numeric_from: int) -> list[str]:
    """A compact text table: headers, a rule, rows; columns from ``numeric_from`` on right-aligned."""
    from tabulate import tabulate

    # Headers go in as a row: tabulate pads given headers by MIN_PADDING, which doubles the width.
    cells = [headers, *([str(c) for c in row] for row in rows)]
    rule = ["-" * max(len(row[i]) for row in cells) for i in range(len(headers))]
    align = ["left"] * numeric_from + ["right"] * (len(headers) - numeric_from)
    return tabulate([cells[0], rule, *cells[1:]], tablefmt="plain", disable_numparse=True, colalign=align).splitlines()


def promotion_lines(
    name: str, version: int, current: int | None, alias: str, rows: Sequence[Sequence[Any]], blocked: Sequence[str],
    promoted: bool, forced: bool, actor: str,
) -> list[tuple[str, dict[str, bool]]]:
    """The gate table of ``--promote`` and its decision, as (line, markup) pairs."""
    headers = ["eval", "variant", "pass rate", "threshold", "verdict", "gates"]
    lines: list[tuple[str, dict[str, bool]]] = [(line, {}) for line in text_table(headers, [list(r) for r in rows], 2)] if rows else []
    lines += [(f"blocked: {reason}", {"red": True}) for reason in blocked]
    move = f"{name}@{alias}: version {current if current is not None else '(none)'} -> {version}"
    if promoted and blocked and forced:
        lines.append((f"promptgate: FORCED promotion despite {len(blocked)} block(s): {move} by {actor} "
                      "(recorded as audit.forced=true)", {"red": True, "bold": True}))
    elif promoted:
        lines.append((f"promptgate: promoted {move} by {actor}", {"green": True}))
    elif blocked:
        lines.append((f"promptgate: promotion BLOCKED: {name} version {version} stays off {alias!r} "
                      "(--promote-force promotes anyway, and says so in the audit record)", {"red": True}))
    else:
        lines.append((f"promptgate: promotion of {move} FAILED", {"red": True}))
    return lines
