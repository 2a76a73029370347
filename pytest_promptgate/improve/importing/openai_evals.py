"""An openai/evals registry entry (``evals/registry/evals/NAME.yaml`` and its samples) as eval files.

Layout and rules read from openai/evals: an entry ``NAME: {id: NAME.split.v0}``
points at ``NAME.split.v0: {class: module:Class, args: {samples_jsonl: ...}}``;
``samples_jsonl`` is relative to ``evals/registry/data/``; model-graded specs are
``evals/registry/modelgraded/SPEC.yaml``. A sample is ``{"input": text or chat
messages, "ideal": text or list of texts}``. The classes mapped, and the rule each
keeps (``evals/elsuite/basic/*.py``): ``Match`` (the output starts with an ideal
answer), ``Includes`` (the output contains one, ``ignore_case``), ``FuzzyMatch`` and
``JsonMatch`` (the same rules, :mod:`pytest_promptgate.graders.openai_rules`), and
``ModelBasedClassify`` (a ``label_model`` judge with the spec's prompt and choices).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ...schema import display_path
from .imported import (
    SUITE,
    TEMPLATE_VARIABLE,
    Document,
    Imported,
    ImportFailure,
    eval_name,
    read_rows,
    variable,
)

RULES = "pytest_promptgate.graders.openai_rules"
#: The judge written for model-graded specs: openai/evals picks its grading model when it runs.
JUDGE = {"provider": {"base_url": "https://api.openai.com/v1", "model": "gpt-4o-mini", "api_key_env": "OPENAI_API_KEY"}}
TARGET_NOTE = ("target: echo stands in for the model: openai/evals chooses it when it runs (oaieval MODEL EVAL). "
               "Set target to your model (a provider: or module:callable) before trusting the results.")
JUDGE_NOTE = ("The judge (label_model) is an OpenAI model named here, as openai/evals picks one when it runs; it "
              "answers by promptgate's judgment protocol (JSON with a label), whatever the spec's eval_type.")
#: ``args`` keys each class uses; any other key is listed as not mapped.
HANDLED_ARGS = {"samples_jsonl", "ignore_case", "modelgraded_spec", "modelgraded_spec_args", "eval_type"}


def looks_like(data: Any) -> bool:
    """Whether parsed YAML is an openai/evals registry file: some entry has a ``class``."""
    return isinstance(data, dict) and any(isinstance(v, dict) and "class" in v for v in data.values())


def read(doc: Document) -> list[Imported]:
    """Every eval of the registry file (an entry with a ``class``), named after the entry that points at it."""
    aliases = {v["id"]: k for k, v in doc.data.items() if isinstance(v, dict) and isinstance(v.get("id"), str)}
    evals = []
    for key, entry in doc.data.items():
        if isinstance(entry, dict) and "class" in entry:
            evals += _entry(doc, key, entry, aliases.get(key, key))
    return evals


def _entry(doc: Document, key: str, entry: dict[str, Any], name: str) -> list[Imported]:
    cls = doc.get((key, "class"), str, "module:Class, such as evals.elsuite.basic.match:Match")
    if "samples_jsonl" not in (entry.get("args") or {}):
        # Some classes make their samples in code (evals.elsuite.test.match:TestMatch): nothing to import, said so.
        reason = f"{key} ({cls}) has no args.samples_jsonl: its samples are not in a file"
        return [Imported(eval_name(name), doc.place((key,)), {}, [], [reason])]
    args = doc.get((key, "args"), dict, "a mapping of the class's arguments (with samples_jsonl)")
    shown, rows = _samples(doc, key)
    unmapped = [f"args.{k}: {v!r} (no promptgate equivalent)" for k, v in args.items() if k not in HANDLED_ARGS]
    class_name = cls.rpartition(":")[2]
    graders, case_grader, more = _grading(doc, key, class_name, args)
    unmapped += more
    notes = _notes(class_name, graders)
    groups = _by_shape(rows)
    evals = []
    for n, (shape, members) in enumerate(groups.items(), 1):
        prompt, var_of = _prompt(shape, [row["input"] for _, row in members])
        this = eval_name(name) + (f"-{n}" if len(groups) > 1 else "")
        cases = [_case(number, row, var_of, case_grader) for number, row in members]
        notes_here = list(notes)
        if len(groups) > 1:
            notes_here.append(f"Samples whose input has another shape (roles, or text instead of messages) are in "
                         f"{', '.join(eval_name(name) + f'-{i}' for i in range(1, len(groups) + 1) if i != n)}.")
        body: dict[str, Any] = {
            "eval": this,
            "description": f"openai/evals {key} ({cls})",
            "suites": [SUITE],
            "prompts": {"input": prompt},
            "target": "echo",
        }
        if graders:
            body["graders"] = [_judge_input(g, var_of) for g in graders]
        evals.append(Imported(this, f"openai/evals entry {key} of {display_path(doc.path)} and {shown}", body, cases,
                              list(unmapped), notes_here))
    return evals


def _samples(doc: Document, key: str) -> tuple[str, list[tuple[int, dict[str, Any]]]]:
    """(how messages name the samples file, its rows with their line numbers), each row with input and ideal."""
    relative = doc.get((key, "args", "samples_jsonl"), str, "the path of the samples JSONL, under evals/registry/data/")
    path = _registry_file(doc, (key, "args", "samples_jsonl"), "data", relative)
    rows = read_rows(path)
    for number, row in rows:
        for needed in ("input", "ideal"):
            if needed not in row:
                raise ImportFailure(f"{display_path(path)}:{number}: sample has no {needed!r}; expected keys input and ideal")
    return display_path(path), rows


def _notes(class_name: str, graders: list[dict[str, Any]]) -> list[str]:
    """What a person should review in the file: the stand-in target and, for a model-graded spec, its judge."""
    notes = [TARGET_NOTE]
    if class_name == "ModelBasedClassify":
        notes.append(JUDGE_NOTE)
        if graders[0]["passing_labels"] == graders[0]["labels"]:
            notes.append("Every label passes: the spec has no choice_scores (openai/evals counts the labels); "
                         "set passing_labels.")
    return notes


def _registry_file(doc: Document, loc: tuple[Any, ...], kind: str, relative: str) -> Path:
    """A file of the registry: under ``evals/registry/KIND/`` when the registry file is in ``evals/registry/evals/``,
    else beside the registry file."""
    here = doc.path.parent
    tried = ([here.parent / kind / relative] if here.name == "evals" else []) + [here / relative]
    for path in tried:
        if path.is_file():
            return path
    raise doc.fail(loc, f"file not found; looked for {' and '.join(display_path(p) for p in tried)}")


def _grading(doc: Document, key: str, class_name: str, args: dict[str, Any]) -> tuple[list, dict | None, list[str]]:
    """(eval graders, a per-case grader maker's settings, not mapped) for the entry's class."""
    ignore_case = bool(args.get("ignore_case", False))
    if class_name == "Match":
        return [], {"rule": "starts"}, []
    if class_name == "Includes":
        return [], {"rule": "contains", "ignore_case": ignore_case}, []
    if class_name == "FuzzyMatch":
        return [{"type": "python", "fn": f"{RULES}:fuzzy_match"}], None, []
    if class_name == "JsonMatch":
        return [{"type": "python", "fn": f"{RULES}:json_match"}], None, []
    if class_name == "ModelBasedClassify":
        return [_classify(doc, key, args)], None, []
    return [], None, [f"class {class_name}: no promptgate grader decides as it does; the cases have no graders"]


def _classify(doc: Document, key: str, args: dict[str, Any]) -> dict[str, Any]:
    """A ``label_model`` grader from a model-graded spec (``evals/registry/modelgraded/SPEC.yaml``)."""
    spec_name = doc.get((key, "args", "modelgraded_spec"), str, "the name of a spec in evals/registry/modelgraded/")
    spec_doc = Document(_registry_file(doc, (key, "args", "modelgraded_spec"), "modelgraded", f"{spec_name}.yaml"))
    spec = spec_doc.get((spec_name,), dict, f"a mapping {spec_name}: with prompt and choice_strings")
    choices = spec_doc.get((spec_name, "choice_strings"), (str, list), "the choices: a string of letters or a list")
    if isinstance(choices, str) and choices.startswith("from_n"):
        raise spec_doc.fail((spec_name, "choice_strings"), f"{choices} grades several completions against each other "
                            "(multicomp); expected a classification spec with its choices written out")
    labels = [str(c) for c in choices]
    scores = spec.get("choice_scores")
    if scores == "from_strings":
        scores = {label: float(label) for label in labels}
    if isinstance(scores, dict) and scores:
        best = max(float(v) for v in scores.values())
        passing = [label for label in labels if float(scores.get(label, best - 1)) == best]
    else:
        passing = list(labels)
    prompt = spec_doc.get((spec_name, "prompt"), (str, list), "the grading prompt: text or chat messages")
    if isinstance(prompt, list):
        prompt = "\n\n".join(f"{m.get('role')}: {m.get('content')}" for m in prompt if isinstance(m, dict))
    outputs = spec.get("input_outputs") or {"input": "completion"}
    completion = next(iter(outputs.values()), "completion")
    fixed = {str(k): str(v) for k, v in (args.get("modelgraded_spec_args") or {}).items()}
    text = _python_format(prompt, completion, fixed)
    return {
        "type": "label_model",
        "judge": JUDGE,
        "labels": labels,
        "passing_labels": passing,
        "prompt": text + f'\n\nAnswer with JSON only: {{"label": "<one of: {", ".join(labels)}>", "reason": "<one sentence>"}}',
    }


def _python_format(prompt: str, completion: str, fixed: dict[str, str]) -> str:
    """A spec prompt's ``str.format`` fields as our ``{{var}}``: the completion is the output, ideal the expected."""
    def field(match: re.Match[str]) -> str:
        if match.group(0) in ("{{", "}}"):
            return match.group(0)[0]
        name = match.group(1)
        if name in fixed:
            return fixed[name]
        return {completion: "{{output}}", "ideal": "{{expected}}"}.get(name, variable(name))
    return re.sub(r"\{\{|\}\}|\{(\w+)\}", field, prompt)


def _judge_input(grader: dict[str, Any], var_of: dict[str, str]) -> dict[str, Any]:
    """The judge prompt's ``{{input}}`` is the sample's input: its text, or its last user message."""
    if grader.get("type") == "label_model" and var_of.get("input", "input") != "input":
        grader = dict(grader, prompt=grader["prompt"].replace("{{input}}", variable(var_of["input"])))
    return grader


def _shape(value: Any) -> tuple[str, ...] | None:
    """The roles of a chat input, or None for a text input."""
    if isinstance(value, list):
        return tuple(str(m.get("role")) if isinstance(m, dict) else "?" for m in value)
    return None


def _by_shape(rows: list[tuple[int, dict[str, Any]]]) -> dict[Any, list[tuple[int, dict[str, Any]]]]:
    groups: dict[Any, list[tuple[int, dict[str, Any]]]] = {}
    for number, row in rows:
        groups.setdefault(_shape(row["input"]), []).append((number, row))
    return groups


def _prompt(shape: tuple[str, ...] | None, inputs: list[Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The prompt for inputs of one shape, and which var holds what (position or ``input`` -> var name).

    A message whose content every sample shares is written as it is (unless it holds
    ``{{...}}``, which would read as a variable); the others, and always the last user
    message (a judge's ``{input}``), become vars named by role.
    """
    if shape is None:
        return {"template": "{{input}}"}, {"input": "input"}
    messages, var_of = [], {}
    last_user = max((i for i, role in enumerate(shape) if role == "user"), default=None)
    for i, role in enumerate(shape):
        contents = {str(value[i].get("content", "")) for value in inputs}
        same = len(contents) == 1 and not TEMPLATE_VARIABLE.search(next(iter(contents))) and i != last_user
        if same:
            messages.append({"role": role, "content": next(iter(contents))})
            continue
        nth = shape[: i + 1].count(role)
        var = role if shape.count(role) == 1 else f"{role}_{nth}"
        var_of[str(i)] = var
        messages.append({"role": role, "content": variable(var)})
        if i == last_user:
            var_of["input"] = var
    return {"messages": messages}, var_of


def _case(number: int, row: dict[str, Any], var_of: dict[str, str], grader: dict | None) -> dict[str, Any]:
    value = row["input"]
    if isinstance(value, list):
        vars_ = {var: str(value[int(i)].get("content", "")) for i, var in var_of.items() if i != "input"}
    else:
        vars_ = {"input": str(value)}
    vars_.update({k: v for k, v in row.items() if k not in ("input", "ideal") and k not in vars_})
    ideal = row["ideal"]
    case: dict[str, Any] = {"id": f"sample-{number}", "vars": vars_, "expected": ideal}
    if grader is not None:
        case["graders"] = [_per_case(grader, ideal)]
    return case


def _per_case(rule: dict[str, Any], ideal: Any) -> dict[str, Any]:
    """``Match`` and ``Includes`` as a regex over the case's answers, written literally (escaped).

    A regex keeps "any of these answers" in one grader, and ``re.escape`` escapes
    braces too, so an answer holding ``{{x}}`` is not read as a template variable.
    """
    answers = ideal if isinstance(ideal, list) else [ideal]
    either = "|".join(re.escape(str(a)) for a in answers)
    if rule["rule"] == "starts":
        return {"type": "regex", "pattern": f"\\A(?:{either})", "name": "match"}
    return {"type": "regex", "pattern": f"(?:{either})", "ignore_case": rule["ignore_case"], "name": "includes"}
