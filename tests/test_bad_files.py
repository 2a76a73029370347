"""A malformed eval file is a collection error for that file only, naming file, line, field and expectation."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Callable

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


# --------------------------------------------------------------------------- the catalogue
#
# Malformed and hostile eval files, several at a time beside GOOD in one pytest
# subprocess (a hang fails the test at the timeout instead of hanging the suite).
# Each entry's eval file is evals/ENTRY.eval.yaml; its problems must be listed in
# that file's collection error, each naming a file and a line.

HEAD = "eval: {name}\nsuites: [core]\ntarget: echo\n"


@dataclass
class Bad:
    """One malformed eval file: its text, the other files it needs, the problem lines it must give.

    ``expect`` patterns are matched (fnmatch, ``[`` taken literally) against the problem lines of
    the file's collection error; a pattern without a path in front is about the eval file itself.
    ``text`` and ``files`` (names and contents) may use ``{outside}``, a directory outside the
    project. ``setup(project_dir, outside_dir)`` makes what text cannot (links, FIFOs, large files).
    """

    name: str
    text: str | bytes | None
    expect: tuple[str, ...]
    files: dict[str, str | bytes] = field(default_factory=dict)
    setup: Callable[[Path, Path], None] | None = None

    def __str__(self) -> str:
        return self.name

    @property
    def path(self) -> str:
        return f"evals/{self.name}.eval.yaml"


def body(name: str, rest: str) -> str:
    return HEAD.format(name=name) + rest


def deep_flow(levels: int) -> str:
    return "[" * levels + "x" + "]" * levels


def billion_laughs(as_list: bool = False) -> str:
    """Ten levels of ten aliases each: 10⁹ strings when expanded, as keys a0..a9 (or list items)."""
    lines = ['&a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "".join(("- " if as_list else f"a{i}: ") + line + "\n" for i, line in enumerate(lines))


def sparse(path: Path, size: int) -> None:
    """A file of ``size`` bytes that takes no room on disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)


def link(target: str, name: str) -> Callable[[Path, Path], None]:
    def make(root: Path, outside: Path) -> None:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target.format(outside=outside), path)
    return make


def loop(name: str) -> Callable[[Path, Path], None]:
    """``name`` and ``name``-2 point at each other."""
    def make(root: Path, outside: Path) -> None:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(path.name + ".2", path)
        os.symlink(path.name, path.with_name(path.name + ".2"))
    return make


def fifo(name: str) -> Callable[[Path, Path], None]:
    def make(root: Path, outside: Path) -> None:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
    return make


def sized(name: str, size: int) -> Callable[[Path, Path], None]:
    return lambda root, outside: sparse(root / name, size)


UP = "../" * 30  # more than any temporary directory is deep: from evals/, the file system's root

CATALOGUE = [
    # -- the file as a whole
    Bad("empty", "", (":1: the file is empty*",)),
    Bad("only-comments", "# nothing here yet\n", (":1: the file is empty*",)),
    Bad("top-level-list", "- eval: x\n- target: echo\n", (":1:1: expected a mapping with keys eval, target and cases",)),
    Bad("top-level-text", "just some words\n", (":1:1: expected a mapping with keys eval, target and cases",)),
    Bad("two-documents", "eval: a\n---\neval: b\n", (":2:1: invalid YAML: *expected a single document*",)),
    Bad("bad-utf8", b"eval: bad-utf8\nsuites: [core]\ntarget: echo\ncases: [{id: caf\xe9}]\n",
        (":4: *is not UTF-8 text (invalid continuation byte at byte 59); save it as UTF-8",)),
    Bad("bom-keeps-lines", "\ufeff" + body("bom-keeps-lines", "cases: [{id: a}]\ntreshold: 1\n"),
        (":5:1: treshold: unknown key 'treshold' (did you mean 'threshold'?)*",)),
    Bad("tabs", "eval: tabs\nsuites: [core]\ntarget: echo\ncases:\n\t- {id: a}\n",
        (":5:1: invalid YAML: *(YAML does not allow tabs for indentation; use spaces)",)),
    Bad("unclosed-flow", "eval: unclosed-flow\nsuites: [core\ntarget: echo\n", (":3:*: invalid YAML: *",)),
    Bad("duplicate-key", body("duplicate-key", "target: echo\ncases: [{id: a}]\n"),
        (":4:1: target: duplicate key 'target' (YAML keeps only the last)",)),
    Bad("duplicate-nested-key", body("duplicate-nested-key", "cases:\n  - {id: a, vars: {w: 1, w: 2}}\n"),
        (":5:26: cases[0].vars.w: duplicate key 'w' (YAML keeps only the last)",)),
    Bad("unhashable-key", body("unhashable-key", "cases: [{id: a}]\n? [x, y]\n: z\n"), (":*: invalid YAML: *unhashable key*",)),
    Bad("eval-symlink-loop", None, (":1: *symbolic link loop*",), setup=loop("evals/eval-symlink-loop.eval.yaml")),
    Bad("eval-dangling-link", None, (":1: *not found*",), setup=link("{outside}/nothing-here", "evals/eval-dangling-link.eval.yaml")),
    Bad("eval-fifo", None, (":1: *not a regular file*FIFO*",), setup=fifo("evals/eval-fifo.eval.yaml")),
    Bad("eval-too-large", None, (":1: *10 MB*",), setup=sized("evals/eval-too-large.eval.yaml", 10_000_001)),
    # -- YAML values the loader refuses
    Bad("set-tag", body("set-tag", "cases: [{id: a, vars: {t: !!set {x, y}}}]\n"),
        (":4:27: invalid YAML: set values are not supported: eval files hold JSON-like data",)),
    Bad("python-tag", body("python-tag", "cases: [{id: a, vars: {t: !!python/object/apply:os.system [ls]}}]\n"),
        (":4:27: invalid YAML: *could not determine a constructor*",)),
    Bad("custom-tag", body("custom-tag", "cases: [{id: a, vars: {home: !env HOME}}]\n"),
        (":4:30: invalid YAML: *could not determine a constructor for the tag '!env'*",)),
    Bad("int-tag-on-text", body("int-tag-on-text", "repeat: !!int many\ncases: [{id: a}]\n"), (":4:9: invalid YAML: 'many' is not a valid int",)),
    Bad("bool-tag-on-text", body("bool-tag-on-text", "cases: [{id: a, expected: !!bool maybe}]\n"), (":4:27: invalid YAML: 'maybe' is not a valid bool",)),
    Bad("huge-integer", body("huge-integer", "cases: [{id: a, expected: " + "7" * 5000 + "}]\n"), (":4:27: invalid YAML: *digits*",)),
    Bad("huge-float", body("huge-float", "threshold: 1.0e+999\ncases: [{id: a}]\n"), (":4:12: invalid YAML: *infinite*JSON*",)),
    Bad("nan-in-vars", body("nan-in-vars", "cases: [{id: a, vars: {x: .nan}}]\n"), (":4:27: invalid YAML: *NaN*JSON*",)),
    Bad("undefined-alias", body("undefined-alias", "cases: [{id: a, vars: *nope}]\n"), (":4:23: invalid YAML: *undefined alias*",)),
    # -- aliases and nesting (issue 12, defect 4)
    Bad("billion-laughs", billion_laughs() + body("billion-laughs", "cases: [{id: a, vars: {x: *a9}}]\n"),
        (":6:*: alias *a4 stands for 111,111 nodes; the aliases of a file may stand for at most 1,000,000 nodes in all*",)),
    Bad("recursive-alias", body("recursive-alias", "cases:\n  - &case {id: a, vars: *case}\n"),
        (":5:25: alias *case is used inside the node it names (line 5)*",)),
    Bad("recursive-merge", body("recursive-merge", "cases:\n  - &c\n    id: a\n    vars: {<<: *c}\n"),
        (":7:16: alias *c is used inside the node it names (line 5)*",)),
    Bad("deep-nesting", body("deep-nesting", f"cases: [{{id: a, vars: {{x: {deep_flow(150)}}}}}]\n"),
        (":4:*: nesting deeper than 100 levels of mappings and lists*",)),
    Bad("deep-through-alias", f"deep: &deep {deep_flow(60)}\n" + body("deep-through-alias", f"cases: [{{id: a, vars: {{x: {deep_flow(50)[:50]}*deep{deep_flow(50)[51:]}}}}}]\n"),
        (":5:*: alias *deep nests deeper than 100 levels of mappings and lists*",)),
    # -- keys, types and ranges
    Bad("unknown-key", body("unknown-key", "treshold: 0.8\ncases: [{id: a}]\n"), (":4:1: treshold: unknown key 'treshold' (did you mean 'threshold'?)*",)),
    Bad("missing-target", "eval: missing-target\nsuites: [core]\ncases: [{id: a}]\n", (":1:1: target: missing required field 'target'",)),
    Bad("missing-cases", body("missing-cases", ""), (":1:1: cases: missing required field 'cases'",)),
    Bad("no-cases", body("no-cases", "cases: []\n"), (":4:8: cases: *at least 1 item*",)),
    Bad("eval-name-list", "eval: [a]\nsuites: [core]\ntarget: echo\ncases: [{id: a}]\n", (":1:7: eval: *valid string*",)),
    Bad("eval-name-spaces", "eval: Bad Name\nsuites: [core]\ntarget: echo\ncases: [{id: a}]\n", (":1:7: eval: expected lower-case letters*",)),
    Bad("long-eval-name", body("e" * 101, "cases: [{id: a}]\n"),
        (":1:7: eval: at most 100 characters (got 101)*MLflow*",)),
    Bad("long-variant-name", body("long-variant-name", f"variants: [{{name: {'v' * 101}}}]\ncases: [{{id: a}}]\n"),
        (":4:19: variants[0].name: at most 100 characters (got 101)*",)),
    Bad("long-case-id", body("long-case-id", f"cases: [{{id: {'c' * 201}}}]\n"), (":4:14: cases[0].id: at most 200 characters (got 201)*",)),
    Bad("suites-not-a-list", "eval: suites-not-a-list\nsuites: core\ntarget: echo\ncases: [{id: a}]\n", (":2:9: suites: *valid list*",)),
    Bad("repeat-text", body("repeat-text", "repeat: many\ncases: [{id: a}]\n"), (":4:9: repeat: *valid integer* (got text 'many')",)),
    Bad("repeat-zero", body("repeat-zero", "repeat: 0\ncases: [{id: a}]\n"), (":4:9: repeat: *greater than or equal to 1*",)),
    Bad("repeat-huge", body("repeat-huge", "repeat: 99999999999999999999999999\ncases: [{id: a}]\n"), (":4:9: repeat: *less than or equal to 1000*",)),
    Bad("threshold-range", body("threshold-range", "threshold: 1.5\ncases: [{id: a}]\n"), (":4:12: threshold: *less than or equal to 1*",)),
    Bad("threshold-nan-text", body("threshold-nan-text", "threshold: 'nan'\ncases: [{id: a}]\n"), (":4:12: threshold: *finite number*",)),
    Bad("gate-nan", body("gate-nan", "gates: {rules: [{metric: pass_rate, max: .nan}]}\ncases: [{id: a}]\n"), (":4:*: invalid YAML: *NaN*",)),
    Bad("gate-nan-text", body("gate-nan-text", "gates: {rules: [{metric: pass_rate, min: nan}]}\ncases: [{id: a}]\n"),
        (":4:42: gates.rules[0].min: *finite number*",)),
    Bad("gate-inf-text", body("gate-inf-text", "gates: {rules: [{metric: latency_ms_p95, max: '-inf'}]}\ncases: [{id: a}]\n"),
        (":4:47: gates.rules[0].max: *finite number*",)),
    Bad("gate-problems", body("gate-problems", "gates:\n  on_fail: block\n  rules:\n    - {metric: latency_p95_ms, max: 1}\n"
                                                 "    - {metric: pass_rate, min: 0.9, max: 0.5}\n    - {metric: cost_usd_total}\ncases: [{id: a}]\n"),
        (":5:12: gates.on_fail: expected one of: warn, fail, block_promote (got 'block')*",
         ":7:16: gates.rules[0].metric: *(did you mean 'latency_ms_p95'?)",
         ":8:7: gates.rules[1]: min (0.9) is above max (0.5)", ":9:7: gates.rules[2]: a gate rule needs min, max or both")),
    Bad("weight-inf", body("weight-inf", "graders: [{type: contains, value: x, weight: .inf}]\ncases: [{id: a}]\n"), (":4:*: invalid YAML: *infinite*",)),
    Bad("weight-inf-text", body("weight-inf-text", "graders: [{type: contains, value: x, weight: inf}]\ncases: [{id: a}]\n"),
        (":4:46: graders[0].weight: *finite number*",)),
    Bad("weight-nan-text", body("weight-nan-text", "graders: [{type: contains, value: x, weight: NaN}]\ncases: [{id: a}]\n"),
        (":4:46: graders[0].weight: *finite number*",)),
    Bad("weight-negative", body("weight-negative", "graders: [{type: contains, value: x, weight: -1}]\ncases: [{id: a}]\n"),
        (":4:46: graders[0].weight: *greater than or equal to 0*",)),
    Bad("pricing-negative", body("pricing-negative", "pricing: {m: {input: -1, output: 1}}\ncases: [{id: a}]\n"),
        (":4:22: pricing.m.input: *greater than or equal to 0*",)),
    Bad("target-number", "eval: target-number\nsuites: [core]\ntarget: 5\ncases: [{id: a}]\n", (":3:9: target: *valid string*",)),
    Bad("target-malformed", "eval: target-malformed\nsuites: [core]\ntarget: not a target\ncases: [{id: a}]\n",
        (":3:9: target: expected 'module:callable', 'fixture:NAME', 'echo' or a provider mapping*",)),
    Bad("target-not-importable", "eval: target-not-importable\nsuites: [core]\ntarget: nowhere.module:fn\ncases: [{id: a}]\n",
        (":3:9: target: cannot import module 'nowhere.module'*",)),
    Bad("target-no-fixture", "eval: target-no-fixture\nsuites: [core]\ntarget: fixture:nope\ncases: [{id: a}]\n",
        (":3:9: target: no fixture named 'nope'*",)),
    Bad("provider-typo", "eval: provider-typo\nsuites: [core]\ntarget: {provder: {base_url: 'http://127.0.0.1:9/v1', model: m}}\ncases: [{id: a}]\n",
        (":3:10: target.provder: unknown key 'provder' (did you mean 'provider'?)*",)),
    Bad("provider-key", "eval: provider-key\nsuites: [core]\ntarget: {provider: {base_url: 'http://x/v1', model: m, api_key: sk-live-NOPE}}\ncases: [{id: a}]\n",
        (":3:20: target.provider: API keys never go in eval files*",)),
    # -- graders
    Bad("grader-unknown-type", body("grader-unknown-type", "graders: [{type: contians, value: x}]\ncases: [{id: a}]\n"),
        (":4:18: graders[0].type: unknown grader type 'contians' (did you mean 'contains'?)*",)),
    Bad("grader-unknown-option", body("grader-unknown-option", "graders: [{type: equals, valeu: x}]\ncases: [{id: a}]\n"),
        (":4:26: graders[0].valeu: unknown key 'valeu' (did you mean 'value'?)*",)),
    Bad("grader-bad-regex", body("grader-bad-regex", "graders: [{type: regex, pattern: '([0-9]+'}]\ncases: [{id: a}]\n"),
        (":4:34: graders[0].pattern: invalid regex '([0-9]+'*",)),
    Bad("grader-not-mapping", body("grader-not-mapping", "graders: [contains]\ncases: [{id: a}]\n"), (":4:11: graders[0]: *valid dictionary*",)),
    Bad("graders-not-list", body("graders-not-list", "graders: {type: contains, value: x}\ncases: [{id: a}]\n"), (":4:10: graders: *valid list*",)),
    Bad("grader-names-clash", body("grader-names-clash", "graders:\n  - {type: contains, value: a, name: n}\n  - {type: contains, value: b, name: n}\ncases: [{id: a}]\n"),
        (":6:38: graders[1].name: another grader of this eval is already named 'n'",)),
    Bad("judge-no-fixture", body("judge-no-fixture", "graders:\n  - {type: label_model, judge: 'fixture:nope', labels: [a, b], passing_labels: [a]}\ncases: [{id: a}]\n"),
        (":5:32: graders[0].judge: no fixture named 'nope' (judge 'fixture:nope')*",)),
    # -- cases, ids and vars
    Bad("case-not-mapping", body("case-not-mapping", "cases: [5]\n"), (":4:9: cases[0]: expected a case mapping with vars and expected, got a number",)),
    Bad("vars-a-list", body("vars-a-list", "cases: [{id: a, vars: [x]}]\n"), (":4:23: cases[0].vars: *valid dictionary*",)),
    Bad("var-name-number", body("var-name-number", "cases: [{id: a, vars: {1: a, b: c}}]\n"),
        (":4:24: cases[0].vars: var names are text (template variable names), got a number 1; quote it or rename it",)),
    Bad("var-name-null", body("var-name-null", "cases: [{id: a, vars: {null: a, b: c}}]\n"),
        (":4:24: cases[0].vars: var names are text (template variable names), got nothing None; quote it or rename it",)),
    Bad("var-name-boolean", body("var-name-boolean", "cases: [{id: a, vars: {yes: a}}]\n"),
        (":4:24: cases[0].vars: var names are text (template variable names), got a boolean True; quote it or rename it",)),
    Bad("nested-key-clash", body("nested-key-clash", "cases: [{id: a, vars: {x: {yes: a, 'true': b}}}]\n"),
        (":4:27: cases[0].vars.x: keys True and 'true' are the same key once written as JSON*",)),
    Bad("nested-key-duplicate", body("nested-key-duplicate", "cases: [{id: a, vars: {x: {1: a, '1': b}}}]\n"),
        (":4:34: cases[0].vars.x.1: duplicate key '1' (YAML keeps only the last)",)),
    Bad("params-key-number", body("params-key-number", "variants: [{name: v, params: {1: x}}]\ncases: [{id: a}]\n"),
        (":4:31: variants[0].params: keys here are text, got a number 1; quote it or rename it",)),
    Bad("case-id-boolean", body("case-id-boolean", "cases:\n  - {id: 7}\n  - {id: no}\n"),
        (":6:10: cases[1].id: YAML reads unquoted yes/no/true/false/on/off as a boolean; quote the id*",)),
    Bad("case-id-spaces", body("case-id-spaces", "cases: [{id: 'a b'}]\n"), (":4:14: cases[0].id: expected letters, digits*",)),
    Bad("case-id-duplicate", body("case-id-duplicate", "cases:\n  - {id: a}\n  - {id: b}\n  - {id: a}\n"),
        (":7:10: cases[2].id: duplicate case id 'a' (first defined at evals/case-id-duplicate.eval.yaml:5)*",)),
    Bad("derived-id-duplicate", body("derived-id-duplicate", "cases:\n  - {vars: {x: 1}}\n  - {vars: {x: 1}}\n"),
        (":6:5: cases[1]: duplicate case id 'derived-id-duplicate-*' (first defined at *:5)*",)),
    Bad("tags-text", body("tags-text", "cases: [{id: a, tags: tone}]\n"), (":4:23: cases[0].tags: *valid list*",)),
    Bad("case-unknown-key", body("case-unknown-key", "cases:\n  - id: a\n    var: {x: 1}\n"), (":6:5: cases[0].var: unknown key 'var' (did you mean 'vars'?)*",)),
    Bad("template-var-missing", body("template-var-missing", "prompts: {p: {template: 'Hi {{name}} {{topic}}'}}\ncases:\n  - {id: a, vars: {name: x, topic: y}}\n  - {id: b, vars: {name: x}}\n"),
        (":4:14: prompts.p: prompt 'p' (variant default) uses {{topic}}, which case(s) b do not define*",)),
    Bad("grader-expected-missing", body("grader-expected-missing", "graders: [{type: equals, value: '{{expected}}'}]\ncases:\n  - {id: a, expected: x}\n  - {id: b}\n"),
        (":4:11: graders[0]: grader 'equals' uses {{expected}}, which case(s) b do not define*",)),
    # -- prompts and variants
    Bad("prompt-two-sources", body("prompt-two-sources", "prompts: {p: {template: x, registry: p@a}}\ncases: [{id: a}]\n"),
        (":4:14: prompts.p: a prompt needs exactly one of template, file, messages or registry (got template, registry)",)),
    Bad("prompt-bad-role", body("prompt-bad-role", "prompts: {p: {messages: [{role: bot, content: x}]}}\ncases: [{id: a}]\n"),
        (":4:33: prompts.p.messages[0].role: expected one of: system, developer, user, assistant (got 'bot')*",)),
    Bad("prompt-registry-malformed", body("prompt-registry-malformed", "prompts: {p: {registry: 'greet@'}}\ncases: [{id: a}]\n"),
        (":4:25: prompts.p.registry: expected 'NAME@ALIAS' or 'NAME/VERSION'*",)),
    Bad("variant-prompt-undeclared", body("variant-prompt-undeclared", "prompts: {router: {template: x}}\nvariants: [{name: a, prompts: {rooter: {template: y}}}]\ncases: [{id: a}]\n"),
        (":5:40: variants[0].prompts.rooter: variant prompt 'rooter' is not one of the eval's prompts*",)),
    Bad("variant-duplicate", body("variant-duplicate", "variants: [{name: a}, {name: a}]\ncases: [{id: a}]\n"),
        (":4:30: variants[1].name: duplicate variant name 'a'",)),
    # -- included case files
    Bad("include-missing", body("include-missing", "cases: [{include: nope.jsonl}]\n"), (":4:19: cases[0].include: included file not found: evals/nope.jsonl",)),
    Bad("include-suffix", body("include-suffix", "cases: [{include: rows.txt}]\n"), (":4:19: cases[0].include: cannot include 'rows.txt'*",)),
    Bad("include-not-text", body("include-not-text", "cases: [{include: [a]}]\n"), (":4:19: cases[0].include: *valid string*",)),
    Bad("include-extra-key", body("include-extra-key", "cases: [{include: rows.jsonl, id: a}]\n"), (":4:31: cases[0].id: unknown key 'id'*",),
        files={"evals/rows.jsonl": '{"id": "r"}\n'}),
    Bad("include-outside", body("include-outside", "cases: [{include: " + UP + "{outside}/rows.jsonl}]\n"),
        (":4:19: cases[0].include: * is outside the rootdir*promptgate_allowed_paths*",), files={"{outside}/rows.jsonl": '{"id": "r"}\n'}),
    Bad("include-absolute", body("include-absolute", "cases: [{include: '{outside}/rows.jsonl'}]\n"),
        (":4:19: cases[0].include: * is outside the rootdir*",), files={"{outside}/rows.jsonl": '{"id": "r"}\n'}),
    Bad("include-link-out", body("include-link-out", "cases: [{include: out.jsonl}]\n"),
        (":4:19: cases[0].include: evals/out.jsonl leads to * outside the rootdir*",), setup=link("/etc/passwd", "evals/out.jsonl")),
    Bad("include-link-loop", body("include-link-loop", "cases: [{include: looping.jsonl}]\n"),
        (":4:19: cases[0].include: evals/looping.jsonl is a symbolic link loop*",), setup=loop("evals/looping.jsonl")),
    Bad("include-fifo", body("include-fifo", "cases: [{include: pipe.jsonl}]\n"),
        (":4:19: cases[0].include: evals/pipe.jsonl is not a regular file (a FIFO)*",), setup=fifo("evals/pipe.jsonl")),
    Bad("include-directory", body("include-directory", "cases: [{include: folder.jsonl}]\n"),
        (":4:19: cases[0].include: evals/folder.jsonl is not a regular file (a directory)*",),
        setup=lambda root, outside: (root / "evals/folder.jsonl").mkdir(parents=True)),
    Bad("include-too-large", body("include-too-large", "cases: [{include: big.jsonl}]\n"),
        (":4:19: cases[0].include: evals/big.jsonl is 50,000,001 bytes; included .jsonl and .csv files may be at most 50 MB*",),
        setup=sized("evals/big.jsonl", 50_000_001)),
    Bad("include-yaml-too-large", body("include-yaml-too-large", "cases: [{include: big.yaml}]\n"),
        (":4:19: cases[0].include: evals/big.yaml is 10,000,001 bytes; eval files and included .yaml files may be at most 10 MB*",),
        setup=sized("evals/big.yaml", 10_000_001)),
    Bad("jsonl-broken", body("jsonl-broken", "cases: [{include: broken.jsonl}]\n"),
        ("evals/broken.jsonl:2:*: invalid JSON: *", "evals/broken.jsonl:3: expectd: unknown key 'expectd'*"),
        files={"evals/broken.jsonl": '{"id": "a"}\n{"id": "b", \n{"id": "c", "expectd": 1}\n'}),
    Bad("jsonl-nan", body("jsonl-nan", "cases: [{include: nan.jsonl}]\n"),
        ("evals/nan.jsonl:1*: invalid JSON: NaN is not JSON*",), files={"evals/nan.jsonl": '{"id": "a", "expected": NaN}\n'}),
    Bad("jsonl-deep", body("jsonl-deep", "cases: [{include: deep.jsonl}]\n"),
        ("evals/deep.jsonl:1: nesting deeper than 100 levels*",),
        files={"evals/deep.jsonl": '{"id": "a", "vars": {"x": ' + "[" * 5000 + "]" * 5000 + "}}\n"}),
    Bad("jsonl-huge-integer", body("jsonl-huge-integer", "cases: [{include: huge.jsonl}]\n"),
        ("evals/huge.jsonl:1: invalid JSON: numbers may have at most 4300 digits",), files={"evals/huge.jsonl": '{"id": "a", "expected": ' + "9" * 5000 + "}\n"}),
    Bad("jsonl-not-a-case", body("jsonl-not-a-case", "cases: [{include: list.jsonl}]\n"),
        ("evals/list.jsonl:1: expected a case mapping with vars and expected, got a list",), files={"evals/list.jsonl": "[1, 2]\n"}),
    Bad("csv-extra-cell", body("csv-extra-cell", "cases: [{include: rows.csv}]\n"), ("evals/rows.csv:3: row has 3 cells, the header names 2",),
        files={"evals/rows.csv": "id,word\na,x\nb,y,extra\n"}),
    Bad("csv-blank-header", body("csv-blank-header", "cases: [{include: blank.csv}]\n"), (":4:19: cases[0].include: *the first row must name every column*",),
        files={"evals/blank.csv": "id,,word\na,b,c\n"}),
    Bad("yaml-include-not-list", body("yaml-include-not-list", "cases: [{include: map.yaml}]\n"),
        ("evals/map.yaml:1:1: expected a list of cases, got a mapping",), files={"evals/map.yaml": "id: a\n"}),
    Bad("yaml-include-bomb", body("yaml-include-bomb", "cases: [{include: bomb.yaml}]\n"),
        ("evals/bomb.yaml:6:*: alias *a4 stands for 111,111 nodes*",), files={"evals/bomb.yaml": billion_laughs(as_list=True) + "- {id: a, vars: {x: *a9}}\n"}),
    Bad("include-no-cases", body("include-no-cases", "cases: [{include: empty.jsonl}]\n"), (":4:8: cases: the eval has no cases: its includes gave none",),
        files={"evals/empty.jsonl": "\n"}),
    Bad("include-utf8", body("include-utf8", "cases: [{include: latin.csv}]\n"),
        (":4:19: cases[0].include: evals/latin.csv is not UTF-8 text (invalid continuation byte at byte 11); save it as UTF-8",),
        files={"evals/latin.csv": "id,word\ncafé,x\n".encode("latin-1")}),
    # -- prompt files
    Bad("prompt-file-missing", body("prompt-file-missing", "prompts: {p: {file: nope.txt}}\ncases: [{id: a}]\n"),
        (":4:21: prompts.p.file: prompt file not found: evals/nope.txt",)),
    Bad("prompt-file-passwd", body("prompt-file-passwd", "prompts: {p: {file: " + UP + "etc/passwd}}\ncases: [{id: a}]\n"),
        (":4:21: prompts.p.file: * is outside the rootdir*promptgate_allowed_paths*",)),
    Bad("prompt-file-absolute", body("prompt-file-absolute", "prompts: {p: {file: /etc/passwd}}\ncases: [{id: a}]\n"),
        (":4:21: prompts.p.file: /etc/passwd is outside the rootdir*",)),
    Bad("prompt-file-dev-zero", body("prompt-file-dev-zero", "prompts: {p: {file: zero.txt}}\ncases: [{id: a}]\n"),
        (":4:21: prompts.p.file: evals/zero.txt leads to /dev/zero*outside the rootdir*",), setup=link("/dev/zero", "evals/zero.txt")),
    Bad("prompt-file-fifo", body("prompt-file-fifo", "prompts: {p: {file: pipe.txt}}\ncases: [{id: a}]\n"),
        (":4:21: prompts.p.file: evals/pipe.txt is not a regular file (a FIFO)*",), setup=fifo("evals/pipe.txt")),
    Bad("prompt-file-loop", body("prompt-file-loop", "prompts: {p: {file: loop.txt}}\ncases: [{id: a}]\n"),
        (":4:21: prompts.p.file: evals/loop.txt is a symbolic link loop*",), setup=loop("evals/loop.txt")),
    Bad("prompt-file-too-large", body("prompt-file-too-large", "prompts: {p: {file: big.txt}}\ncases: [{id: a}]\n"),
        (":4:21: prompts.p.file: evals/big.txt is 1,000,001 bytes; prompt files may be at most 1 MB*",),
        setup=sized("evals/big.txt", 1_000_001)),
    Bad("prompt-file-utf16", body("prompt-file-utf16", "prompts: {p: {file: wide.txt}}\ncases: [{id: a}]\n"),
        (":4:21: prompts.p.file: evals/wide.txt is not UTF-8 text*",), files={"evals/wide.txt": "hello".encode("utf-16")}),
    Bad("prompt-file-nul", body("prompt-file-nul", 'prompts: {p: {file: "a\\0.txt"}}\ncases: [{id: a}]\n'),
        (":4:21: prompts.p.file: prompt file 'a\\x00.txt' cannot be a file name: embedded null byte",)),
    Bad("include-name-too-long", body("include-name-too-long", f"cases: [{{include: {'n' * 5000}.jsonl}}]\n"),
        (":4:19: cases[0].include: cannot read evals/nnn*...nnn*.jsonl: File name too long",)),
    # -- across files
    Bad("zz-name-taken", "eval: good\nsuites: [core]\ntarget: echo\ncases: [{id: a}]\n", (":1:7: eval: eval name 'good' is already used by *good.eval.yaml",)),
]


def _groups(entries: list[Bad], size: int) -> list[list[Bad]]:
    return [entries[i:i + size] for i in range(0, len(entries), size)]


GROUPS = _groups(CATALOGUE, 22)


def test_the_catalogue_is_large_and_names_are_unique():
    assert len(CATALOGUE) >= 60
    assert len({bad.name for bad in CATALOGUE}) == len(CATALOGUE)


ERROR_HEADER = re.compile(r"^_+ ERROR collecting (\S+) _+$")
LOCATED = re.compile(r"^\S+:\d+(:\d+)?: ")


def error_sections(stdout: str) -> dict[str, list[str]]:
    """The lines of each ``ERROR collecting FILE`` section, by file."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        header = ERROR_HEADER.match(line)
        if header:
            current = sections.setdefault(header.group(1), [])
        elif line.startswith(("====", "____")):
            current = None
        elif current is not None:
            current.append(line)
    return sections


def write_entry(bad: Bad, root: Path, outside: Path) -> None:
    def fill(text):
        if isinstance(text, bytes):
            return text
        return text.replace("{outside}", str(outside))

    for name, content in {bad.path: bad.text, **bad.files}.items():
        if content is None:
            continue
        path = Path(fill(name)) if name.startswith("{outside}") else root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        content = fill(content)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    if bad.setup is not None:
        bad.setup(root, outside)


@pytest.mark.parametrize("group", GROUPS, ids=[f"{g[0].name}..{g[-1].name}" for g in GROUPS])
def test_the_catalogue_of_bad_files(project, pytester, tmp_path, group):
    """Every bad file is a located collection error of its own; nothing crashes or hangs; the good file runs."""
    project("evals/good.eval.yaml", GOOD)
    outside = tmp_path / "outside"
    outside.mkdir()
    for bad in group:
        write_entry(bad, pytester.path, outside)
    result = pytester.runpytest_subprocess("--prompt-suite", "core", "-p", "no:cacheprovider", timeout=120)
    out = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in out and "INTERNALERROR" not in out, out
    sections = error_sections(result.stdout.str())
    broken = []
    for bad in group:
        lines = sections.get(bad.path)
        if lines is None:
            broken.append(f"{bad}: no collection error for {bad.path}")
            continue
        problems = lines[1:]  # after "invalid eval file (N problem(s)):"
        unlocated = [line for line in problems if not LOCATED.match(line)]
        if not lines or not lines[0].startswith("invalid eval file") or unlocated or not problems:
            broken.append(f"{bad}: problems without a file and line: {lines}")
        for pattern in bad.expect:
            full = pattern if pattern.startswith("evals/") else bad.path + pattern
            if not any(fnmatch(line, full.replace("[", "[[]")) for line in problems):
                broken.append(f"{bad}: no line matches {full!r} in:\n    " + "\n    ".join(problems))
    assert not broken, "\n".join(broken)
    assert set(sections) == {bad.path for bad in group}, sorted(set(sections) ^ {bad.path for bad in group})
    result.assert_outcomes(passed=1, errors=len(group))
    assert result.ret == 1
