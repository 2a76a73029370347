"""``--prompt-export PATH.jsonl``: the session's annotated dataset, one JSON row per output (docs/datasets.md).

Each row is what a person or an optimizer needs to learn from one output: the inputs
(vars and rendered prompts), the output, the expected value, every grader's result and
reason, the failure modes, people's labels, and where it came from (eval, dataset hash,
variant, prompt versions, MLflow run, session). Its ``inputs``, ``outputs``,
``expectations`` and ``tags`` are shaped as MLflow's evaluation datasets take them
(``mlflow.genai.datasets``' ``merge_records``, ``mlflow.genai.evaluate(data=...)``), so
the file loads there as it is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .. import template
from ..results import labelled_modes

#: Version of the row layout; bumped when a field changes meaning or goes away.
EXPORT_VERSION = 1


def export_rows(
    cases: Iterable[Mapping[str, Any]], evals: Mapping[str, Mapping[str, Any]],
    run_ids: Mapping[tuple[str, str], str | None], session: str,
) -> Iterator[dict[str, Any]]:
    """A row per run of each case (one for an error case, with no output), in session order.

    ``cases``: ``CaseResult.to_dict`` data; ``evals``: what collection knows of each eval
    (``EvalPlan.info``); ``run_ids``: the MLflow run of each (eval, variant), None when not logged.
    """
    for case in cases:
        info = evals.get(case["eval"]) or {}
        run_info = (info.get("runs") or {}).get(case["variant"], {})
        common = {
            "inputs": {"vars": case["vars"], "prompts": _rendered(run_info, case["vars"])},
            "expectations": {"expected": case["expected"]} if case["expected"] is not None else {},
            "tags": {"promptgate.eval": case["eval"], "promptgate.variant": case["variant"],
                     "promptgate.case": case["case_id"]},
            "version": EXPORT_VERSION,
            "eval": case["eval"],
            "dataset_hash": info.get("dataset_hash"),
            "variant": case["variant"],
            "case_id": case["case_id"],
            "case_tags": list(case["tags"]),
            "prompts": {name: {"version": version} for name, version in (run_info.get("prompt_versions") or {}).items()},
            "run_id": run_ids.get((case["eval"], case["variant"])),
            "session": session,
            "case_outcome": "error" if case["error"] is not None else ("passed" if case["passed"] else "failed"),
            "case_flaky": case["flaky"],
            "error": case["error"],
            "labels": list(case.get("labels", ())),
        }
        for registry in run_info.get("linked_prompts") or ():
            for entry in common["prompts"].values():
                if entry["version"] == registry["version"]:
                    entry["registry_name"] = registry["name"]
        if not case["runs"]:
            yield _ordered({**common, "outputs": None, "run": None, "passed": False, "score": None, "output_sha": None,
                   "graders": [], "failure_modes": [], "latency_ms": None, "cost_usd": None,
                   "input_tokens": None, "output_tokens": None, "model": None})
        for number, run in enumerate(case["runs"], start=1):
            yield _ordered({**common, **_run_fields(run, common["labels"], case), "run": number})


def _ordered(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with MLflow's trio first, as a person reading a line expects: inputs, outputs, expectations."""
    return {key: row[key] for key in ("inputs", "outputs", "expectations")} | row


def _run_fields(run: Mapping[str, Any], labels: list[Mapping[str, Any]], case: Mapping[str, Any]) -> dict[str, Any]:
    """What one run adds to its case's row: its output, grades and failure modes (the graders' and people's)."""
    graded = [{key: g[key] for key in ("name", "type", "passed", "score", "reason", "required", "weight", "failure_mode")}
              for g in run["graders"]]
    modes = {g["failure_mode"] for g in graded if not g["passed"] and g["failure_mode"]}
    modes |= labelled_modes(labels, {run.get("output_sha")}, case["error"] is None and not case["passed"])
    return {
        "outputs": run["output"], "passed": run["passed"], "score": run["score"], "output_sha": run.get("output_sha"),
        "graders": graded, "failure_modes": sorted(modes), "latency_ms": run["latency_ms"], "cost_usd": run["cost_usd"],
        "input_tokens": run["input_tokens"], "output_tokens": run["output_tokens"], "model": run["model"],
    }


def _rendered(run_info: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """The variant's prompts rendered with the case's vars: text, or chat messages (``[{role, content}]``)."""
    messages = run_info.get("prompt_messages") or {}
    rendered: dict[str, Any] = {}
    for name, text in (run_info.get("prompts") or {}).items():
        if name in messages:
            rendered[name] = [{"role": role, "content": template.render(content, values)} for role, content in messages[name]]
        else:
            rendered[name] = template.render(text, values)
    return rendered


def write_export(path: Path, rows: Iterable[Mapping[str, Any]]) -> int:
    """Write ``rows`` as JSON lines to ``path``; how many. Raises ``OSError`` when it cannot."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "w", encoding="utf-8") as file:
        for row in rows:
            file.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            count += 1
    return count
