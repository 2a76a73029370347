"""Fuzzing the eval-file loader: whatever the text, ``load_eval`` loads it or raises ``EvalFileError``.

Three sources of documents: random structures shaped like eval files (with the
keys eval files use, and others), mutations of valid files as data (fields
deleted, retyped, shared through aliases, made recursive), and mutations of
their text (lines deleted, duplicated, swapped, retyped; anchors and aliases
inserted; tabs; cuts). Every problem raised must name a file and a line.

Bounded by examples, not time, and derandomized: CI sees the same examples each run.
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_promptgate.graders import GraderRegistry
from pytest_promptgate.schema import EvalFileError, LoadedEval, load_eval

REGISTRY = GraderRegistry.build([])
FUZZ = settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

EVAL_KEYS = ["eval", "description", "suites", "prompts", "target", "variants", "repeat", "repeat_pass", "threshold",
             "warn_drop", "pricing", "graders", "gates", "cases"]
CASE_KEYS = ["id", "description", "vars", "expected", "graders", "tags", "include"]
OTHER_KEYS = ["type", "name", "value", "values", "weight", "required", "failure_mode", "pattern", "template", "file",
              "messages", "registry", "role", "content", "provider", "base_url", "model", "params", "rules", "metric",
              "min", "max", "on_fail", "input", "output", "judge", "labels", "passing_labels", "api_key", "<<"]
TEXTS = ["echo", "fixture:nope", "nowhere.module:fn", "app:label", "{{x}}", "{{expected}}", "{{output}}", "say {{word}}",
         "contains", "equals", "regex", "([0-9]+", "latency", "label_model", "core", "nan", "inf", "-inf", "1e999", "yes",
         "no", "~", "", " ", "\t", "a\nb", "caf\u00e9", "\u2028", "../../etc/passwd", "/etc/passwd", "/dev/zero",
         "rows.jsonl", "rows.csv", "rows.yaml", "prompt.txt", "missing.jsonl", "greet@production", "greet/2",
         "http://127.0.0.1:9/v1", "pass_rate", "latency_ms_p95", "fail", "x" * 300]
#: What an include: or a prompt's file: may name.
REFERENCES = ["rows.jsonl", "rows.csv", "rows.yaml", "prompt.txt", "missing.jsonl", "../../etc/passwd", "/etc/passwd",
              "/dev/zero", "/dev/null", "/proc/self/status", ".", "..", "rows.jsonl/..", "nul\x00.jsonl", "nul\x00.txt",
              "n" * 5000 + ".jsonl", "/" * 5000, "~/rows.jsonl", "fuzz.eval.yaml", "ROWS.JSONL", "rows.jsonl ", ""]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12), st.sampled_from(TEXTS),
)
keys = st.one_of(st.sampled_from(EVAL_KEYS + CASE_KEYS + OTHER_KEYS), st.text(max_size=8), st.integers(-3, 3),
                 st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False, width=16))
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5), max_leaves=30
)
cases = st.lists(st.dictionaries(st.sampled_from(CASE_KEYS) | keys, values, max_size=5) | values, max_size=4)
eval_shaped = st.dictionaries(st.sampled_from(EVAL_KEYS) | keys, values, max_size=10).flatmap(
    lambda head: cases.map(lambda rows: {**head, "cases": rows})
) | st.dictionaries(st.sampled_from(EVAL_KEYS), values, max_size=14)

VALID = [
    {"eval": "good", "suites": ["core"], "target": "echo", "prompts": {"p": {"template": "say {{word}}"}},
     "graders": [{"type": "contains", "value": "say"}], "cases": [{"id": "a", "vars": {"word": "hi"}}]},
    {
        "eval": "rich",
        "description": "every part",
        "suites": ["core", "nightly"],
        "prompts": {"ask": {"file": "prompt.txt"}, "chat": {"messages": [{"role": "user", "content": "{{word}}"}]}},
        "target": "echo",
        "variants": [{"name": "control"}, {"name": "cold", "params": {"temperature": 0, "extra": {"k": [1, 2]}}},
                     {"name": "own", "target": {"provider": {"base_url": "http://127.0.0.1:9/v1", "model": "m"}}}],
        "repeat": 2,
        "repeat_pass": 0.5,
        "threshold": 0.8,
        "warn_drop": 0.1,
        "pricing": {"m": {"input": 0.1, "output": 0.4}},
        "graders": [{"type": "contains", "value": "{{word}}", "failure_mode": "missing_word"},
                    {"type": "regex", "pattern": "[a-z]+", "weight": 2, "required": False},
                    {"type": "latency", "max_ms": 2000}],
        "gates": {"on_fail": "warn", "rules": [{"metric": "pass_rate", "min": 0.5}, {"metric": "latency_ms_p95", "max": 900}]},
        "cases": [
            {"id": "one", "vars": {"word": "hi", "nested": {"deep": [1, {"x": None}]}}, "expected": "hi", "tags": ["t"]},
            {"vars": {"word": "yo"}, "graders": [{"type": "equals", "value": "{{expected}}"}], "expected": "yo"},
            {"include": "rows.jsonl"},
            {"include": "rows.csv"},
            {"include": "rows.yaml"},
        ],
    },
]
INCLUDED = {
    "prompt.txt": "Say {{word}}",
    "rows.jsonl": '{"id": "j1", "vars": {"word": "j"}}\n{"vars": {"word": "k"}, "expected": "k"}\n',
    "rows.csv": "id,word,expected\nc1,c,c\n",
    "rows.yaml": "- {id: y1, vars: {word: y}, expected: y}\n",
}


@pytest.fixture(scope="module")
def directory():
    """A directory with the files the valid evals include; each example writes its eval file there."""
    with tempfile.TemporaryDirectory(prefix="promptgate-fuzz-") as name:
        path = Path(name)
        for file, text in INCLUDED.items():
            (path / file).write_text(text)
        yield path


def write(directory: Path, text: str | bytes) -> Path:
    """``text`` as the eval file ``fuzz.eval.yaml`` of ``directory``."""
    path = directory / "fuzz.eval.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    return path


def load(directory: Path, text: str | bytes) -> None:
    """Load ``text`` as an eval file: it loads, or every problem it raises names a file and a line."""
    path = write(directory, text)
    try:
        loaded = load_eval(path, REGISTRY.options_model, roots=(directory,))
    except EvalFileError as exc:
        assert exc.problems, "an EvalFileError without problems"
        unlocated = [str(p) for p in exc.problems if not p.file or p.line is None]
        assert not unlocated, unlocated
        str(exc)
        return
    assert isinstance(loaded, (LoadedEval, list))


def dump(data: Any) -> str:
    """YAML of ``data``: objects that appear twice become an anchor and aliases, as PyYAML writes them."""
    return yaml.dump(data, Dumper=yaml.SafeDumper, allow_unicode=True, sort_keys=False)


def test_the_valid_files_load(directory):
    for data in VALID:
        assert isinstance(load_eval(write(directory, dump(data)), REGISTRY.options_model, roots=(directory,)), LoadedEval)


@FUZZ
@given(data=eval_shaped)
def test_random_eval_shaped_documents(directory, data):
    load(directory, dump(data))


# --------------------------------------------------------------------------- mutations of data


def paths(node: Any, here: tuple = (), seen: set[int] | None = None) -> list[tuple]:
    """Every place in ``node``: the paths of its mappings' keys and lists' items (a shared one once)."""
    seen = set() if seen is None else seen
    found = [here]
    if isinstance(node, (dict, list)):
        if id(node) in seen:
            return found
        seen.add(id(node))
        for key, value in node.items() if isinstance(node, dict) else enumerate(node):
            found += paths(value, (*here, key), seen)
    return found


def at(node: Any, path: tuple) -> Any:
    for part in path:
        node = node[part]
    return node


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    data = copy.deepcopy(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        places = [p for p in paths(data) if p]
        if not places:
            break
        place = draw(st.sampled_from(places))
        parent, last = at(data, place[:-1]), place[-1]
        operation = draw(st.sampled_from(["delete", "retype", "share", "recurse", "rename", "refer"]))
        if operation == "delete":
            del parent[last]
        elif operation == "retype":
            parent[last] = draw(values)
        elif operation == "refer":  # another file named by an include: or a prompt's file:
            references = [p for p in paths(data) if p and p[-1] in ("include", "file")]
            if references:
                where = draw(st.sampled_from(references))
                at(data, where[:-1])[where[-1]] = draw(st.sampled_from(REFERENCES) | st.text(max_size=8))
        elif operation == "share":  # the same object in two places: an anchor and an alias
            parent[last] = at(data, draw(st.sampled_from(paths(data))))
        elif operation == "recurse":  # a node inside itself: a recursive alias
            container = at(data, draw(st.sampled_from([p for p in paths(data) if isinstance(at(data, p), (dict, list))])))
            if isinstance(container, dict):
                container[draw(keys)] = container
            else:
                container.append(container)
        elif isinstance(parent, dict):
            parent[draw(keys)] = parent.pop(last)
    return data


@FUZZ
@given(data=mutated())
def test_mutated_valid_files(directory, data):
    load(directory, dump(data))


@FUZZ
@given(reference=st.sampled_from(REFERENCES) | st.text(max_size=10), suffix=st.sampled_from(["", ".jsonl", ".yaml", ".csv"]))
def test_any_file_named_by_an_include_or_a_prompt(directory, reference, suffix):
    """Names of files that are not there, not files, outside the directory, unusable as names."""
    load(directory, dump({"eval": "refs", "target": "echo", "prompts": {"p": {"file": reference + suffix}},
                          "cases": [{"include": reference + suffix}]}))


# --------------------------------------------------------------------------- mutations of text


TOKENS = ["&a ", "*a", "&b [*a, *a, *a]", "<<: *a", "!!int ", "!!python/object:os.system ", "!!set ", "? ", "- ", ": ",
          "{", "}", "[", "]", "\t", "---\n", "'", '"', "#", "%YAML 1.1\n", "\ufeff", ".nan", ".inf", "1e+999", "null",
          "~", "9" * 5000, "\x00", "\udcff"]


@st.composite
def mutated_text(draw: st.DrawFn) -> str | bytes:
    lines = dump(draw(st.sampled_from(VALID))).split("\n")
    for _ in range(draw(st.integers(1, 5))):
        i = draw(st.integers(0, len(lines) - 1))
        operation = draw(st.sampled_from(["delete", "duplicate", "swap", "insert", "replace", "anchor", "cut"]))
        if operation == "delete" and len(lines) > 1:
            del lines[i]
        elif operation == "duplicate":
            lines.insert(i, lines[i])
        elif operation == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif operation in ("insert", "replace"):
            line = lines[i]
            k = draw(st.integers(0, len(line)))
            token = draw(st.sampled_from(TOKENS) | st.text(max_size=6))
            lines[i] = line[:k] + token + line[k + (draw(st.integers(0, 5)) if operation == "replace" else 0):]
        elif operation == "anchor":  # an anchor on one value, an alias to it on another
            j = draw(st.integers(0, len(lines) - 1))
            lines[i] = lines[i].replace(": ", ": &z ", 1)
            lines[j] = lines[j].split(": ", 1)[0] + ": *z" if ": " in lines[j] else lines[j] + " *z"
        else:
            lines = lines[: i + 1]
            lines[-1] = lines[-1][: draw(st.integers(0, len(lines[-1])))]
    text = "\n".join(lines)
    if draw(st.booleans()):
        return text
    raw = text.encode("utf-8", "surrogatepass")
    k = draw(st.integers(0, len(raw)))
    return raw[:k] + draw(st.binary(max_size=3)) + raw[k:]  # bytes that may not be UTF-8


@FUZZ
@given(text=mutated_text())
def test_mutated_text_of_valid_files(directory, text):
    load(directory, text)


YAML_PIECES = ["a: 1", "b: -2.5e3", "c: ~", "d: yes", "e: 'q'", 'f: "x\\ty"', "g: [1, 'two', {h: null}]", "<<: {m: 1}",
               "n: &n {o: [p]}", "r: *n", "s: !!str 12", "t: !!int '7'", "u: .nan", "v: 2024-01-01", "w: !!set {x}",
               "? [k]\n  : v", "y: |\n  line", "z: {<<: *n, o: 2}", "- item", "aa: !!float 1", "bb: 0x1F", "cc: 1_000"]


@FUZZ
@given(pieces=st.lists(st.sampled_from(YAML_PIECES), max_size=8), nest=st.booleans())
def test_the_loaders_one_walk_gives_what_pyyaml_gives(pieces, nest):
    """The loader builds plain documents in one walk over the nodes (a 100 000-case file read 3x sooner); for any
    document it gives what PyYAML's constructor gives for the same nodes, or the same error."""
    from pytest_promptgate.schema.source import _Loader

    text = "\n".join(("root:\n  " + piece.replace("\n", "\n  ")) if nest else piece for piece in pieces)

    def construct(walk: bool) -> Any:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            return loader.construct_document(node) if walk else yaml.constructor.SafeConstructor.construct_document(loader, node)
        except yaml.YAMLError as exc:
            return ("error", type(exc).__name__, str(exc).split("\n")[0])
        finally:
            loader.dispose()

    assert repr(construct(True)) == repr(construct(False))  # repr: NaN is not equal to itself


def test_aliases_are_bounded_without_walking_them(directory):
    """A billion laughs, and one of ten billion: refused at the alias that crosses the limit (not after 10⁹ steps)."""
    for levels in (9, 10):
        lines = ["a0: &a0 [" + ", ".join(['"lol"'] * 10) + "]"]
        lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels + 1)]
        with pytest.raises(EvalFileError, match=r"fuzz.eval.yaml:6:\d+: alias \*a4 stands for 111,111 nodes"):
            load_eval(write(directory, "\n".join(lines) + "\n"), REGISTRY.options_model)


def test_json_keys_of_nested_values_hash_alike_however_written(directory):
    """A derived id hashes the case as JSON: ``{1: a}`` and ``{"1": a}`` are one case, written twice."""
    text = dump({"eval": "k", "target": "echo", "cases": [{"vars": {"x": {1: "a"}}}, {"vars": {"x": {"1": "a"}}}]})
    with pytest.raises(EvalFileError, match="duplicate case id 'fuzz-"):
        load_eval(write(directory, text), REGISTRY.options_model)


json_rows = st.lists(
    st.one_of(st.builds(json.dumps, values), st.text(max_size=30),
              st.sampled_from(['{"id": "a"}', '{"vars": {"1": 2}}', "NaN", "[" * 300, '{"id": ' + "1" * 5000 + "}"])),
    max_size=5,
)


@FUZZ
@given(rows=json_rows, header=st.sampled_from(["id,word", "", ",", "id,,x", "\ufeffid,expected,tags"]), cells=st.text(max_size=40))
def test_random_included_rows(directory, rows, header, cells):
    (directory / "fuzz-rows.jsonl").write_text("\n".join(rows), encoding="utf-8", errors="surrogatepass")
    (directory / "fuzz-rows.csv").write_text(f"{header}\n{cells}\n", encoding="utf-8", errors="surrogatepass")
    load(directory, dump({"eval": "rows", "target": "echo", "cases": [{"include": "fuzz-rows.jsonl"}, {"include": "fuzz-rows.csv"}]}))
