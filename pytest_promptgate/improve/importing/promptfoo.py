"""A promptfoo config (``promptfooconfig.yaml``) as one eval file.

promptfoo runs every prompt with every provider on every test; here prompts and
providers become variants (their product, when both are several), ``tests``
become cases (a var holding a list expands into one case per value, as promptfoo
expands it), ``defaultTest`` gives the eval's graders and shared vars, and each
``assert`` whose type has a grader that decides alike becomes that grader. The
rules were read from promptfoo's assertion handlers (0.123.1): ``equals`` compares
the whole output untrimmed, ``contains*`` and ``starts-with`` are substring tests,
``regex`` is a search, ``latency`` and ``cost`` are upper bounds. Anything else
is listed in the file's header.
"""

from __future__ import annotations

import itertools
from typing import Any

from ...schema import MAX_YAML_BYTES, Unreadable, display_path, read_file
from .imported import SUITE, Document, Imported, eval_name, ident

#: promptfoo assertion type -> (our grader type, extra options) for types that take ``value`` as ours do.
SAME_VALUE = {
    "equals": ("equals", {"strip": False}),
    "not-equals": ("not_equals", {"strip": False}),
    "contains": ("contains", {}),
    "not-contains": ("not_contains", {}),
    "icontains": ("icontains", {}),
    "not-icontains": ("not_contains", {"ignore_case": True}),
    "starts-with": ("starts_with", {}),
    "regex": ("pattern:regex", {}),
    "not-regex": ("pattern:not_regex", {}),
}
#: promptfoo assertion type -> (our grader type, options) for types that take a list of ``values``.
LIST_VALUE = {
    "contains-any": ("contains_any", {}),
    "icontains-any": ("contains_any", {"ignore_case": True}),
    "contains-all": ("contains_all", {}),
    "icontains-all": ("contains_all", {"ignore_case": True}),
}
#: The judge of ``llm-rubric`` when the config names none (promptfoo's default grader is an OpenAI model too).
JUDGE = {"provider": {"base_url": "https://api.openai.com/v1", "model": "gpt-4o-mini", "api_key_env": "OPENAI_API_KEY"}}
KNOWN_KEYS = ("description", "prompts", "providers", "tests", "defaultTest")
#: provider config keys sent as request parameters (OpenAI-compatible names).
PARAMS = {"temperature": "temperature", "max_tokens": "max_tokens", "top_p": "top_p", "seed": "seed",
          "stop": "stop", "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty"}
BASE_URLS = {"openai": ("https://api.openai.com/v1", "OPENAI_API_KEY"), "ollama": ("http://localhost:11434/v1", None)}


def looks_like(data: Any) -> bool:
    """Whether parsed YAML is a promptfoo config: it has ``tests`` or ``providers`` beside ``prompts``."""
    return isinstance(data, dict) and "prompts" in data and ("tests" in data or "providers" in data)


def read(doc: Document) -> list[Imported]:
    """The config as one eval."""
    unmapped = [f"{key}: promptfoo option with no promptgate equivalent" for key in doc.data if key not in KNOWN_KEYS]
    prompts = _prompts(doc, unmapped)
    targets = _targets(doc, unmapped)
    default = doc.data.get("defaultTest") or {}
    if not isinstance(default, dict):
        raise doc.fail(("defaultTest",), "expected a mapping with vars and assert (defaultTest from a file is not read)")
    unmapped += [f"defaultTest.{k}: not mapped" for k in default if k not in ("vars", "assert")]
    graders = _asserts(doc, ("defaultTest", "assert"), default.get("assert") or [], unmapped)
    cases = _cases(doc, default.get("vars") or {}, unmapped)
    name = eval_name(str(doc.data.get("description") or doc.path.stem))
    body: dict[str, Any] = {
        "eval": name,
        "description": str(doc.data.get("description") or f"promptfoo config {doc.path.name}"),
        "suites": [SUITE],
        "prompts": {"prompt": prompts[0][1]},
        "target": targets[0][1],
    }
    variants = _variants(prompts, targets)
    if variants:
        body["variants"] = variants
    if graders:
        body["graders"] = graders
    notes = _notes(doc, targets, graders + [g for case in cases for g in case.get("graders", [])])
    return [Imported(name, f"promptfoo config {display_path(doc.path)}", body, cases, unmapped, notes)]


def _notes(doc: Document, targets: list[tuple[str, Any]], graders: list[dict[str, Any]]) -> list[str]:
    """What a person should review: a stand-in target, a judge the config did not name."""
    notes = []
    if targets == [("echo", "echo")] and "echo" not in str(doc.data.get("providers")):
        notes.append("target: echo stands in for the model: the config names no provider that maps onto a target "
                     "(any that do not are listed below); set target.")
    if any(g["type"] == "label_model" for g in graders):
        notes.append("llm-rubric became a label_model grader (pass/fail) judged by an OpenAI model named here, "
                     "as promptfoo's default grader is; set judge to the one you use.")
    return notes


def _prompts(doc: Document, unmapped: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """(label, prompt) for each prompt of the config: raw text, ``{raw, label}``, or ``file://`` text files."""
    raw = doc.data.get("prompts")
    entries = [raw] if isinstance(raw, str) else raw
    if not isinstance(entries, list) or not entries:
        raise doc.fail(("prompts",), "expected a list of prompts (text, file://path, or {raw, label})")
    prompts = []
    for i, entry in enumerate(entries):
        label = f"prompt-{i + 1}"
        if isinstance(entry, dict):
            label = str(entry.get("label") or entry.get("id") or label)
            entry = entry.get("raw", entry.get("id"))
        if not isinstance(entry, str):
            raise doc.fail(("prompts", i), "expected prompt text, file://path or {raw: ..., label: ...}")
        if entry.startswith("file://"):
            path = doc.path.parent / entry.removeprefix("file://")
            if path.suffix not in (".txt", ".md", ".j2", ".nunjucks", ""):
                unmapped.append(f"prompts[{i}]: {entry} (only text prompt files are read)")
                continue
            try:
                entry = read_file(path, MAX_YAML_BYTES, "prompt files")
            except Unreadable as exc:
                raise doc.fail(("prompts", i), str(exc)) from None
        prompts.append((ident(label), {"template": entry}))
    if not prompts:
        raise doc.fail(("prompts",), "no prompt could be read; expected prompt text or a text file")
    return prompts


def _targets(doc: Document, unmapped: list[str]) -> list[tuple[str, Any]]:
    """(label, target) for each provider that maps onto ours; ``echo`` when none does."""
    raw = doc.data.get("providers") or []
    entries = [raw] if isinstance(raw, (str, dict)) else raw
    targets = []
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        found = _target(entry, f"providers[{i}]", unmapped)
        if found is not None:
            targets.append(found)
    return targets or [("echo", "echo")]


def _target(entry: Any, where: str, unmapped: list[str]) -> tuple[str, Any] | None:
    config: dict[str, Any] = {}
    label = None
    if isinstance(entry, dict):
        config, label, entry = entry.get("config") or {}, entry.get("label"), entry.get("id")
    if entry == "echo":
        return ident(label or "echo"), "echo"
    family, _, rest = str(entry).partition(":")
    model = rest.removeprefix("chat:")
    if family not in BASE_URLS or not model or ":" in model:
        unmapped.append(f"{where}: provider {entry!r} (only echo, openai:MODEL and ollama:MODEL map onto targets)")
        return None
    base_url, key = BASE_URLS[family]
    provider: dict[str, Any] = {"base_url": str(config.get("apiBaseUrl") or base_url), "model": model}
    if key:
        provider["api_key_env"] = str(config.get("apiKeyEnvar") or key)
    params = {PARAMS[k]: v for k, v in config.items() if k in PARAMS}
    if params:
        provider["params"] = params
    unmapped += [f"{where}.config.{k}: not mapped" for k in config if k not in PARAMS and k not in ("apiBaseUrl", "apiKeyEnvar")]
    return ident(label or model), {"provider": provider}


def _variants(prompts: list[tuple[str, Any]], targets: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """One variant per (prompt, provider) pair, as promptfoo's matrix; none when there is one pair."""
    if len(prompts) == 1 and len(targets) == 1:
        return []
    variants: list[dict[str, Any]] = []
    for (p_label, prompt), (t_label, target) in itertools.product(prompts, targets):
        parts = ([p_label] if len(prompts) > 1 else []) + ([t_label] if len(targets) > 1 else [])
        name = ident("-".join(parts))
        if any(v["name"] == name for v in variants):  # two prompts or providers with one label
            name = ident(f"{name}-{len(variants) + 1}")
        variants.append({"name": name, "prompts": {"prompt": prompt}, "target": target})
    return variants


def _cases(doc: Document, shared: dict[str, Any], unmapped: list[str]) -> list[dict[str, Any]]:
    tests = doc.data.get("tests")
    if not isinstance(tests, list) or not tests:
        raise doc.fail(("tests",), "expected a list of tests, each with vars and assert (tests from files are not read)")
    cases = []
    for i, test in enumerate(tests):
        if not isinstance(test, dict):
            raise doc.fail(("tests", i), "expected a test: a mapping with vars and assert")
        unmapped += [f"tests[{i}].{k}: not mapped" for k in test if k not in ("description", "vars", "assert")]
        graders = _asserts(doc, ("tests", i, "assert"), test.get("assert") or [], unmapped)
        given = test.get("vars") or {}
        if not isinstance(given, dict):
            raise doc.fail(("tests", i, "vars"), "expected a mapping of var names to values (vars from files are not read)")
        for k, vars_ in enumerate(_expand({**shared, **given})):
            case: dict[str, Any] = {"id": f"test-{i + 1}" + (f"-{k + 1}" if k or _expands(shared, given) else ""),
                                    "vars": vars_}
            if test.get("description"):
                case["description"] = str(test["description"])
            if graders:
                case["graders"] = graders
            cases.append(case)
    return cases


def _expands(shared: dict[str, Any], given: dict[str, Any]) -> bool:
    return any(isinstance(v, list) for v in {**shared, **given}.values())


def _expand(vars_: dict[str, Any]) -> list[dict[str, Any]]:
    """promptfoo runs a test once per combination of the values of its list vars."""
    names = [name for name, value in vars_.items() if isinstance(value, list)]
    if not names:
        return [vars_]
    return [{**vars_, **dict(zip(names, values))} for values in itertools.product(*(vars_[n] for n in names))]


def _asserts(doc: Document, loc: tuple[Any, ...], asserts: Any, unmapped: list[str]) -> list[dict[str, Any]]:
    if not isinstance(asserts, list):
        raise doc.fail(loc, "expected a list of assertions, each with type and value")
    graders = []
    for j, assertion in enumerate(asserts):
        where = ("defaultTest" if loc[0] == "defaultTest" else f"tests[{loc[1]}]") + f".assert[{j}]"
        if not isinstance(assertion, dict) or not isinstance(assertion.get("type"), str):
            raise doc.fail((*loc, j), "expected an assertion: a mapping with type (and value)")
        grader = _grader(assertion, where, unmapped)
        if grader is not None:
            graders.append(grader)
    return graders


def _grader(assertion: dict[str, Any], where: str, unmapped: list[str]) -> dict[str, Any] | None:
    """Our grader for one promptfoo assertion, or None (and a line in ``unmapped``)."""
    kind, value = assertion["type"], assertion.get("value")
    grader: dict[str, Any] | None = None
    used = {"type", "value", "weight"}
    if kind in SAME_VALUE and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        ours, extra = SAME_VALUE[kind]
        key = "value"
        if ours.startswith("pattern:"):
            ours, key = ours.removeprefix("pattern:"), "pattern"
        grader = {"type": ours, key: str(value), **extra}
    elif kind in LIST_VALUE and isinstance(value, (list, str)):
        ours, extra = LIST_VALUE[kind]
        values = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v) for v in value]
        grader = {"type": ours, "values": values, **extra}
    elif kind == "is-json":
        grader = {"type": "json_schema", "schema": value} if isinstance(value, dict) else {"type": "is_json"}
        if value is not None and not isinstance(value, dict):
            grader = None
    elif kind in ("latency", "cost") and isinstance(assertion.get("threshold"), (int, float)):
        grader = ({"type": "latency", "max_ms": assertion["threshold"]} if kind == "latency"
                  else {"type": "cost", "max_usd": assertion["threshold"]})
        used.add("threshold")
    elif kind == "llm-rubric" and isinstance(value, str):
        grader = {"type": "label_model", "judge": JUDGE, "labels": ["pass", "fail"], "passing_labels": ["pass"],
                  "criteria": value}
    if grader is None:
        unmapped.append(f"{where}: assertion type {kind!r}" + (f" with value {value!r}" if value is not None else "")
                        + " has no promptgate grader that decides alike")
        return None
    if isinstance(assertion.get("weight"), (int, float)):
        grader["weight"] = assertion["weight"]
    unmapped += [f"{where}.{k}: not mapped" for k in assertion if k not in used]
    return grader

