"""A malformed eval file is a collection error for that file only, naming file, line, field and expectation."""

from __future__ import annotations

import pytest

GOOD = """
eval: good
suites: [core]
target: echo
prompts: {p: {template: "say {{word}}"}}
graders: [{type: contains, value: "say"}]
cases:
  - {id: a, vars: {word: hi}}
"""


def run_with_bad(project, pytester, text, *extra_files):
    """Write a good eval and a bad one; run; the good one must still run."""
    project("evals/good.eval.yaml", GOOD)
    project("evals/bad.eval.yaml", text)
    for name, content in extra_files:
        project(name, content)
    result = pytester.runpytest("--prompt-suite", "core")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*ERROR collecting evals/bad.eval.yaml*"])
    assert result.ret == 1
    return Lines(result)


class Lines:
    """``fnmatch_lines`` with ``[`` taken literally (field paths are full of ``[0]``)."""

    def __init__(self, result):
        self.result = result
        self.stdout = self

    def fnmatch_lines(self, patterns):
        self.result.stdout.fnmatch_lines([p.replace("[", "[[]") for p in patterns])


def test_unknown_key_with_did_you_mean(project, pytester):
    result = run_with_bad(project, pytester, """
        eval: bad
        suites: [core]
        target: echo
        treshold: 0.8
        cases:
          - {id: a, vars: {}}
    """)
    result.stdout.fnmatch_lines(["evals/bad.eval.yaml:4:1: treshold: unknown key 'treshold' (did you mean 'threshold'?)*"])


def test_unknown_key_in_case(project, pytester):
    result = run_with_bad(project, pytester, """
        eval: bad
        suites: [core]
        target: echo
        cases:
          - id: a
            var: {x: 1}
    """)
    result.stdout.fnmatch_lines(["evals/bad.eval.yaml:6:5: cases[0].var: unknown key 'var' (did you mean 'vars'?)*"])


def test_wrong_type(project, pytester):
    result = run_with_bad(project, pytester, """
        eval: bad
        suites: [core]
        target: echo
        repeat: many
        cases:
          - {id: a}
    """)
    result.stdout.fnmatch_lines(["evals/bad.eval.yaml:4:9: repeat: *valid integer* (got text 'many')"])


def test_out_of_range(project, pytester):
    result = run_with_bad(project, pytester, """
        eval: bad
        suites: [core]
        target: echo
        threshold: 1.5
        cases:
          - {id: a}
    """)
    result.stdout.fnmatch_lines(["evals/bad.eval.yaml:4:12: threshold: *less than or equal to 1* (got a number 1.5)"])


def test_missing_field(project, pytester):
    result = run_with_bad(project, pytester, """
        eval: bad
        suites: [core]
        cases:
          - {id: a}
    """)
    result.stdout.fnmatch_lines(["evals/bad.eval.yaml:1:1: target: missing required field 'target'"])


def test_bad_eval_name(project, pytester):
    result = run_with_bad(project, pytester, """
        eval: Bad Name
        suites: [core]
        target: echo
        cases: [{id: a}]
    """)
    result.stdout.fnmatch_lines(["evals/bad.eval.yaml:1:7: eval: expected lower-case letters*"])


def test_duplicate_case_id(project, pytester):
    result = run_with_bad(project, pytester, """
        eval: bad
        suites: [core]
        target: echo
        cases:
          - {id: a}
          - {id: b}
          - {id: a}
    """)
    result.stdout.fnmatch_lines(["evals/bad.eval.yaml:7:10: cases[2].id: duplicate case id 'a' (first defined at evals/bad.eval.yaml:5)*"])


def test_duplicate_id_across_include(project, pytester):
    result = run_with_bad(project, pytester, """
        eval: bad
        suites: [core]
        target: echo
        cases:
          - {id: a}
          - include: more.jsonl
    """, ("evals/more.jsonl", '{"id": "b"}\n{"id": "a"}\n'))
    result.stdout.fnmatch_lines(["evals/more.jsonl:2: id: duplicate case id 'a' (first defined at evals/bad.eval.yaml:5)*"])


def test_unknown_grader_type(project, pytester):
    result = run_with_bad(project, pytester, """
        eval: bad
        suites: [core]
        target: echo
        graders:
          - {type: contians, value: x}
        cases: [{id: a}]
    """)
    result.stdout.fnmatch_lines(["evals/bad.eval.yaml:5:12: graders[0].type: unknown grader type 'contians' (did you mean 'contains'?)*"])


def test_unknown_grader_option(project, pytester):
    result = run_with_bad(project, pytester, """
        eval: bad
        suites: [core]
        target: echo
        cases:
          - id: a
            graders:
              - {type: equals, valeu: x}
    """)
    result.stdout.fnmatch_lines(["evals/bad.eval.yaml:7:24: cases[0].graders[0].valeu: unknown key 'valeu' (did you mean 'value'?)*grader 'equals'*"])


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nowhere.module:fn", "cannot import module 'nowhere.module' for 'nowhere.module:fn': no module named 'nowhere'*"),
        ("app:missing", "module 'app' has no attribute 'missing'*"),
        ("fixture:no_such_fixture", "no fixture named 'no_such_fixture'*"),
        ("not a target", "expected 'module:callable', 'fixture:NAME', 'echo' or a provider mapping*"),
    ],
)
def test_unknown_target(project, pytester, target, message):
    result = run_with_bad(project, pytester, f"""
        eval: bad
        suites: [core]
        target: "{target}"
        cases: [{{id: a}}]
    """)
    result.stdout.fnmatch_lines([f"evals/bad.eval.yaml:3:9: target: {message}"])


def test_include_missing(project, pytester):
    result = run_with_bad(project, pytester, """
        eval: bad
        suites: [core]
        target: echo
        cases:
          - include: cases/nope.jsonl
    """)
    result.stdout.fnmatch_lines(["evals/bad.eval.yaml:5:14: cases[0].include: included file not found: evals/cases/nope.jsonl"])


def test_include_malformed_jsonl(project, pytester):
    result = run_with_bad(project, pytester, """
        eval: bad
        suites: [core]
        target: echo
        cases:
          - include: rows.jsonl
    """, ("evals/rows.jsonl", '{"id": "a"}\n{"id": "b", \n{"id": "c", "expectd": 1}\n'))
    result.stdout.fnmatch_lines([
        "evals/rows.jsonl:2:*: invalid JSON: *",
        "evals/rows.jsonl:3: expectd: unknown key 'expectd' (did you mean 'expected'?)*",
    ])


def test_include_malformed_csv(project, pytester):
    result = run_with_bad(project, pytester, """
        eval: bad
        suites: [core]
        target: echo
        cases:
          - include: rows.csv
    """, ("evals/rows.csv", "id,word\na,x\nb,y,extra\n"))
    result.stdout.fnmatch_lines(["evals/rows.csv:3: row has 3 cells, the header names 2"])


def test_include_yaml_that_is_not_a_list(project, pytester):
    result = run_with_bad(project, pytester, """
        eval: bad
        suites: [core]
        target: echo
        cases:
          - include: rows.yaml
    """, ("evals/rows.yaml", "id: a\n"))
    result.stdout.fnmatch_lines(["evals/rows.yaml:1:1: expected a list of cases, got a mapping"])


def test_invalid_yaml(project, pytester):
    result = run_with_bad(project, pytester, """
        eval: bad
        suites: [core
        target: echo
    """)
    result.stdout.fnmatch_lines(["evals/bad.eval.yaml:3:*: invalid YAML: *"])


def test_duplicate_yaml_key(project, pytester):
    result = run_with_bad(project, pytester, """
        eval: bad
        suites: [core]
        target: echo
        target: echo
        cases: [{id: a}]
    """)
    result.stdout.fnmatch_lines(["evals/bad.eval.yaml:4:1: target: duplicate key 'target' (YAML keeps only the last)"])


def test_empty_file(project, pytester):
    result = run_with_bad(project, pytester, "# nothing yet\n")
    result.stdout.fnmatch_lines(["evals/bad.eval.yaml:1: the file is empty*"])


def test_variable_missing_from_case(project, pytester):
    result = run_with_bad(project, pytester, """
        eval: bad
        suites: [core]
        target: echo
        prompts:
          p: {template: "Hello {{name}}, about {{topic}}"}
        cases:
          - {id: a, vars: {name: x, topic: y}}
          - {id: b, vars: {name: x}}
    """)
    result.stdout.fnmatch_lines(["evals/bad.eval.yaml:5:6: prompts.p: prompt 'p' (variant default) uses {{topic}}, which case(s) b do not define*"])


def test_grader_uses_expected_the_case_lacks(project, pytester):
    result = run_with_bad(project, pytester, """
        eval: bad
        suites: [core]
        target: echo
        graders: [{type: equals, value: "{{expected}}"}]
        cases:
          - {id: a, expected: x}
          - {id: b}
    """)
    result.stdout.fnmatch_lines(["evals/bad.eval.yaml:4:11: graders[0]: grader 'equals' uses {{expected}}, which case(s) b do not define*"])


def test_every_problem_of_a_file_is_reported(project, pytester):
    result = run_with_bad(project, pytester, """
        eval: bad
        suites: [core]
        target: echo
        repeat: 0
        cases:
          - {id: a, tag: [x]}
    """)
    result.stdout.fnmatch_lines(["*invalid eval file (2 problem(s)):*", "*repeat: *", "*cases[0].tag: *"])


def test_variant_prompt_not_declared(project, pytester):
    result = run_with_bad(project, pytester, """
        eval: bad
        suites: [core]
        target: echo
        prompts: {router: {template: "x"}}
        variants:
          - name: a
            prompts: {rooter: {template: "y"}}
        cases: [{id: a}]
    """)
    result.stdout.fnmatch_lines(["*variants[0].prompts.rooter: variant prompt 'rooter' is not one of the eval's prompts (declared: router) (did you mean 'router'?)"])


def test_boolean_looking_case_id(project, pytester):
    result = run_with_bad(project, pytester, """
        eval: bad
        suites: [core]
        target: echo
        cases:
          - {id: 7}
          - {id: no}
    """)
    result.stdout.fnmatch_lines(["evals/bad.eval.yaml:6:10: cases[1].id: YAML reads unquoted yes/no/true/false/on/off as a boolean; quote the id*"])


def test_gates_are_validated_at_collection(project, pytester):
    result = run_with_bad(project, pytester, """
        eval: bad
        suites: [core]
        target: echo
        gates:
          on_fail: block
          rules:
            - {metric: latency_p95_ms, max: 1500}
            - {metric: pass_rate, min: 0.9, max: 0.5}
            - {metric: cost_usd_total}
        cases: [{id: a}]
    """)
    result.stdout.fnmatch_lines([
        "evals/bad.eval.yaml:5:12: gates.on_fail: expected one of: warn, fail, block_promote (got 'block')*",
        "evals/bad.eval.yaml:7:16: gates.rules[0].metric: expected one of: pass_rate, *(got 'latency_p95_ms') (did you mean 'latency_ms_p95'?)",
        "evals/bad.eval.yaml:8:7: gates.rules[1]: min (0.9) is above max (0.5)",
        "evals/bad.eval.yaml:9:7: gates.rules[2]: a gate rule needs min, max or both",
    ])


def test_provider_mapping_errors(project, pytester):
    result = run_with_bad(project, pytester, """
        eval: bad
        suites: [core]
        target:
          provder: {base_url: "http://127.0.0.1:9/v1", model: m}
        cases: [{id: a}]
    """)
    result.stdout.fnmatch_lines(["evals/bad.eval.yaml:4:3: target.provder: unknown key 'provder' (did you mean 'provider'?)*"])
    result = run_with_bad(project, pytester, """
        eval: bad
        suites: [core]
        target:
          provider: {base_url: "127.0.0.1:9/v1", timeout: 0}
        cases: [{id: a}]
    """)
    result.stdout.fnmatch_lines([
        "evals/bad.eval.yaml:4:13: target.provider.model: missing required field 'model'",
        "evals/bad.eval.yaml:4:24: target.provider.base_url: base_url must start with http:// or https:// (got '127.0.0.1:9/v1')",
        "evals/bad.eval.yaml:4:51: target.provider.timeout: *greater than 0*",
    ])


def test_api_key_in_the_file_is_refused_and_not_echoed(project, pytester):
    result = run_with_bad(project, pytester, """
        eval: bad
        suites: [core]
        target:
          provider: {base_url: "http://127.0.0.1:9/v1", model: m, api_key: sk-live-DO-NOT-PRINT}
        cases: [{id: a}]
    """)
    result.stdout.fnmatch_lines(["evals/bad.eval.yaml:4:13: target.provider: API keys never go in eval files*api_key_env"])
    assert "sk-live-DO-NOT-PRINT" not in result.result.stdout.str()


def test_two_graders_named_alike(project, pytester):
    result = run_with_bad(project, pytester, """
        eval: bad
        suites: [core]
        target: echo
        graders:
          - {type: contains, value: a, name: has-letter}
          - {type: contains, value: b, name: has-letter}
        cases: [{id: a}]
    """)
    result.stdout.fnmatch_lines(["evals/bad.eval.yaml:6:38: graders[1].name: another grader of this eval is already named 'has-letter'"])


def test_yaml_dates_stay_text_and_odd_tags_are_refused(project, pytester, recorded):
    project("evals/good.eval.yaml", GOOD)
    project("evals/dated.eval.yaml", """
        eval: dated
        suites: [core]
        target: echo
        prompts: {p: {template: "due {{when}}"}}
        graders: [{type: equals, value: "due {{expected}}"}]
        cases:
          - {id: a, vars: {when: 2024-01-02}, expected: 2024-01-02}
    """)
    result = pytester.runpytest("--prompt-suite", "core")
    result.assert_outcomes(passed=2)
    assert [r["expected"] for r in recorded() if r["eval"] == "dated"] == ["2024-01-02"]
    (pytester.path / "evals/dated.eval.yaml").unlink()
    result = run_with_bad(project, pytester, """
        eval: bad
        suites: [core]
        target: echo
        cases:
          - {id: a, vars: {tags: !!set {x, y}}}
    """)
    result.stdout.fnmatch_lines(["evals/bad.eval.yaml:5:26: invalid YAML: set values are not supported: eval files hold JSON-like data"])


def test_tabs_get_a_hint(project, pytester):
    result = run_with_bad(project, pytester, "eval: bad\nsuites: [core]\ntarget: echo\ncases:\n\t- {id: a}\n")
    result.stdout.fnmatch_lines(["evals/bad.eval.yaml:5:1: invalid YAML: *(YAML does not allow tabs for indentation; use spaces)"])


def test_includes_with_a_bom_are_read_and_non_utf8_is_named(project, pytester):
    project("evals/good.eval.yaml", GOOD)
    project("evals/bom.eval.yaml", """
        eval: bom
        suites: [core]
        target: echo
        prompts: {p: {template: "{{word}}"}}
        cases: [{include: rows.csv}, {include: rows.jsonl}]
    """)
    (pytester.path / "evals/rows.csv").write_bytes("\ufeffid,word\nexcel-row,hi\n".encode())
    (pytester.path / "evals/rows.jsonl").write_bytes('\ufeff{"id": "bom-row", "vars": {"word": "a\u2028b"}}\n'.encode())
    result = pytester.runpytest("--prompt-suite", "core", "--co", "-q")
    result.stdout.fnmatch_lines(["evals/bom.eval.yaml::default::excel-row", "evals/bom.eval.yaml::default::bom-row"])
    (pytester.path / "evals/bom.eval.yaml").unlink()
    result = run_with_bad(project, pytester, """
        eval: bad
        suites: [core]
        target: echo
        cases: [{include: latin.csv}]
    """)
    (pytester.path / "evals/latin.csv").write_bytes("id,word\ncafé,x\n".encode("latin-1"))
    result = pytester.runpytest("--prompt-suite", "core")
    result.stdout.fnmatch_lines(["evals/bad.eval.yaml:4:19: cases[[]0].include: evals/latin.csv is not UTF-8 text (invalid continuation byte at byte 11); save it as UTF-8"])


def test_an_eval_whose_includes_give_no_cases(project, pytester):
    result = run_with_bad(project, pytester, """
        eval: bad
        suites: [core]
        target: echo
        cases: [{include: empty.jsonl}]
    """, ("evals/empty.jsonl", "\n"))
    result.stdout.fnmatch_lines(["evals/bad.eval.yaml:4:8: cases: the eval has no cases: its includes gave none"])


def test_keys_hidden_in_params_are_refused(project, pytester):
    result = run_with_bad(project, pytester, """
        eval: bad
        suites: [core]
        target:
          provider: {base_url: "http://127.0.0.1:9/v1", model: m, params: {api_key: sk-live-HIDDEN, max_tokens: 5}}
        variants:
          - {name: v, params: {access_token: sk-live-HIDDEN2, stop_token_ids: [1]}}
        cases: [{id: a}]
    """)
    result.stdout.fnmatch_lines([
        "evals/bad.eval.yaml:4:*: target.provider.params.api_key: 'api_key' looks like a credential: API keys never go*",
        "evals/bad.eval.yaml:6:*: variants[0].params.access_token: 'access_token' looks like a credential: *",
    ])
    assert "HIDDEN" not in result.result.stdout.str()
