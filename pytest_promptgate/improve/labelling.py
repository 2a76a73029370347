"""``--prompt-label-template DIR``: the session's failed and flaky outputs as labels files ready to fill in.

Labelling is editing a file: for every eval with failed (or, within the run, flaky)
cases, ``DIR/EVAL.labels.jsonl`` gets a row per distinct output of those cases, with
the case, variant and ``output_sha`` filled in, the output shown, and the rating,
failure mode and feedback left empty. Rows already in the file (the same case,
variant and output) are kept as they are, people's ratings with them: only new
outputs are appended. With the ini key ``promptgate_labels = DIR`` (or each file
moved beside its eval file) the next session reads the ratings.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..schema import LABELS_SUFFIX

#: Characters of an output the template shows to the person labelling (the ``output_sha`` identifies the whole).
SHOWN_OUTPUT_CHARS = 2_000


def template_rows(cases: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Eval name → the rows to label: a row per distinct output of each failed or flaky case, in session order."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for case in cases:
        if case["error"] is not None or (case["passed"] and not case["flaky"]):
            continue
        seen = set()
        for run in case["runs"]:
            if run.get("output_sha") in seen or not run.get("output_sha"):
                continue
            seen.add(run["output_sha"])
            rows.setdefault(case["eval"], []).append({
                "case": case["case_id"], "variant": case["variant"], "output_sha": run["output_sha"],
                "rating": "", "failure_mode": "", "feedback": "", "annotator": "", "at": "",
                "output": run["output"][:SHOWN_OUTPUT_CHARS],
            })
    return rows


def write_label_templates(directory: Path, cases: Iterable[Mapping[str, Any]]) -> list[tuple[Path, int]]:
    """Append the rows of :func:`template_rows` not yet in ``directory/EVAL.labels.jsonl``; (path, rows added) of each
    file touched. Raises ``OSError`` when a file cannot be written."""
    written = []
    for eval_name, rows in template_rows(cases).items():
        path = directory / f"{eval_name}{LABELS_SUFFIX}"
        known = _keys(path)
        new = [row for row in rows if _key(row) not in known]
        if not new:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        ends_open = path.exists() and not path.read_bytes().endswith(b"\n") and path.stat().st_size > 0
        with open(path, "a", encoding="utf-8") as file:
            file.write(("\n" if ends_open else "") + "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in new))
        written.append((path, len(new)))
    return written


def _key(row: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    return row.get("case"), row.get("variant"), row.get("output_sha")


def _keys(path: Path) -> set[tuple[Any, Any, Any]]:
    """The (case, variant, output_sha) of the rows a labels file has (rows that are not JSON objects are passed over:
    reading the eval reports them)."""
    if not path.exists():
        return set()
    keys = set()
    for line in path.read_text(encoding="utf-8").split("\n"):
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            keys.add(_key(row))
    return keys
