"""OpenAI grader configs (the Evals API's ``testing_criteria``) as an eval file.

A file holds one grader (``{"type": "string_check", ...}``), a list of them, or an
eval's body (``{"name": ..., "testing_criteria": [...]}``). The data items come
from the same body's ``data_source.source.content`` (rows ``{"item": {...}}``, as
a run's ``file_content`` source) or from ``NAME.jsonl`` beside the file. Grader
templates name ``{{sample.output_text}}`` (the output) and ``{{item.FIELD}}`` (a
var); both become ours (``{{output}}``, ``{{FIELD}}``). Mapped: ``string_check``
(eq, ne, like, ilike), ``text_similarity`` (fuzzy_match, bleu, rouge_l),
``score_model``, ``label_model``, ``python`` (its source written beside the eval)
and ``multi`` (its graders scored; its formula listed as not mapped).
"""

from __future__ import annotations

import re
from typing import Any

from ...schema import display_path
from .imported import (
    SUITE,
    Document,
    Imported,
    ImportFailure,
    eval_name,
    ident,
    read_rows,
)

KINDS = ("string_check", "text_similarity", "score_model", "label_model", "python", "multi")
OPERATIONS = {"eq": ("equals", {"strip": False}), "ne": ("not_equals", {"strip": False}),
              "like": ("contains", {}), "ilike": ("icontains", {})}
METRICS = {"fuzzy_match": "fuzzy", "bleu": "bleu", "rouge_l": "rouge_l"}
JSON_ANSWER = {"label_model": 'Answer with JSON only: {"label": "<one of: %s>", "reason": "<one sentence>"}',
               "score_model": 'Answer with JSON only: {"score": <a number from %s>, "reason": "<one sentence>"}'}
TARGET_NOTE = ("target: echo stands in for the model whose outputs the graders judged; set target to it "
               "(a provider: or module:callable).")


def looks_like(data: Any) -> bool:
    """Whether parsed YAML/JSON is an OpenAI grader, a list of them, or an eval body with ``testing_criteria``."""
    if isinstance(data, dict):
        return data.get("type") in KINDS or isinstance(data.get("testing_criteria"), list)
    return isinstance(data, list) and bool(data) and all(isinstance(g, dict) and g.get("type") in KINDS for g in data)


def read(doc: Document) -> list[Imported]:
    """The graders and their items as one eval; python graders' code in a module written beside it."""
    data = doc.data
    if isinstance(data, list):
        loc, graders = (), data
    elif "testing_criteria" in data:
        loc, graders = ("testing_criteria",), data["testing_criteria"]
    else:
        loc, graders = None, [data]
    name = eval_name(str(data.get("name") if isinstance(data, dict) and data.get("name") else doc.path.stem))
    unmapped: list[str] = []
    modules: dict[str, str] = {}
    ours = []
    for i, grader in enumerate(graders):
        at = (*loc, i) if loc is not None else ()
        ours += _grader(doc, at, grader, name, unmapped, modules)
    _distinct_names(ours)
    cases = _cases(doc, unmapped)
    body = {"eval": name, "description": f"OpenAI graders from {doc.path.name}", "suites": [SUITE],
            "target": "echo", "graders": ours}
    notes = [TARGET_NOTE]
    if modules:
        notes.append(f"The python graders' code is in {', '.join(f'{m}.py' for m in modules)} beside this file: "
                     "put this directory on sys.path (pytest's pythonpath ini option) to run them.")
    files = {f"{module}.py": f'"""Python graders imported into {name}.eval.yaml."""\n{text}' for module, text in modules.items()}
    return [Imported(name, f"OpenAI grader config {display_path(doc.path)}", body, cases, unmapped, notes, files)]


def _distinct_names(graders: list[dict[str, Any]]) -> None:
    """Two graders of an eval may not share a name: a repeated one (``exact``, or a multi's ``a``) gets ``-2``, ``-3``."""
    seen: set[str] = set()
    for grader in graders:
        if "name" in grader:
            base, n = grader["name"], 1
            while grader["name"] in seen:
                n += 1
                grader["name"] = f"{base}-{n}"
            seen.add(grader["name"])


def _template(text: Any) -> str:
    """OpenAI's ``{{sample.output_text}}`` and ``{{item.x}}`` as our ``{{output}}`` and ``{{x}}``."""
    text = re.sub(r"\{\{\s*sample\.output_text\s*\}\}", "{{output}}", str(text))
    return re.sub(r"\{\{\s*item\.([A-Za-z_][A-Za-z0-9_.]*)\s*\}\}", r"{{\1}}", text)


def _grader(doc: Document, at: tuple[Any, ...], g: Any, name: str, unmapped: list[str],
            modules: dict[str, str]) -> list[dict[str, Any]]:
    where = ".".join(str(p) for p in at) or "grader"
    if not isinstance(g, dict) or g.get("type") not in KINDS:
        raise doc.fail(at, f"expected a grader with type one of: {', '.join(KINDS)}")
    kind = g["type"]
    common = {"name": ident(str(g["name"]))} if g.get("name") else {}
    if kind == "string_check":
        if _template(g.get("input", "")) != "{{output}}":
            unmapped.append(f"{where}: string_check of input {g.get('input')!r} (only the output is graded)")
            return []
        if g.get("operation") not in OPERATIONS:
            raise doc.fail((*at, "operation"), f"expected one of: {', '.join(OPERATIONS)}")
        ours, extra = OPERATIONS[g["operation"]]
        return [{"type": ours, "value": _template(g.get("reference", "")), **extra, **common}]
    if kind == "text_similarity":
        metric = METRICS.get(str(g.get("evaluation_metric")))
        if metric is None:
            unmapped.append(f"{where}: text_similarity metric {g.get('evaluation_metric')!r} (we have fuzzy_match, bleu, rouge_l)")
            return []
        grader = {"type": "text_similarity", "metric": metric, "reference": _template(g.get("reference", "")), **common}
        if isinstance(g.get("pass_threshold"), (int, float)):
            grader["pass_threshold"] = g["pass_threshold"]
        return [grader]
    if kind in ("score_model", "label_model"):
        return [_model(doc, at, g, common, unmapped, where)]
    if kind == "python":
        module = f"{name.replace('-', '_').replace('.', '_')}_graders"
        fn = f"grade_{len(modules) + 1}"
        modules[module] = modules.get(module, "") + _python(fn, str(g.get("source", "")))
        grader = {"type": "python", "fn": f"{module}:{fn}", **common}
        if isinstance(g.get("pass_threshold"), (int, float)):
            grader["pass_threshold"] = g["pass_threshold"]
        return [grader]
    unmapped.append(f"{where}: multi's calculate_output {g.get('calculate_output')!r} (its graders are scored, "
                    "not required: set required on the ones that should decide)")
    subs = g.get("graders") or {}
    out = []
    for key, sub in (subs.items() if isinstance(subs, dict) else []):
        out += [dict(s, name=ident(f"{key}"), required=False) for s in _grader(doc, (*at, "graders", key), sub, name, unmapped, modules)]
    return out


def _model(doc: Document, at: tuple[Any, ...], g: dict[str, Any], common: dict[str, Any], unmapped: list[str],
           where: str) -> dict[str, Any]:
    messages = g.get("input")
    if not isinstance(messages, list):
        raise doc.fail((*at, "input"), "expected the judge's messages: a list of {role, content}")
    text = "\n\n".join(f"{m.get('role', 'user')}: {_template(m.get('content', ''))}" for m in messages if isinstance(m, dict))
    judge: dict[str, Any] = {"base_url": "https://api.openai.com/v1", "model": str(g.get("model") or "gpt-4o-mini"),
                             "api_key_env": "OPENAI_API_KEY"}
    if isinstance(g.get("sampling_params"), dict):
        judge["params"] = g["sampling_params"]
    grader: dict[str, Any] = {"type": g["type"], "judge": {"provider": judge}, **common}
    if g["type"] == "label_model":
        labels = doc.get((*at, "labels"), list, "the labels the judge picks from: a list of texts")
        passing = doc.get((*at, "passing_labels"), list, "the labels that pass: a list of texts")
        grader.update(labels=[str(x) for x in labels], passing_labels=[str(x) for x in passing])
        answer = JSON_ANSWER["label_model"] % ", ".join(grader["labels"])
    else:
        low, high = g.get("range") or [0, 1]
        grader["range"] = [low, high]
        if isinstance(g.get("pass_threshold"), (int, float)):
            grader["pass_threshold"] = g["pass_threshold"]
        answer = JSON_ANSWER["score_model"] % f"{low} to {high}"
    grader["prompt"] = f"{text}\n\nThe output to grade:\n{{{{output}}}}\n\n{answer}"
    unmapped += [f"{where}.{k}: not mapped" for k in g if k not in
                 ("type", "name", "input", "model", "sampling_params", "labels", "passing_labels", "range", "pass_threshold")]
    return grader


def _python(fn: str, source: str) -> str:
    """The grader's source, and a function with our python grader's arguments that calls its ``grade(sample, item)``."""
    return (f"\n\n# --- {fn}: the grader's source, as written in the config\n{source.rstrip()}\n\n\n"
            f"{fn}_grade = grade\n\n\n"
            f"def {fn}(output, vars):\n"
            f'    """Calls the source\'s grade(sample, item) as the OpenAI Evals API does."""\n'
            f'    return float({fn}_grade({{"output_text": output}}, vars))\n')


def _cases(doc: Document, unmapped: list[str]) -> list[dict[str, Any]]:
    """Cases from the body's inline items, or from ``NAME.jsonl`` beside the file."""
    content = None
    if isinstance(doc.data, dict):
        content = ((doc.data.get("data_source") or {}).get("source") or {}).get("content")
    if isinstance(content, list):
        rows = list(enumerate(content, 1))
        shown = f"{display_path(doc.path)} data_source.source.content"
    else:
        beside = doc.path.with_suffix(".jsonl")
        if not beside.is_file():
            raise ImportFailure(f"{display_path(doc.path)}:1: no data items: expected data_source.source.content "
                                f"in the file or rows {{\"item\": {{...}}}} in {display_path(beside)}")
        rows = read_rows(beside)
        shown = display_path(beside)
    cases = []
    for number, row in rows:
        item = row.get("item") if isinstance(row, dict) else None
        if not isinstance(item, dict):
            raise ImportFailure(f"{shown}:{number}: expected a row {{\"item\": {{...}}}}")
        if isinstance(row, dict) and "sample" in row:
            unmapped.append(f"{shown}:{number}: sample (a stored output) not mapped: the target makes the output")
        cases.append({"id": f"item-{number}", "vars": item})
    return cases

