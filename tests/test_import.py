"""``pytest --prompt-import SRC --prompt-import-to DIR``: other tools' evals as eval files, and run.

Each source format is written here by hand from its published layout (openai/evals'
``evals/registry``, OpenAI's grader configs, promptfoo's ``promptfooconfig.yaml``),
imported, and the written evals are run the way a user runs them. Their case
outcomes are compared with what the source tool decides for the same outputs:
openai/evals' rules are re-implemented below as an oracle (quoted from its
source), and promptfoo's decisions are those promptfoo 0.123.1 itself gave for
this config (recorded here, and made again by the real promptfoo with tests/promptfoo_live.py).
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_promptgate.graders.openai_rules import fuzzy_match, json_match
from pytest_promptgate.graders.patterns import compiled
from pytest_promptgate.improve.importing.openai_evals import _per_case

# --------------------------------------------------------------------------- openai/evals

REGISTRY = """
arith:
  id: arith.dev.v0
  description: Sums.
  metrics: [accuracy]
arith.dev.v0:
  class: evals.elsuite.basic.match:Match
  args:
    samples_jsonl: arith/samples.jsonl
arith-includes:
  id: arith-includes.dev.v0
arith-includes.dev.v0:
  class: evals.elsuite.basic.includes:Includes
  args:
    samples_jsonl: arith/samples.jsonl
    ignore_case: true
arith-fuzzy:
  id: arith-fuzzy.dev.v0
arith-fuzzy.dev.v0:
  class: evals.elsuite.basic.fuzzy_match:FuzzyMatch
  args:
    samples_jsonl: arith/samples.jsonl
arith-json:
  id: arith-json.dev.v0
arith-json.dev.v0:
  class: evals.elsuite.basic.json_match:JsonMatch
  args:
    samples_jsonl: arith/json.jsonl
"""

#: (user message, ideal, the model's output): outputs chosen to sit on each rule's edges.
SAMPLES = [
    ("2+2", "4", "4"),
    ("3+3", ["6", "six"], "Six."),
    ("name the capital", "Paris", "The capital is paris"),
    ("a number", "10", " 10"),
    ("spell it", "The Answer", "answer!"),
    ("nothing", "42", "forty-two"),
    ("braces", "{{x}}", "{{x}} it is"),
    ("empty", "", "anything"),
]
JSON_SAMPLES = [
    ("obj", '{"a": 1, "b": [1, 2]}', '{"b": [1, 2], "a": 1.0}'),
    ("extra key", '{"a": 1}', '{"a": 1, "c": null}'),
    ("two answers", ['{"a": 1}', '{"a": 2}'], '{"a": 2}'),
    ("not json", '{"a": 1}', "a: 1"),
    ("list", "[1, 2]", "[2, 1]"),
]
SYSTEM = "Answer briefly."


def oracle_match(sampled: str, ideal) -> bool:
    """evals/api.py record_and_check_match: the output starts with one of the ideal answers."""
    return any(sampled.startswith(option) for option in (ideal if isinstance(ideal, list) else [ideal]))


def oracle_includes(sampled: str, ideal, ignore_case: bool) -> bool:
    """evals/elsuite/basic/includes.py with utils.get_answer: ``rfind`` of each answer (lower-cased with ignore_case)."""
    answers = ideal if isinstance(ideal, list) else [ideal]
    if ignore_case:
        return any(sampled.lower().rfind(a.lower()) != -1 for a in answers)
    return any(sampled.rfind(a) != -1 for a in answers)


def _normalize(s: str) -> str:
    """evals/elsuite/utils.py normalize."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def oracle_fuzzy(sampled: str, ideal) -> bool:
    """evals/elsuite/utils.py fuzzy_match, over each ideal answer (basic/fuzzy_match.py)."""
    def fuzzy(s1: str, s2: str) -> bool:
        s1, s2 = _normalize(s1), _normalize(s2)
        if s1 == "" or s2 == "":
            return s1 == s2
        return s1 in s2 or s2 in s1
    return any(fuzzy(sampled, a) for a in (ideal if isinstance(ideal, list) else [ideal]))


def oracle_json(sampled: str, ideal) -> bool:
    """evals/elsuite/basic/json_match.py: json_match against each answer; output that is not JSON never matches."""
    def json_match(s, c) -> bool:
        if s is None or c is None:
            return False
        if isinstance(s, dict):
            return isinstance(c, dict) and all(json_match(s.get(k), c.get(k)) for k in set(s) | set(c))
        if isinstance(s, list):
            return isinstance(c, list) and len(s) == len(c) and all(json_match(x, y) for x, y in zip(s, c))
        return s == c
    try:
        said = json.loads(sampled)
    except ValueError:
        said = None
    return any(json_match(said, json.loads(a)) for a in (ideal if isinstance(ideal, list) else [ideal]))


ASCII = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12)
ANSWER_LISTS = st.one_of(st.text(max_size=8), st.lists(st.text(max_size=8), min_size=1, max_size=3))
JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.floats(-2, 2, allow_nan=False) | st.text(max_size=3),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3),
                    max_leaves=8)


def _grades(grader: dict, output: str) -> bool:
    """What the regex grader written for a case decides (the same compile and search as the grader)."""
    return compiled(grader["pattern"], ignore_case=grader.get("ignore_case", False)).search(output) is not None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=12), ANSWER_LISTS)
def test_match_regex_is_openai_evals_startswith(output, ideal):
    assert _grades(_per_case({"rule": "starts"}, ideal), output) == oracle_match(output, ideal)


@settings(max_examples=300, deadline=None)
@given(ASCII, st.one_of(ASCII, st.lists(ASCII, min_size=1, max_size=3)), st.booleans())
def test_includes_regex_is_openai_evals_rfind(output, ideal, ignore_case):
    """ASCII: Python's lower() and the regex engine's case folding part ways on a few other letters (such as 'İ')."""
    grader = _per_case({"rule": "contains", "ignore_case": ignore_case}, ideal)
    assert _grades(grader, output) == oracle_includes(output, ideal, ignore_case)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=12), ANSWER_LISTS)
def test_fuzzy_match_is_openai_evals_fuzzy_match(output, ideal):
    assert fuzzy_match(output, ideal)[0] == oracle_fuzzy(output, ideal)


@settings(max_examples=300, deadline=None)
@given(JSON, st.lists(JSON, min_size=1, max_size=2), st.booleans())
def test_json_match_is_openai_evals_json_match(said, answers, garbled):
    output = json.dumps(said) + ("}" if garbled else "")
    ideal = [json.dumps(a) for a in answers]
    assert json_match(output, ideal)[0] == oracle_json(output, ideal)


ANSWERS = '''
OUTPUTS = %r

def reply(vars):
    return OUTPUTS[vars["user"]]
'''


def _registry(root: Path) -> Path:
    (root / "evals/registry/data/arith").mkdir(parents=True)
    (root / "evals/registry/evals").mkdir(parents=True)
    path = root / "evals/registry/evals/arith.yaml"
    path.write_text(REGISTRY)
    for name, rows in (("samples", SAMPLES), ("json", JSON_SAMPLES)):
        lines = [json.dumps({"input": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}],
                             "ideal": ideal}) for q, ideal, _ in rows]
        (root / f"evals/registry/data/arith/{name}.jsonl").write_text("\n".join(lines) + "\n")
    return path


def _outcomes(recorded) -> dict[tuple[str, str], bool]:
    return {(r["eval"], r["case_id"]): r["passed"] for r in recorded()}


def _point_at(directory: Path, target: str) -> None:
    """What a user does after importing: name the model (here a test target) instead of ``echo``."""
    for path in directory.glob("*.eval.yaml"):
        path.write_text(path.read_text().replace("\ntarget: echo\n", f"\ntarget: {target}\n"))


def test_openai_evals_basic_classes_decide_as_openai_evals(pytester, recorded):
    """Match, Includes (ignore_case), FuzzyMatch and JsonMatch: every case as the oracle decides it."""
    src = _registry(pytester.path)
    result = pytester.runpytest("--prompt-import", str(src.relative_to(pytester.path)), "--prompt-import-to", "out")
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "promptgate: imported arith: 8 case(s) into out/arith.eval.yaml",
        "promptgate: imported arith-includes: 8 case(s) into out/arith-includes.eval.yaml",
        "promptgate: imported arith-fuzzy: 8 case(s) into out/arith-fuzzy.eval.yaml",
        "promptgate: imported arith-json: 5 case(s) into out/arith-json.eval.yaml",
        "promptgate: run them with: pytest --prompt-suite imported out",
    ])
    assert "test session starts" not in result.stdout.str()  # runs no tests
    written = yaml.safe_load((pytester.path / "out/arith.eval.yaml").read_text())
    assert written["prompts"]["input"]["messages"] == [
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": "{{user}}"}]
    assert "# Everything in the source was mapped." in (pytester.path / "out/arith.eval.yaml").read_text()

    outputs = {q: out for q, _, out in SAMPLES + JSON_SAMPLES}
    pytester.makepyfile(answers=ANSWERS % outputs)
    pytester.syspathinsert()
    _point_at(pytester.path / "out", "answers:reply")
    pytester.runpytest("--prompt-suite", "imported", "out", "--prompt-no-tracking", "-p", "no:randomly")
    ours = _outcomes(recorded)
    expected = {}
    for i, (_, ideal, out) in enumerate(SAMPLES, 1):
        expected[("arith", f"sample-{i}")] = oracle_match(out, ideal)
        expected[("arith-includes", f"sample-{i}")] = oracle_includes(out, ideal, ignore_case=True)
        expected[("arith-fuzzy", f"sample-{i}")] = oracle_fuzzy(out, ideal)
    for i, (_, ideal, out) in enumerate(JSON_SAMPLES, 1):
        expected[("arith-json", f"sample-{i}")] = oracle_json(out, ideal)
    assert ours == expected
    # The samples reach both outcomes under every rule, so agreement is not agreement on "all fail".
    for name in ("arith", "arith-includes", "arith-fuzzy", "arith-json"):
        assert {v for (e, _), v in expected.items() if e == name} == {True, False}


MODELGRADED_ENTRY = """
qa-closed:
  id: qa-closed.dev.v0
qa-closed.dev.v0:
  class: evals.elsuite.modelgraded.classify:ModelBasedClassify
  args:
    samples_jsonl: qa/samples.jsonl
    eval_type: cot_classify
    modelgraded_spec: closedqa
    modelgraded_spec_args:
      criteria: "correctness: Is the answer correct?"
"""
#: evals/registry/modelgraded/closedqa.yaml of openai/evals (its prompt shortened).
CLOSEDQA = """
closedqa:
  prompt: |-
    You are assessing a submitted answer on a given task based on a criterion. Here is the data:
    [Task]: {input}
    [Submission]: {completion}
    [Criterion]: {criteria}
    Does the submission meet the criterion? Print "Y" or "N".
  eval_type: cot_classify
  choice_scores:
    "Y": 1.0
    "N": 0.0
  choice_strings: 'YN'
  input_outputs:
    input: "completion"
"""
JUDGE = '''
import json, re

def judge(prompt):
    """Says Y when the submission is the one right answer the task names, as a careful judge would."""
    task = re.search(r"\\[Task\\]: (.*)", prompt).group(1)
    said = re.search(r"\\[Submission\\]: (.*)", prompt).group(1)
    right = {"2+2": "4", "3+3": "6"}[task]
    return json.dumps({"label": "Y" if said.strip() == right else "N", "reason": "checked"})
'''


def test_openai_evals_model_graded_spec_becomes_a_label_model_judge(pytester, recorded):
    """A ModelBasedClassify entry: the spec's prompt, choices and choice_scores in a label_model grader."""
    (pytester.path / "evals/registry/evals").mkdir(parents=True)
    (pytester.path / "evals/registry/data/qa").mkdir(parents=True)
    (pytester.path / "evals/registry/modelgraded").mkdir(parents=True)
    (pytester.path / "evals/registry/evals/qa.yaml").write_text(MODELGRADED_ENTRY)
    (pytester.path / "evals/registry/modelgraded/closedqa.yaml").write_text(CLOSEDQA)
    (pytester.path / "evals/registry/data/qa/samples.jsonl").write_text(
        '{"input": "2+2", "ideal": "4"}\n{"input": "3+3", "ideal": "6"}\n')
    result = pytester.runpytest("--prompt-import", "evals/registry/evals/qa.yaml", "--prompt-import-to", "out")
    assert result.ret == 0
    text = (pytester.path / "out/qa-closed.eval.yaml").read_text()
    grader = yaml.safe_load(text)["graders"][0]
    assert grader["type"] == "label_model"
    assert grader["labels"] == ["Y", "N"] and grader["passing_labels"] == ["Y"]
    assert "[Task]: {{input}}\n[Submission]: {{output}}\n[Criterion]: correctness: Is the answer correct?" in grader["prompt"]
    assert '{"label": "<one of: Y, N>"' in grader["prompt"]

    pytester.makepyfile(judges=JUDGE, model="def reply(vars):\n    return {'2+2': '4', '3+3': '7'}[vars['input']]\n")
    pytester.syspathinsert()
    _point_at(pytester.path / "out", "model:reply")
    path = pytester.path / "out/qa-closed.eval.yaml"
    data = yaml.safe_load(path.read_text())
    data["graders"][0]["judge"] = "judges:judge"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    pytester.runpytest("--prompt-suite", "imported", "out", "--prompt-no-tracking")
    assert _outcomes(recorded) == {("qa-closed", "sample-1"): True, ("qa-closed", "sample-2"): False}


def test_samples_past_fifty_go_to_a_jsonl_include(pytester):
    """A large sample set is written as a ``.jsonl`` include beside the eval file, one case per line."""
    src = _registry(pytester.path)
    rows = [json.dumps({"input": f"q{i}", "ideal": str(i)}) for i in range(120)]
    (pytester.path / "evals/registry/data/arith/samples.jsonl").write_text("\n".join(rows) + "\n")
    result = pytester.runpytest("--prompt-import", str(src.relative_to(pytester.path)), "--prompt-import-to", "out")
    result.stdout.fnmatch_lines(["promptgate: imported arith: 120 case(s) into out/arith.eval.yaml, out/arith.cases.jsonl"])
    assert yaml.safe_load((pytester.path / "out/arith.eval.yaml").read_text())["cases"] == [{"include": "arith.cases.jsonl"}]
    assert len((pytester.path / "out/arith.cases.jsonl").read_text().splitlines()) == 120
    result = pytester.runpytest("--prompt-suite", "imported", "out", "--prompt-no-tracking")
    # echo says "q7": it does not start with "7" (Match), but includes it (Includes) and fuzzily matches it
    # (FuzzyMatch); the JSON samples' chat text is not JSON.
    result.assert_outcomes(passed=240, failed=125)


# --------------------------------------------------------------------------- OpenAI grader configs

GRADERS = {
    "name": "Support replies",
    "testing_criteria": [
        {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
         "reference": "{{item.answer}}", "operation": "eq"},
        {"type": "string_check", "name": "polite", "input": "{{ sample.output_text }}", "reference": "please",
         "operation": "ilike"},
        {"type": "string_check", "name": "on-input", "input": "{{item.question}}", "reference": "x", "operation": "eq"},
        {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}", "reference": "!",
         "operation": "ne"},
        {"type": "text_similarity", "name": "close", "input": "{{sample.output_text}}", "reference": "{{item.answer}}",
         "evaluation_metric": "fuzzy_match", "pass_threshold": 0.5},
        {"type": "text_similarity", "name": "meteor", "input": "{{sample.output_text}}", "reference": "x",
         "evaluation_metric": "meteor", "pass_threshold": 0.5},
        {"type": "label_model", "name": "tone", "model": "gpt-4o-mini",
         "input": [{"role": "system", "content": "Classify the tone."},
                   {"role": "user", "content": "Reply: {{sample.output_text}}"}],
         "labels": ["kind", "rude"], "passing_labels": ["kind"]},
        {"type": "score_model", "name": "helpful", "model": "gpt-4o-mini", "range": [0, 10], "pass_threshold": 6,
         "input": [{"role": "user", "content": "How helpful is this reply to {{item.question}}? {{sample.output_text}}"}]},
        {"type": "python", "name": "short", "source": "def grade(sample, item):\n    return 1.0 if len(sample['output_text']) < 40 else 0.0\n"},
        {"type": "multi", "name": "both", "calculate_output": "0.5 * a + 0.5 * b",
         "graders": {"a": {"type": "string_check", "input": "{{sample.output_text}}", "reference": "please",
                           "operation": "like"}}},
    ],
    "data_source": {"type": "jsonl", "source": {"type": "file_content", "content": [
        {"item": {"question": "refund?", "answer": "Yes, please send the receipt."}},
        {"item": {"question": "hours?", "answer": "9 to 5"}},
    ]}},
}


JUDGES = '''
import json

def kind(prompt):
    return json.dumps({"label": "kind"})

def score(prompt):
    return json.dumps({"score": 7 if "receipt" in prompt.rsplit("The output to grade:", 1)[-1] else 5})
'''


def test_openai_grader_configs_map_onto_graders_and_list_the_rest(pytester, recorded):
    (pytester.path / "graders.json").write_text(json.dumps(GRADERS, indent=2))
    result = pytester.runpytest("--prompt-import", "graders.json", "--prompt-import-to", "out")
    assert result.ret == 0
    result.stdout.fnmatch_lines([("promptgate: imported support-replies: 2 case(s) into out/support-replies.eval.yaml, "
                                  "out/support_replies_graders.py; 3 thing(s) not mapped, listed at the top of the file")])
    text = (pytester.path / "out/support-replies.eval.yaml").read_text()
    graders = {g["name"]: g for g in yaml.safe_load(text)["graders"]}
    assert graders["exact"] == {"type": "equals", "value": "{{answer}}", "strip": False, "name": "exact"}
    assert graders["exact-2"] == {"type": "not_equals", "value": "!", "strip": False, "name": "exact-2"}
    assert graders["polite"]["type"] == "icontains"
    assert graders["close"] == {"type": "text_similarity", "metric": "fuzzy", "reference": "{{answer}}",
                                "name": "close", "pass_threshold": 0.5}
    assert graders["tone"]["labels"] == ["kind", "rude"] and "Reply: {{output}}" in graders["tone"]["prompt"]
    assert graders["helpful"]["range"] == [0, 10] and graders["helpful"]["pass_threshold"] == 6
    assert graders["a"]["required"] is False
    header = text.split("\n\n")[0]
    for unmapped in ("testing_criteria.2: string_check of input '{{item.question}}'",
                     "testing_criteria.5: text_similarity metric 'meteor'",
                     "testing_criteria.9: multi's calculate_output '0.5 * a + 0.5 * b'"):
        assert unmapped in header.replace("\n#     ", " ")

    # Run it: the item's answer as the output (echo of a prompt made of it), a judge that always says kind.
    path = pytester.path / "out/support-replies.eval.yaml"
    data = yaml.safe_load(text)
    data["prompts"] = {"reply": {"template": "{{answer}}"}}
    judges = {"label_model": "judges:kind", "score_model": "judges:score"}
    data["graders"] = [dict(g, judge=judges[g["type"]]) if g["type"] in judges else g for g in data["graders"]]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    pytester.makepyfile(judges=JUDGES)
    pytester.syspathinsert()
    pytester.makeini("[pytest]\npythonpath = out\n")
    pytester.runpytest("--prompt-suite", "imported", "out", "--prompt-no-tracking")
    # eq answer (both pass), ilike 'please' (only the first), fuzzy to itself, kind, 7 of 10 for a receipt and 5
    # for hours (below 6), short (both under 40).
    assert _outcomes(recorded) == {("support-replies", "item-1"): True, ("support-replies", "item-2"): False}


# --------------------------------------------------------------------------- promptfoo

PROMPTFOO = r"""
description: Greeting checks
prompts:
  - "Say hello to {{name}} in {{lang}}"
  - label: short
    raw: "hi {{name}}"
providers:
  - echo
defaultTest:
  vars:
    lang: English
  assert:
    - type: contains
      value: "{{name}}"
tests:
  - description: plain
    vars: {name: Ana}
    assert:
      - type: equals
        value: "Say hello to Ana in English"
      - type: icontains
        value: "SAY"
  - vars: {name: Ben, lang: French}
    assert:
      - type: starts-with
        value: "Say"
      - type: not-contains
        value: "English"
      - type: contains-any
        value: [French, German]
  - vars: {name: [Cy, Di]}
    assert:
      - type: regex
        value: "^hi [A-Z]"
      - type: contains-all
        value: "hi, {{name}}"
      - type: not-regex
        value: "\\d"
  - vars: {name: Ed}
    assert:
      - type: icontains-any
        value: "HELLO, hey"
      - type: latency
        threshold: 5000
      - type: not-icontains
        value: "ED IN"
  - vars: {name: Flo}
    assert:
      - type: is-json
  - vars: {name: " Gus "}
    assert:
      - type: equals
        value: "hi  Gus"
"""
#: What promptfoo 0.123.1 decided for this config with its echo provider (``promptfoo eval -c ... -o out.json``,
#: ``results.results[].success`` by prompt index and the test's ``name`` var), recorded by running it.
PROMPTFOO_SAYS = {
    (0, "Ana"): True, (1, "Ana"): False, (0, "Ben"): True, (1, "Ben"): False, (0, "Cy"): False, (1, "Cy"): True,
    (0, "Di"): False, (1, "Di"): True, (0, "Ed"): False, (1, "Ed"): False, (0, "Flo"): False, (1, "Flo"): False,
    (0, " Gus "): False, (1, " Gus "): False,
}
VARIANTS = ("prompt-1", "short")


def _our_decisions(pytester, recorded) -> dict[tuple[int, str], bool]:
    text = (pytester.path / "out/greeting-checks.eval.yaml").read_text()
    names = {case["id"]: case["vars"]["name"] for case in yaml.safe_load(text)["cases"]}
    pytester.runpytest("--prompt-suite", "imported", "out", "--prompt-no-tracking")
    return {(VARIANTS.index(r["variant"]), names[r["case_id"]]): r["passed"] for r in recorded()}


def test_promptfoo_config_decides_as_promptfoo(pytester, recorded):
    (pytester.path / "promptfooconfig.yaml").write_text(PROMPTFOO)
    result = pytester.runpytest("--prompt-import", "promptfooconfig.yaml", "--prompt-import-to", "out")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["promptgate: imported greeting-checks: 7 case(s) into out/greeting-checks.eval.yaml"])
    assert _our_decisions(pytester, recorded) == PROMPTFOO_SAYS


def test_what_promptfoo_has_and_we_do_not_is_listed_in_the_header(pytester):
    (pytester.path / "promptfooconfig.yaml").write_text("""
prompts: ["Tell me about {{topic}}"]
providers: [openai:gpt-4o-mini, "anthropic:messages:claude-3-5-sonnet"]
outputPath: results.html
tests:
  - vars: {topic: bread}
    threshold: 0.5
    assert:
      - type: javascript
        value: output.length < 500
      - type: similar
        value: bread is baked
        threshold: 0.8
      - type: contains
        value: bread
        metric: mentions
      - type: llm-rubric
        value: Is about bread
""")
    result = pytester.runpytest("--prompt-import", "promptfooconfig.yaml", "--prompt-import-to", "out")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*: 1 case(s) into out/promptfooconfig.eval.yaml; 6 thing(s) not mapped, listed at the top of the file"])
    text = (pytester.path / "out/promptfooconfig.eval.yaml").read_text()
    header = text.split("\n\n")[0].replace("\n#     ", " ")
    for line in ("#   - outputPath: promptfoo option with no promptgate equivalent",
                 "#   - providers[1]: provider 'anthropic:messages:claude-3-5-sonnet'",
                 "#   - tests[0].threshold: not mapped",
                 "#   - tests[0].assert[0]: assertion type 'javascript' with value 'output.length < 500'",
                 "#   - tests[0].assert[1]: assertion type 'similar' with value 'bread is baked'",
                 "#   - tests[0].assert[2].metric: not mapped"):
        assert line in header
    data = yaml.safe_load(text)
    assert data["target"] == {"provider": {"base_url": "https://api.openai.com/v1", "model": "gpt-4o-mini",
                                           "api_key_env": "OPENAI_API_KEY"}}
    assert data["cases"][0]["graders"] == [{"type": "contains", "value": "bread"}, {
        "type": "label_model", "judge": data["target"], "labels": ["pass", "fail"], "passing_labels": ["pass"],
        "criteria": "Is about bread"}]
    result = pytester.runpytest("--prompt-suite", "imported", "out", "--prompt-no-tracking", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["out/promptfooconfig.eval.yaml::default::test-1"])


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("files", "message"), [
    ({"src.yaml": "prompts: [a\n"}, "src.yaml:2:1: invalid YAML: *"),
    ({"src.yaml": "just: text\n"}, "src.yaml:1: expected an openai/evals registry file *"),
    ({"src.yaml": "prompts: [hi]\ntests:\n  - vars: {a: 1}\n    assert: {type: contains}\n"},
     "src.yaml:4:13: tests[0].assert: expected a list of assertions, each with type and value"),
    ({"src.yaml": "e:\n  id: e.v0\ne.v0:\n  class: evals.elsuite.basic.match:Match\n  args:\n    samples_jsonl: x.jsonl\n"},
     "src.yaml:6:20: e.v0.args.samples_jsonl: file not found; looked for x.jsonl"),
    ({"src.yaml": "e.v0:\n  class: m:Match\n  args: {samples_jsonl: s.jsonl}\n", "s.jsonl": '{"input": "a", "ideal": "b"}\n{"input": \n'},
     "s.jsonl:2: invalid JSON: *"),
    ({"src.yaml": "e.v0:\n  class: m:Match\n  args: {samples_jsonl: s.jsonl}\n", "s.jsonl": '{"input": "a"}\n'},
     "s.jsonl:1: sample has no 'ideal'; expected keys input and ideal"),
    ({"g.json": '{\n\t"type": "string_check",\n\t"input": \n}\n'}, "g.json:4: invalid JSON: Expecting value*"),
    ({"g.json": '{"type": "string_check", "input": "{{sample.output_text}}", "reference": "a", "operation": "eq"}'},
     "g.json:1: no data items: expected data_source.source.content in the file or rows *"),
])
def test_input_it_cannot_read_is_one_located_line_and_exit_1(pytester, files, message):
    for name, text in files.items():
        (pytester.path / name).write_text(text)
    result = pytester.runpytest("--prompt-import", next(iter(files)), "--prompt-import-to", "out")
    assert result.ret == 1
    result.stderr.fnmatch_lines([f"promptgate: --prompt-import: {message}"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    assert not (pytester.path / "out").exists()


def test_an_existing_file_is_never_replaced(pytester):
    (pytester.path / "promptfooconfig.yaml").write_text("prompts: [hi]\ntests: [{vars: {}}]\n")
    (pytester.path / "out").mkdir()
    (pytester.path / "out/promptfooconfig.eval.yaml").write_text("# my edits\n")
    result = pytester.runpytest("--prompt-import", "promptfooconfig.yaml", "--prompt-import-to", "out")
    assert result.ret == 1
    result.stderr.fnmatch_lines([("promptgate: --prompt-import: out/promptfooconfig.eval.yaml exists; remove it or "
                                  "import into another --prompt-import-to")])
    assert (pytester.path / "out/promptfooconfig.eval.yaml").read_text() == "# my edits\n"


def test_import_needs_a_directory(pytester):
    result = pytester.runpytest("--prompt-import", "x.yaml")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--prompt-import needs --prompt-import-to DIR*"])


def test_promptfoo_prompts_times_providers_are_variants(pytester):
    """promptfoo runs every prompt with every provider: one variant per pair, named by their labels."""
    (pytester.path / "p.txt").write_text("Write about {{topic}}")
    (pytester.path / "promptfooconfig.yaml").write_text("""
prompts: ["About {{topic}}", {label: from-file, raw: "file://p.txt"}]
providers: [echo, {id: "ollama:chat:llama3", config: {temperature: 0}}]
tests: [{vars: {topic: rye}}]
""")
    assert pytester.runpytest("--prompt-import", "promptfooconfig.yaml", "--prompt-import-to", "out").ret == 0
    data = yaml.safe_load((pytester.path / "out/promptfooconfig.eval.yaml").read_text())
    assert [v["name"] for v in data["variants"]] == ["prompt-1-echo", "prompt-1-llama3", "from-file-echo", "from-file-llama3"]
    assert data["variants"][3] == {"name": "from-file-llama3", "prompts": {"prompt": {"template": "Write about {{topic}}"}},
                                   "target": {"provider": {"base_url": "http://localhost:11434/v1", "model": "llama3",
                                                           "params": {"temperature": 0}}}}
    result = pytester.runpytest("--prompt-suite", "imported", "out", "--prompt-no-tracking", "-k", "echo")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*2 passed, 2 deselected*"])


def test_an_entry_whose_samples_are_made_by_code_is_named_not_imported(pytester):
    """openai/evals' own test-basic.yaml: TestMatch makes its samples in code; the other entries are imported."""
    (pytester.path / "evals/registry/evals").mkdir(parents=True)
    (pytester.path / "evals/registry/data/test_fuzzy_match").mkdir(parents=True)
    (pytester.path / "evals/registry/evals/test-basic.yaml").write_text("""
test-match:
  id: test-match.s1.simple-v0
  metrics: [accuracy]
test-match.s1.simple-v0:
  class: evals.elsuite.test.match:TestMatch

test-fuzzy-match:
  id: test-fuzzy-match.s1.simple-v0
test-fuzzy-match.s1.simple-v0:
  class: evals.elsuite.basic.fuzzy_match:FuzzyMatch
  args:
    samples_jsonl: test_fuzzy_match/samples.jsonl
""")
    (pytester.path / "evals/registry/data/test_fuzzy_match/samples.jsonl").write_text('{"input": "Who?", "ideal": ["Ada"]}\n')
    result = pytester.runpytest("--prompt-import", "evals/registry/evals/test-basic.yaml", "--prompt-import-to", "out")
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        ("promptgate: not imported: evals/registry/evals/test-basic.yaml:6:3: test-match.s1.simple-v0 "
         "(evals.elsuite.test.match:TestMatch) has no args.samples_jsonl: its samples are not in a file"),
        "promptgate: imported test-fuzzy-match: 1 case(s) into out/test-fuzzy-match.eval.yaml",
    ])
    assert sorted(p.name for p in (pytester.path / "out").iterdir()) == ["test-fuzzy-match.eval.yaml"]
