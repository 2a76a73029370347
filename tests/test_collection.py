"""Selecting and collecting evals: suites, node ids, pytest's selection options, included case files."""

from __future__ import annotations

import os

import pytest

ROUTING = """
eval: routing
suites: [core]
prompts:
  p: {template: "{{message}}"}
target: app:label
variants:
  - name: control
  - name: terse
    params: {temperature: 0}
graders:
  - {type: equals, value: "{{expected}}"}
cases:
  - {id: refund-plain, vars: {message: "refund please"}, expected: refund}
  - {id: money-back, vars: {message: "money back now"}, expected: refund}
  - {id: other-thing, vars: {message: "hello there"}, expected: refund}
"""

NIGHTLY = """
eval: long-form
suites: [nightly]
target: echo
prompts: {p: {template: "hi {{name}}"}}
graders: [{type: contains, value: "hi"}]
cases:
  - {id: one, vars: {name: a}}
"""


def test_plain_pytest_does_not_collect_evals_and_says_how(project, pytester):
    project("evals/routing.eval.yaml", ROUTING)
    project("evals/nightly.eval.yml", NIGHTLY)
    pytester.makepyfile(test_ordinary="def test_ok(): pass")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["promptgate: 2 eval file(s) found, not run*--prompt-suite NAME*--prompt-suite all"])
    assert result.ret == 0


def test_suite_selects_evals_listing_it(project, pytester):
    project("evals/routing.eval.yaml", ROUTING)
    project("evals/nightly.eval.yml", NIGHTLY)
    result = pytester.runpytest("--prompt-suite", "nightly", "--co", "-q")
    result.stdout.fnmatch_lines(["evals/nightly.eval.yml::default::one", "1 test collected*"])
    result = pytester.runpytest("--prompt-suite", "core,nightly", "--co", "-q")
    result.stdout.fnmatch_lines(["*7 tests collected*"])


@pytest.mark.parametrize("suite", ["all", "full"])
def test_all_and_full_select_every_eval(project, pytester, suite):
    project("evals/routing.eval.yaml", ROUTING)
    project("evals/nightly.eval.yml", NIGHTLY)
    result = pytester.runpytest("--prompt-suite", suite, "--co", "-q")
    result.stdout.fnmatch_lines(["*7 tests collected*"])


def test_ini_suite_and_files(project, pytester):
    project("evals/routing.evals.yaml", ROUTING)
    pytester.makeini("[pytest]\npromptgate_suite = core\npromptgate_files = *.evals.yaml\n")
    result = pytester.runpytest("--co", "-q")
    result.stdout.fnmatch_lines(["evals/routing.evals.yaml::control::refund-plain", "*6 tests collected*"])


def test_node_ids_are_path_variant_case(project, pytester):
    project("evals/routing.eval.yaml", ROUTING)
    result = pytester.runpytest("--prompt-suite", "core", "--co", "-q")
    result.stdout.fnmatch_lines([
        "evals/routing.eval.yaml::control::refund-plain",
        "evals/routing.eval.yaml::control::money-back",
        "evals/routing.eval.yaml::control::other-thing",
        "evals/routing.eval.yaml::terse::refund-plain",
        "evals/routing.eval.yaml::terse::money-back",
        "evals/routing.eval.yaml::terse::other-thing",
    ])


def test_k_selects_by_variant_and_case(project, pytester):
    project("evals/routing.eval.yaml", ROUTING)
    result = pytester.runpytest("--prompt-suite", "core", "-k", "terse and refund", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*::terse::refund-plain PASSED*"])


def test_deselect_and_variant_node_selection(project, pytester):
    project("evals/routing.eval.yaml", ROUTING)
    result = pytester.runpytest("--prompt-suite", "core", "--deselect", "evals/routing.eval.yaml::control::other-thing")
    result.assert_outcomes(passed=4, failed=1, deselected=1)
    result = pytester.runpytest("--prompt-suite", "core", "evals/routing.eval.yaml::terse")
    result.assert_outcomes(passed=2, failed=1)


def test_last_failed_reruns_failed_cases(project, pytester):
    project("evals/routing.eval.yaml", ROUTING)
    pytester.runpytest("--prompt-suite", "core").assert_outcomes(passed=4, failed=2)
    result = pytester.runpytest("--prompt-suite", "core", "--lf", "-v")
    result.assert_outcomes(failed=2, deselected=4)
    result.stdout.fnmatch_lines(["*::control::other-thing FAILED*", "*::terse::other-thing FAILED*"])


def test_x_stops_at_first_failed_case(project, pytester):
    project("evals/routing.eval.yaml", ROUTING)
    result = pytester.runpytest("--prompt-suite", "core", "-x")
    result.assert_outcomes(passed=2, failed=1)
    assert result.ret == 1


def test_tags_are_keywords(project, pytester):
    project("evals/tags.eval.yaml", """
        eval: tags
        suites: [core]
        target: echo
        prompts: {p: {template: "{{m}}"}}
        cases:
          - {id: a, vars: {m: x}, tags: [tone]}
          - {id: b, vars: {m: y}}
    """)
    result = pytester.runpytest("--prompt-suite", "core", "-k", "tone", "-q", "--co")
    result.stdout.fnmatch_lines(["evals/tags.eval.yaml::default::a", "1/2 tests collected*"])


INCLUDING = """
eval: included
suites: [core]
prompts: {p: {template: "{{message}}"}}
target: app:label
graders: [{type: equals, value: "{{expected}}"}]
cases:
  - {id: inline, vars: {message: "refund now"}, expected: refund}
  - include: cases/rows.jsonl
  - include: cases/rows.csv
  - include: cases/rows.yaml
"""


def test_cases_included_from_jsonl_csv_yaml(project, pytester):
    project("evals/included.eval.yaml", INCLUDING)
    project("evals/cases/rows.jsonl", """
        {"id": "j1", "vars": {"message": "refund it"}, "expected": "refund", "tags": ["json"]}

        {"vars": {"message": "money please"}, "expected": "refund"}
    """)
    project("evals/cases/rows.csv", """
        id,message,expected,tags
        c1,refund me,refund,a;b
        ,hello there,other,
    """)
    project("evals/cases/rows.yaml", """
        - {id: y1, vars: {message: money}, expected: refund}
    """)
    result = pytester.runpytest("--prompt-suite", "core", "-v")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines([
        "*::default::inline PASSED*",
        "*::default::j1 PASSED*",
        "*::default::rows-* PASSED*",
        "*::default::c1 PASSED*",
        "*::default::rows-* PASSED*",
        "*::default::y1 PASSED*",
    ])


def test_derived_ids_are_stable_and_content_based(project, pytester):
    project("evals/included.eval.yaml", INCLUDING.replace("  - include: cases/rows.csv\n  - include: cases/rows.yaml\n", ""))
    project("evals/cases/rows.jsonl", '{"vars": {"message": "money please"}, "expected": "refund"}\n')
    first = pytester.runpytest("--prompt-suite", "core", "--co", "-q").stdout.lines
    project("evals/cases/rows.jsonl", '{"vars": {"message": "other row"}, "expected": "x"}\n'
                                      '{"vars": {"message": "money please"}, "expected": "refund"}\n')
    second = pytester.runpytest("--prompt-suite", "core", "--co", "-q").stdout.lines
    derived = [line for line in first if "::rows-" in line]
    assert len(derived) == 1
    assert derived[0] in second  # the same row keeps its id when rows are added before it


def test_a_partial_run_is_marked_in_the_summary(project, pytester):
    project("evals/routing.eval.yaml", ROUTING)
    result = pytester.runpytest("--prompt-suite", "core", "-k", "refund")
    result.stdout.fnmatch_lines([
        "routing*control*1/3*0/0/0*100.0%*",
        "routing*terse*1/3*0/0/0*100.0%*",
        "cases ran/total: a partial run*",
    ])


def test_evals_of_other_suites_are_not_checked_deeply(project, pytester):
    project("evals/routing.eval.yaml", ROUTING)
    project("evals/nightly.eval.yaml", NIGHTLY.replace("target: echo", "target: heavy.module:not_installed_here"))
    result = pytester.runpytest("--prompt-suite", "core")
    result.assert_outcomes(passed=4, failed=2)
    result = pytester.runpytest("--prompt-suite", "nightly")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*cannot import module 'heavy.module'*"])


def test_a_file_too_broken_to_tell_its_suites_is_reported_anyway(project, pytester):
    project("evals/routing.eval.yaml", ROUTING)
    project("evals/broken.eval.yaml", "eval: broken\nsuites: nightly\ntarget: echo\n")
    result = pytester.runpytest("--prompt-suite", "core")
    result.assert_outcomes(passed=4, failed=2, errors=1)


def test_a_suite_nothing_lists_names_the_known_ones(project, pytester):
    project("evals/routing.eval.yaml", ROUTING)
    project("evals/nightly.eval.yml", NIGHTLY)
    result = pytester.runpytest("--prompt-suite", "nigthly")
    result.stdout.fnmatch_lines(["promptgate: suite nigthly: 0 eval(s) selected of 2 eval file(s); the eval files that could be read list the suites: core, nightly"])
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_autouse_fixtures_apply_to_every_eval_item_under_their_conftest_only(project, pytester):
    """Each item gets the fixtures visible where its eval file is: a conftest's autouse fixture runs once per
    (case, variant) of the evals under that conftest, and never for an eval file elsewhere."""
    project("evals/a/routing.eval.yaml", ROUTING)
    project("evals/b/long.eval.yaml", NIGHTLY.replace("[nightly]", "[core]"))
    project("app.py", "def label(prompt):\n    return 'refund' if 'refund' in prompt or 'money' in prompt else 'other'\n")
    project("evals/a/conftest.py", """
import os

import pytest

@pytest.fixture(autouse=True)
def seen(request):
    with open("seen.txt", "a") as f:
        f.write(request.node.nodeid + "\\n")
""")
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-no-tracking")
    result.assert_outcomes(passed=5, failed=2)  # other-thing fails under both variants
    seen = (pytester.path / "seen.txt").read_text().splitlines()
    assert sorted(seen) == sorted(
        f"evals/a/routing.eval.yaml::{variant}::{case}"
        for variant in ("control", "terse") for case in ("refund-plain", "money-back", "other-thing")
    )


def test_nested_values_may_have_keys_of_any_type(project, pytester, recorded, tracking_on):
    """Var names are text, but the values inside vars and expected may have number, null or boolean keys
    (fuzzing found the loader's hashing crashing on them): they load, run, and reach MLflow as JSON."""
    project("evals/keys.eval.yaml", """
        eval: keys
        suites: [core]
        target: echo
        prompts: {p: {template: "{{table}}"}}
        graders: [{type: contains, value: "two"}]
        cases:
          - {vars: {table: {1: one, 2: two, b: c}}}
          - {id: nulls, vars: {table: {null: two, true: x, 1.5: y}}, expected: {1: a, b: [{2: c}]}}
    """)
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-cache", "use", "-v")
    result.assert_outcomes(passed=2)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*::default::keys-* PASSED*", "*::default::nulls PASSED*"])
    by_id = {r["case_id"]: r for r in recorded()}
    assert by_id["nulls"]["vars"] == {"table": {"null": "two", "true": "x", "1.5": "y"}}  # keys as JSON writes them
    assert by_id["nulls"]["expected"] == {"1": "a", "b": [{"2": "c"}]}
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_on)
    experiment = client.get_experiment_by_name("promptgate/keys")
    assert [run.data.metrics["passed_cases"] for run in client.search_runs([experiment.experiment_id])] == [2.0]


NO_OPENAI = '''
import sys


class NoOpenAI:
    """The openai package as if it were not installed."""

    def find_spec(self, name, path=None, target=None):
        if name == "openai" or name.startswith("openai."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NoOpenAI())
'''


def test_without_the_openai_package_a_provider_eval_is_one_collection_error(project, pytester, tmp_path, monkeypatch):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(NO_OPENAI)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]))
    project("evals/routing.eval.yaml", ROUTING)
    project("app.py", "def label(vars):\n    return 'refund'\n")
    project("evals/chat.eval.yaml", """
        eval: chat
        suites: [core]
        prompts: {p: {template: "{{m}}"}}
        target:
          provider: {base_url: "http://127.0.0.1:9/v1", model: m}
        variants: [{name: a}, {name: b}]
        graders:
          - {type: label_model, judge: {provider: {base_url: "http://127.0.0.1:9/v1", model: j}}, labels: [ok, bad], passing_labels: [ok]}
        cases: [{id: one, vars: {m: x}}, {id: two, vars: {m: y}}, {id: three, vars: {m: z}}]
    """)
    result = pytester.runpytest_subprocess("--prompt-suite", "core", timeout=120)
    result.assert_outcomes(passed=6, errors=1)
    hint = "provider targets need the openai package: pip install 'pytest-promptgate[openai]'"
    result.stdout.fnmatch_lines([
        "*ERROR collecting evals/chat.eval.yaml*",
        "invalid eval file (2 problem(s)):",
        f"evals/chat.eval.yaml:5:3: target: {hint}",
        f"evals/chat.eval.yaml:8:32: graders[[]0].judge: {hint.replace('[', '[[]')}",
    ])
    assert result.stdout.str().count(hint) == 2  # once for the target, once for the judge: not once per item
    assert "Traceback" not in result.stdout.str()


def test_an_eval_file_argument_that_is_a_symbolic_link_loop_is_a_collection_error(project, pytester):
    """pytest refuses an argument it cannot find (exit 4, nothing runs); an eval file that is a link loop is
    a collection error of its own instead, and the other arguments run."""
    project("evals/routing.eval.yaml", ROUTING)
    os.symlink("loop-b.eval.yaml", pytester.path / "evals/loop-a.eval.yaml")
    os.symlink("loop-a.eval.yaml", pytester.path / "evals/loop-b.eval.yaml")
    result = pytester.runpytest_subprocess("--prompt-suite", "core", "evals/loop-a.eval.yaml", "evals/routing.eval.yaml", timeout=120)
    result.assert_outcomes(passed=4, failed=2, errors=1)
    result.stdout.fnmatch_lines(["evals/loop-a.eval.yaml:1: evals/loop-a.eval.yaml is a symbolic link loop"])
    assert result.ret == 1
    result = pytester.runpytest_subprocess("--prompt-suite", "core", timeout=120)  # found in the directory too
    result.assert_outcomes(passed=4, failed=2, errors=2)
    result.stdout.fnmatch_lines(["evals/loop-b.eval.yaml:1: evals/loop-b.eval.yaml is a symbolic link loop"])


def test_files_outside_the_rootdir_are_read_from_allowed_paths_only(project, pytester):
    """Included case files and prompt files lie under the rootdir, or under a directory the ini key
    promptgate_allowed_paths lists (relative to the ini file); symbolic links are followed to check."""
    project("project/pytest.ini", "[pytest]\npromptgate_suite = core\n")
    project("shared/prompts/ask.txt", "Q: {{q}}")
    project("shared/cases.jsonl", '{"id": "shared-row", "vars": {"q": "from shared"}}\n')
    project("project/evals/inside.jsonl", '{"id": "linked-row", "vars": {"q": "linked"}}\n')
    os.symlink("inside.jsonl", pytester.path / "project/evals/link.jsonl")
    project("project/evals/shared.eval.yaml", """
        eval: shared
        suites: [core]
        target: echo
        prompts: {ask: {file: ../../shared/prompts/ask.txt}}
        graders: [{type: contains, value: "Q:"}]
        cases: [{include: ../../shared/cases.jsonl}, {include: link.jsonl}]
    """)
    project_dir = pytester.path / "project"
    result = pytester.runpytest_subprocess("--rootdir", str(project_dir), "-c", str(project_dir / "pytest.ini"),
                                           str(project_dir), timeout=120)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "*shared.eval.yaml:4:*: prompts.ask.file: *shared/prompts/ask.txt is outside the rootdir*promptgate_allowed_paths",
        "*shared.eval.yaml:6:*: cases[[]0].include: *shared/cases.jsonl is outside the rootdir*promptgate_allowed_paths",
    ])
    project("project/pytest.ini", "[pytest]\npromptgate_suite = core\npromptgate_allowed_paths = ../shared\n")
    result = pytester.runpytest_subprocess("--rootdir", str(project_dir), "-c", str(project_dir / "pytest.ini"),
                                           str(project_dir), "-v", timeout=120)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*::default::shared-row PASSED*", "*::default::linked-row PASSED*"])


def test_derived_ids_of_a_long_file_name_are_bounded(project, pytester):
    stem = "r" * 230
    project(f"evals/{stem}.jsonl", '{"vars": {"m": "x"}}\n')
    project("evals/long.eval.yaml", f"""
        eval: long
        suites: [core]
        target: echo
        prompts: {{p: {{template: "{{{{m}}}}"}}}}
        cases: [{{include: {stem}.jsonl}}]
    """)
    result = pytester.runpytest("--prompt-suite", "core", "--co", "-q")
    ids = [line.rsplit("::", 1)[1] for line in result.stdout.lines if "::default::" in line]
    assert len(ids) == 1 and len(ids[0]) == 200 and ids[0].startswith("r" * 191 + "-")
