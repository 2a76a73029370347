"""The built-in graders: what passes, what fails, the score and the reason a user reads.

Graders are built the way collection builds them: the registry's options model
validates the options, then the registry creates the grader. Similarity metrics
are checked against independent computations written here.
"""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from pytest_promptgate.graders import CannotGrade, GraderRegistry, GradeContext, GradeResult, builtin_types
from pytest_promptgate.graders.base import Options
from pytest_promptgate.schema import EvalFileError, ProviderTarget, load_eval
from pytest_promptgate.targets.base import TargetResult

REGISTRY = GraderRegistry.build([])
HERE = __name__  # tests/ is on sys.path (rootdir conftest), so "test_graders:fn" resolves here


def make(grader_type: str, options: dict[str, Any]):
    """A grader built as collection builds it: options checked first."""
    model = REGISTRY.options_model(grader_type)
    assert not isinstance(model, Exception), model
    model.model_validate(options)
    return REGISTRY.create(grader_type, options)


def call_judge(spec: Any, prompt: Any, ask: int = 1) -> TargetResult:
    """What the runner does for a judge, reduced to ``module:callable`` targets and recorded providers."""
    if isinstance(spec, ProviderTarget):
        JUDGED.append((spec, prompt))
        return TargetResult(output='{"label": "correct", "score": 5}')
    module, _, attr = spec.partition(":")
    return TargetResult(output=getattr(importlib.import_module(module), attr)(prompt))


def grade(
    grader_type: str,
    options: dict[str, Any],
    output: str = "",
    *,
    expected: Any = None,
    vars: dict[str, Any] | None = None,
    result: TargetResult | None = None,
) -> GradeResult:
    ctx = GradeContext(
        output=output,
        expected=expected,
        vars=vars or {},
        result=result or TargetResult(output=output),
        case_id="c1",
        variant="default",
        judge=call_judge,
    )
    return make(grader_type, options).grade(ctx)


def invalid(grader_type: str, options: dict[str, Any]) -> str:
    """The validation message for options that must be rejected."""
    model = REGISTRY.options_model(grader_type)
    with pytest.raises(ValidationError) as info:
        model.model_validate(options)
    return str(info.value)


# --------------------------------------------------------------------------- every type


def test_every_builtin_type_is_documented_and_checks_its_options():
    types = builtin_types()
    assert sorted(types) == sorted(
        "equals not_equals contains not_contains icontains contains_any contains_all starts_with ends_with "
        "regex not_regex length is_json json_schema json_field text_similarity label_model score_model "
        "latency cost tokens python human".split()
    )
    for name, cls in types.items():
        assert cls.type == name
        assert cls.__doc__ and len(cls.__doc__.strip()) > 30, name
        assert issubclass(cls.Options, Options), name
        forbids = cls.Options.model_config.get("extra") == "forbid"
        assert forbids == (name != "python"), name


def test_importing_the_graders_loads_no_metric_or_schema_library():
    code = textwrap.dedent("""
        import sys
        from pytest_promptgate.graders import GraderRegistry
        GraderRegistry.build([]).names()
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("jsonschema", "rapidfuzz", "sacrebleu", "rouge_score"))
        print(heavy)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    ("grader_type", "options", "key"),
    [
        ("equals", {"valeu": "x"}, "valeu"),
        ("regex", {"pattern": "a", "flags": "i"}, "flags"),
        ("json_field", {"path": "a", "value": 1, "expected": 2}, "expected"),
        ("latency", {"max_ms": 10, "max": 5}, "max"),
        ("score_model", {"judge": "m:f", "scale": [1, 5]}, "scale"),
    ],
)
def test_unknown_option_is_rejected(grader_type, options, key):
    assert f"{key}\n  Extra inputs are not permitted" in invalid(grader_type, options)


def test_misspelt_option_in_an_eval_file_is_a_collection_problem_with_a_suggestion(tmp_path):
    path = tmp_path / "t.eval.yaml"
    path.write_text(
        "eval: t\nprompts: {p: {template: hi}}\ntarget: echo\n"
        "graders:\n  - {type: equals, valeu: refund}\n"
        "cases:\n  - {id: a, expected: refund}\n"
    )
    with pytest.raises(EvalFileError) as info:
        load_eval(path, REGISTRY.options_model)
    text = str(info.value)
    assert "graders[0].valeu" in text
    assert "did you mean 'value'?" in text


# --------------------------------------------------------------------------- strings


def test_equals_passes_on_the_same_text_ignoring_surrounding_whitespace():
    assert grade("equals", {"value": "refund"}, "  refund\n") == GradeResult(True, 1.0, "output equals 'refund'")


def test_equals_fails_with_expected_and_got():
    result = grade("equals", {"value": "refund"}, "complaint")
    assert result == GradeResult(False, 0.0, "expected 'refund', got 'complaint'")


def test_equals_without_strip_counts_whitespace():
    assert not grade("equals", {"value": "refund", "strip": False}, "refund\n").passed


def test_equals_is_case_sensitive_unless_told():
    assert not grade("equals", {"value": "Refund"}, "refund").passed
    assert grade("equals", {"value": "Refund", "ignore_case": True}, "REFUND").passed


def test_equals_renders_expected_and_vars():
    assert grade("equals", {"value": "{{expected}}"}, "refund", expected="refund").passed
    assert not grade("equals", {"value": "{{expected}}"}, "refund", expected="billing").passed
    assert grade("equals", {"value": "{{intent}}-{{n}}"}, "refund-3", vars={"intent": "refund", "n": 3}).passed


def test_equals_compares_a_number_value_as_its_text():
    assert grade("equals", {"value": 3}, "3").passed
    assert grade("equals", {"value": 2.5}, "2.5").passed
    assert grade("equals", {"value": True}, "true").passed
    assert not grade("equals", {"value": 3}, "3.0").passed
    assert grade("equals", {"value": "{{expected}}"}, "42", expected=42).passed


def test_long_output_is_cut_in_the_reason():
    result = grade("equals", {"value": "refund"}, "x" * 500)
    assert result.reason.startswith("expected 'refund', got 'xxx")
    assert result.reason.endswith("…'")
    assert len(result.reason) < 120


def test_equals_rejects_a_mapping_value():
    assert "value\n  Input should be a valid string" in invalid("equals", {"value": {"a": 1}})


def test_not_equals():
    assert grade("not_equals", {"value": "refund"}, "billing") == GradeResult(True, 1.0, "output differs from 'refund'")
    assert grade("not_equals", {"value": "refund"}, " refund ") == GradeResult(False, 0.0, "output equals 'refund'")


def test_contains_and_not_contains():
    assert grade("contains", {"value": "sorry"}, "I am so sorry.") == GradeResult(True, 1.0, "output contains 'sorry'")
    assert grade("contains", {"value": "sorry"}, "Refund issued.") == GradeResult(
        False, 0.0, "output does not contain 'sorry'"
    )
    assert grade("not_contains", {"value": "sorry"}, "Refund issued.").passed
    assert grade("not_contains", {"value": "sorry"}, "So sorry") == GradeResult(False, 0.0, "output contains 'sorry'")


def test_contains_ignores_case_only_when_asked_and_icontains_always():
    assert not grade("contains", {"value": "SORRY"}, "so sorry").passed
    assert grade("contains", {"value": "SORRY", "ignore_case": True}, "so sorry").passed
    assert grade("icontains", {"value": "SORRY"}, "so sorry").passed
    assert not grade("icontains", {"value": "SORRY"}, "so sad").passed
    assert not grade("not_contains", {"value": "SORRY", "ignore_case": True}, "so sorry").passed
    assert "ignore_case" in invalid("icontains", {"value": "a", "ignore_case": False})


def test_starts_with_and_ends_with():
    assert grade("starts_with", {"value": "Yes"}, "Yes, done.") == GradeResult(True, 1.0, "output starts with 'Yes'")
    assert grade("starts_with", {"value": "Yes"}, "No.") == GradeResult(False, 0.0, "output does not start with 'Yes'")
    assert grade("starts_with", {"value": "yes", "ignore_case": True}, "YES!").passed
    assert grade("ends_with", {"value": "{{sign}}"}, "Regards, Ann", vars={"sign": "Ann"}).passed
    assert grade("ends_with", {"value": "Ann"}, "Ann wrote") == GradeResult(False, 0.0, "output does not end with 'Ann'")


def test_contains_any():
    assert grade("contains_any", {"values": ["refund", "{{expected}}"]}, "a return", expected="return") == GradeResult(
        True, 1.0, "output contains 'return'"
    )
    assert grade("contains_any", {"values": ["refund", "return"]}, "hello") == GradeResult(
        False, 0.0, "output contains none of 'refund', 'return'"
    )
    assert grade("contains_any", {"values": ["REFUND"], "ignore_case": True}, "refund").passed
    assert "values\n  List should have at least 1 item" in invalid("contains_any", {"values": []})


def test_contains_all_gives_partial_credit():
    result = grade("contains_all", {"values": ["order", "refund", "{{n}}"]}, "refund for order 7", vars={"n": 8})
    assert not result.passed
    assert result.score == pytest.approx(2 / 3)
    assert result.reason == "output lacks '8' (2 of 3 found)"
    assert grade("contains_all", {"values": ["order", "refund"]}, "refund order") == GradeResult(
        True, 1.0, "output contains all 2 values"
    )


def test_regex_searches_the_output():
    assert grade("regex", {"pattern": r"order \d+"}, "your order 1182 is late") == GradeResult(
        True, 1.0, "output matches 'order \\\\d+' at 'order 1182'"
    )
    result = grade("regex", {"pattern": r"^\d+$"}, "abc")
    assert (result.passed, result.reason) == (False, "output does not match '^\\\\d+$'")


def test_regex_flags():
    assert not grade("regex", {"pattern": "refund"}, "REFUND").passed
    assert grade("regex", {"pattern": "refund", "ignore_case": True}, "REFUND").passed
    assert not grade("regex", {"pattern": "^b$"}, "a\nb\nc").passed
    assert grade("regex", {"pattern": "^b$", "multiline": True}, "a\nb\nc").passed
    assert not grade("regex", {"pattern": "a.b"}, "a\nb").passed
    assert grade("regex", {"pattern": "a.b", "dotall": True}, "a\nb").passed


def test_regex_renders_vars_into_the_pattern():
    assert grade("regex", {"pattern": r"^{{expected}}\b"}, "refund now", expected="refund").passed
    assert not grade("regex", {"pattern": r"^{{expected}}\b"}, "refunds", expected="refund").passed


def test_not_regex():
    assert grade("not_regex", {"pattern": r"\d{16}"}, "card ending 1234").passed
    result = grade("not_regex", {"pattern": r"\d{16}"}, "card 1234567812345678")
    assert (result.passed, result.reason) == (False, "output matches '\\\\d{16}' at '1234567812345678'")


def test_invalid_regex_is_rejected_when_options_are_checked():
    message = invalid("regex", {"pattern": "(unclosed"})
    assert "invalid regex '(unclosed': missing ) at position 9" in message
    assert "invalid regex '[a-': unterminated character set at position 3" in invalid("not_regex", {"pattern": "[a-"})


def test_a_regex_that_backtracks_catastrophically_gives_up():
    """Issue 12, defect 13: the grader cannot say pass or fail, so the case is an error case (CannotGrade)."""
    with pytest.raises(CannotGrade) as info:
        grade("regex", {"pattern": "^(a|aa)+$", "timeout": 0.1}, "a" * 50 + "!")
    assert str(info.value) == (
        "regex '^(a|aa)+$' gave up after 0.1 s: the pattern backtracks catastrophically on this output; simplify it"
    )
    assert grade("regex", {"pattern": "^(a+)+$"}, "a" * 34 + "!").reason == "output does not match '^(a+)+$'"


def test_regex_timeout_option_is_checked():
    assert "timeout\n  Input should be greater than 0" in invalid("regex", {"pattern": "a", "timeout": 0})
    assert "timeout\n  Input should be less than or equal to 60" in invalid("not_regex", {"pattern": "a", "timeout": 61})


def test_templated_regex_that_renders_invalid_fails_the_case():
    assert make("regex", {"pattern": "{{p}}"})  # cannot be checked before the case is known
    result = grade("regex", {"pattern": "{{p}}"}, "abc", vars={"p": "(x"})
    assert not result.passed
    assert result.score == 0.0
    assert result.reason.startswith("invalid regex '(x': missing )")


def test_length_in_words_and_chars():
    result = grade("length", {"max": 10, "unit": "words"}, "one two three four five six seven eight nine ten eleven twelve")
    assert result == GradeResult(False, 10 / 12, "12 words, above max 10")
    result = grade("length", {"min": 10}, "  short \n")
    assert result == GradeResult(False, 0.5, "5 chars, below min 10")
    assert grade("length", {"min": 1, "max": 5, "unit": "words"}, "one") == GradeResult(True, 1.0, "1 word, within 1..5")
    assert grade("length", {"min": 2}, "abc").reason == "3 chars, within 2..∞"


def test_length_needs_a_bound_in_order():
    assert "length needs min, max or both" in invalid("length", {"unit": "words"})
    assert "min (5) is above max (3)" in invalid("length", {"min": 5, "max": 3})
    assert "unit" in invalid("length", {"max": 3, "unit": "tokens"})


# --------------------------------------------------------------------------- structure


@pytest.mark.parametrize(
    "output",
    [
        '{"intent": "refund"}',
        '  \n{"intent": "refund"}\n',
        '```json\n{"intent": "refund"}\n```',
        '```\n{"intent": "refund"}\n```',
        '\n```JSON\n{"intent": "refund"}```\n',
    ],
)
def test_is_json_accepts_plain_and_fenced_json(output):
    assert grade("is_json", {}, output) == GradeResult(True, 1.0, "output is JSON (an object)")


def test_is_json_fails_with_the_parse_error():
    result = grade("is_json", {}, 'Sure! {"intent": "refund"}')
    assert result == GradeResult(False, 0.0, "output is not JSON: Expecting value at line 1 column 1")
    assert not grade("is_json", {}, '```json\n{"a": 1}\n``` and more').passed
    assert "extra" in invalid("is_json", {"strict": True}).lower()


SCHEMA = {
    "type": "object",
    "properties": {"intent": {"enum": ["refund", "billing"]}, "items": {"type": "array", "items": {"type": "integer"}}},
    "required": ["intent"],
}


def test_json_schema_passes_valid_fenced_json():
    assert grade("json_schema", {"schema": SCHEMA}, '```json\n{"intent": "refund", "items": [1]}\n```').passed


def test_json_schema_reason_names_the_path_and_message():
    result = grade("json_schema", {"schema": SCHEMA}, '{"intent": "refund", "items": [1, "two"]}')
    assert result == GradeResult(False, 0.0, "$.items[1]: 'two' is not of type 'integer'")
    result = grade("json_schema", {"schema": SCHEMA}, '{"intent": "other", "items": ["x"]}')
    assert not result.passed
    assert result.reason.endswith("(+1 more errors)")
    assert grade("json_schema", {"schema": SCHEMA}, "{}").reason == "$: 'intent' is a required property"
    assert grade("json_schema", {"schema": SCHEMA}, "not json").reason.startswith("output is not JSON")


def test_json_schema_checks_formats():
    schema = {"type": "string", "format": "date"}
    assert grade("json_schema", {"schema": schema}, '"2024-02-29"').passed
    assert not grade("json_schema", {"schema": schema}, '"yesterday"').passed


def test_bad_json_schema_is_rejected_when_options_are_checked():
    message = invalid("json_schema", {"schema": {"type": "strng"}})
    assert "invalid JSON schema at $.type: 'strng' is not valid under any of the given schemas" in message
    assert "unknown $schema 'https://example.com/s'" in invalid(
        "json_schema", {"schema": {"$schema": "https://example.com/s"}}
    )
    assert "schema\n  Field required" in invalid("json_schema", {})


DOC = '{"order": {"lines": [{"sku": "A-1", "qty": 2}], "total": 10.0}, "intent": "refund", "ok": true, "a/b": 7}'


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("intent", "refund"),
        ("order.lines[0].sku", "A-1"),
        ("$.order.lines[-1].qty", 2),
        ("order.lines.0.qty", 2.0),
        ('["a/b"]', 7),
        ("/order/lines/0/sku", "A-1"),
        ("/a~1b", 7),
        ("order.total", 10),
        ("ok", True),
        ("order.lines", [{"sku": "A-1", "qty": 2}]),
    ],
)
def test_json_field_finds_the_value(path, value):
    assert grade("json_field", {"path": path, "value": value}, DOC).passed


def test_json_field_renders_string_values():
    assert grade("json_field", {"path": "intent", "value": "{{expected}}"}, DOC, expected="refund").passed
    # A rendered string is read as JSON when the field is not a string.
    assert grade("json_field", {"path": "order.total", "value": "{{expected}}"}, DOC, expected=10).passed
    assert grade("json_field", {"path": "order.lines[0].sku", "value": "{{sku}}"}, DOC, vars={"sku": "A-1"}).passed


def test_json_field_does_not_confuse_true_and_1_or_strings_and_numbers():
    assert not grade("json_field", {"path": "ok", "value": 1}, DOC).passed
    assert not grade("json_field", {"path": "order.lines[0].qty", "value": True}, DOC).passed
    result = grade("json_field", {"path": "order.lines[0].sku", "value": 1}, DOC)
    assert result.reason == "field order.lines[0].sku is 'A-1', expected 1"


def test_json_field_reasons():
    assert grade("json_field", {"path": "intent", "value": "billing"}, DOC) == GradeResult(
        False, 0.0, "field intent is 'refund', expected 'billing'"
    )
    assert grade("json_field", {"path": "order.customer", "value": "x"}, DOC).reason == "field order.customer missing"
    assert grade("json_field", {"path": "order.lines[3].sku", "value": "x"}, DOC).reason == "field order.lines[3].sku missing"
    assert grade("json_field", {"path": "intent.x", "value": "x"}, DOC).reason == "field intent.x missing"
    assert grade("json_field", {"path": "intent", "value": "x"}, "intent: x").reason.startswith("output is not JSON: ")


def test_json_field_null_value_is_an_expectation_not_a_default():
    assert grade("json_field", {"path": "v", "value": None}, '{"v": null}').passed
    assert not grade("json_field", {"path": "v", "value": None}, '{"v": 0}').passed
    assert "value\n  Field required" in invalid("json_field", {"path": "v"})


def test_json_field_path_syntax_is_checked_when_options_are_checked():
    assert "invalid field path 'a..b' at character 2" in invalid("json_field", {"path": "a..b", "value": 1})
    assert "invalid field path 'a[x]'" in invalid("json_field", {"path": "a[x]", "value": 1})
    assert make("json_field", {"path": "{{field}}", "value": 1})
    assert grade("json_field", {"path": "{{field}}", "value": "refund"}, DOC, vars={"field": "intent"}).passed


# --------------------------------------------------------------------------- similarity


def lcs(a: list[Any], b: list[Any]) -> int:
    """Length of the longest common subsequence, by dynamic programming."""
    row = [0] * (len(b) + 1)
    for x in a:
        prev = 0
        for j, y in enumerate(b, start=1):
            prev, row[j] = row[j], prev + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance, by dynamic programming."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, start=1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def test_levenshtein_similarity_is_one_minus_normalised_edit_distance():
    out, ref = "kitten sat", "sitting sat"
    oracle = 1 - edit_distance(out, ref) / max(len(out), len(ref))
    assert edit_distance("kitten", "sitting") == 3  # the oracle itself
    result = grade("text_similarity", {"metric": "levenshtein"}, out, expected=ref)
    assert result.score == pytest.approx(oracle)
    assert result.passed == (oracle >= 0.8)


def test_fuzzy_similarity_is_the_indel_ratio():
    out, ref = "this is a test", "this is a test!"
    result = grade("text_similarity", {"metric": "fuzzy"}, out, expected=ref)
    assert result.score == pytest.approx(2 * lcs(list(out), list(ref)) / (len(out) + len(ref)))
    assert result.score == pytest.approx(0.9655172413793103)  # rapidfuzz's documented example
    assert result.reason == "fuzzy 0.97 at or above 0.80"


def test_bleu_similarity_matches_corpus_bleu_on_the_single_pair():
    import sacrebleu

    hyp = "the quick brown fox jumps over the lazy dog near the river bank"
    ref = "the quick brown fox jumped over the lazy dog near the river bank"
    oracle = sacrebleu.corpus_bleu([hyp], [[ref]]).score / 100
    result = grade("text_similarity", {"metric": "bleu", "reference": ref, "pass_threshold": 0.5}, hyp)
    assert 0.5 < oracle < 1
    assert result.score == pytest.approx(oracle)
    assert result.passed


def test_rouge_l_similarity_is_the_lcs_f_measure_over_words():
    hyp = "The cat sat quietly on the mat"
    ref = "the cat was sitting on the red mat today"
    h, r = hyp.lower().split(), ref.lower().split()
    common = lcs(h, r)
    precision, recall = common / len(h), common / len(r)
    oracle = 2 * precision * recall / (precision + recall)
    result = grade("text_similarity", {"metric": "rouge_l", "reference": "{{ref}}"}, hyp, vars={"ref": ref})
    assert result.score == pytest.approx(oracle)
    assert result == GradeResult(False, result.score, f"rouge_l {oracle:.2f} below 0.80")


def test_rouge_l_scorer_is_built_once_per_grader():
    grader = make("text_similarity", {"metric": "rouge_l", "reference": "a b c"})
    ctx = GradeContext("a b", None, {}, TargetResult("a b"), "c", "v")
    grader.grade(ctx)
    scorer = grader._rouge
    assert grader.grade(ctx).score == pytest.approx(0.8)
    assert grader._rouge is scorer


def test_similarity_threshold_decides_and_close_scores_are_not_rounded_into_the_threshold():
    result = grade("text_similarity", {"metric": "levenshtein", "pass_threshold": 0.9}, "abcdefghij", expected="abcdefghiX")
    assert result == GradeResult(True, 0.9, "levenshtein 0.90 at or above 0.90")
    out, ref = "a" * 199 + "b", "a" * 200  # 0.995
    result = grade("text_similarity", {"metric": "levenshtein", "pass_threshold": 0.996}, out, expected=ref)
    assert result.reason == "levenshtein 0.99 below 0.996"
    result = grade("text_similarity", {"metric": "levenshtein", "pass_threshold": 0.99}, out, expected=ref)
    assert result.reason == "levenshtein 0.99 at or above 0.99"
    out, ref = "a" * 7999 + "b" * 2001, "a" * 10000  # 0.7999
    result = grade("text_similarity", {"metric": "levenshtein"}, out, expected=ref)
    assert result.reason == "levenshtein 0.7999 below 0.80"


def test_similarity_ignores_surrounding_whitespace():
    result = grade("text_similarity", {"metric": "fuzzy"}, "refund\n", expected="  refund ")
    assert result == GradeResult(True, 1.0, "fuzzy 1.00 at or above 0.80")


def test_similarity_without_a_reference_fails_with_a_reason():
    result = grade("text_similarity", {"metric": "fuzzy"}, "hello")
    assert result == GradeResult(False, 0.0, "no reference: the case has no expected; give it one or set reference")


def test_similarity_option_errors():
    assert "text_similarity model directory 'no/such/model' does not exist" in invalid(
        "text_similarity", {"metric": "cosine", "model": "no/such/model"}
    )
    assert "Input should be 'fuzzy', 'levenshtein', 'bleu', 'rouge_l' or 'cosine'" in invalid(
        "text_similarity", {"metric": "jaccard"}
    )
    assert "less than or equal to 1" in invalid("text_similarity", {"metric": "fuzzy", "pass_threshold": 80})


def test_similarity_metric_needs_its_library(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sacrebleu" else real(name, *a))
    assert "metric 'bleu' needs sacrebleu: pip install 'pytest-promptgate[graders]'" in invalid(
        "text_similarity", {"metric": "bleu"}
    )
    assert make("text_similarity", {"metric": "fuzzy"})


# --------------------------------------------------------------------------- operational


def test_latency():
    assert grade("latency", {"max_ms": 1000}, result=TargetResult("x", latency_ms=250.4)) == GradeResult(
        True, 1.0, "250 ms, within max 1000 ms"
    )
    assert grade("latency", {"max_ms": 1000}, result=TargetResult("x", latency_ms=4000)) == GradeResult(
        False, 0.25, "4000 ms, above max 1000 ms"
    )
    assert "greater than 0" in invalid("latency", {"max_ms": 0})


def test_cost():
    assert grade("cost", {"max_usd": 0.002}, result=TargetResult("x", cost_usd=0.001)).passed
    assert grade("cost", {"max_usd": 0.002}, result=TargetResult("x", cost_usd=0.008)) == GradeResult(
        False, 0.25, "$0.008, above max $0.002"
    )
    assert grade("cost", {"max_usd": 0}, result=TargetResult("x", cost_usd=0.001)).score == 0.0


def test_cost_unknown_fails_and_says_how_to_report_it():
    result = grade("cost", {"max_usd": 1}, result=TargetResult("x"))
    assert (result.passed, result.score) == (False, 0.0)
    assert result.reason.startswith("the target reported no cost; return cost_usd in the target's result")


def test_tokens():
    usage = TargetResult("x", input_tokens=900, output_tokens=300)
    assert grade("tokens", {"max": 1000}, result=usage) == GradeResult(
        False, 1000 / 1200, "1200 total tokens, above max 1000 total tokens"
    )
    assert grade("tokens", {"max": 1000, "count": "input"}, result=usage).passed
    assert grade("tokens", {"max": 200, "count": "output"}, result=usage).reason == "300 output tokens, above max 200 output tokens"


def test_tokens_unknown_fails_and_names_the_missing_count():
    result = grade("tokens", {"max": 1000}, result=TargetResult("x", input_tokens=10))
    assert result == GradeResult(
        False, 0.0, "the target reported no output token count; return output_tokens in the target's result to check it"
    )
    assert "no input or output token count; return input_tokens and output_tokens" in grade(
        "tokens", {"max": 1}, result=TargetResult("x")
    ).reason
    assert grade("tokens", {"max": 10, "count": "input"}, result=TargetResult("x", input_tokens=10)).passed


# --------------------------------------------------------------------------- python


def says_refund(output):
    return "refund" in output


def half(output):
    return 0.4


def with_reason(output, expected):
    return (output == expected, f"compared with {expected}")


def as_mapping(output, options):
    return {"pass": output.startswith(options["prefix"]), "score": 0.7, "reason": f"prefix {options['prefix']}"}


def as_result(output, vars, case_id, variant):
    return GradeResult(True, 0.9, f"{vars['who']} {case_id} {variant}")


def every_argument(**kwargs):
    return (True, ",".join(sorted(kwargs)))


def broken(output):
    raise ZeroDivisionError("user bug")


NOT_CALLABLE = 3


def test_python_grader_takes_each_kind_of_return():
    assert grade("python", {"fn": f"{HERE}:says_refund"}, "a refund") == GradeResult(True, 1.0, "")
    assert not grade("python", {"fn": f"{HERE}:says_refund"}, "hello").passed
    assert grade("python", {"fn": f"{HERE}:half"}) == GradeResult(False, 0.4, "score 0.4 (passes at 0.5)")
    assert grade("python", {"fn": f"{HERE}:half", "pass_threshold": 0.3}).passed
    assert grade("python", {"fn": f"{HERE}:with_reason"}, "a", expected="b") == GradeResult(False, 0.0, "compared with b")
    assert grade("python", {"fn": f"{HERE}:as_result"}, vars={"who": "ann"}) == GradeResult(True, 0.9, "ann c1 default")


def test_python_grader_passes_its_other_keys_as_options_rendered():
    result = grade("python", {"fn": f"{HERE}:as_mapping", "prefix": "{{expected}}:"}, "refund: yes", expected="refund")
    assert result == GradeResult(True, 0.7, "prefix refund:")


def test_python_grader_offers_every_argument_to_kwargs():
    reason = grade("python", {"fn": f"{HERE}:every_argument"}).reason
    assert reason == "case_id,context,expected,options,output,result,variant,vars"


def test_python_grader_lets_the_functions_exception_through():
    with pytest.raises(ZeroDivisionError, match="user bug"):
        grade("python", {"fn": f"{HERE}:broken"}, "x")


def test_python_grader_fn_is_resolved_when_options_are_checked():
    assert "cannot import module 'no_such_module_xyz' for 'no_such_module_xyz:f': no module named" in invalid(
        "python", {"fn": "no_such_module_xyz:f"}
    )
    assert f"module '{HERE}' has no attribute 'nope' (from '{HERE}:nope')" in invalid("python", {"fn": f"{HERE}:nope"})
    assert "fn must be 'module:callable' (got 'justaname')" in invalid("python", {"fn": "justaname"})
    assert f"'{HERE}:NOT_CALLABLE' is a int, not a callable" in invalid("python", {"fn": f"{HERE}:NOT_CALLABLE"})
    assert "fn\n  Field required" in invalid("python", {})


# --------------------------------------------------------------------------- model-graded

PROMPTS: list[str] = []
JUDGED: list[tuple[Any, Any]] = []


def judge_json(prompt):
    PROMPTS.append(prompt)
    return '```json\n{"label": "Correct", "reason": "matches the expected intent"}\n```'


def judge_prose(prompt):
    return "I think the answer is incorrect, not correct at all."


def judge_embedded(prompt):
    return 'Here is my verdict: {"label": "incorrect"} as you asked.'


def judge_odd_label(prompt):
    return '{"label": "maybe"}'


def judge_rambles(prompt):
    return "It is hard to say. " * 20


def judge_echo(prompt):
    return prompt


def judge_score_json(prompt):
    PROMPTS.append(prompt)
    return '{"score": 4, "reason": "mostly right"}'


def judge_score_text(prompt):
    return "I would give it 2 out of 5."


def judge_score_high(prompt):
    return '{"score": "9"}'


def judge_score_35(prompt):
    return '{"score": 3.5}'


LABELS = {"labels": ["correct", "incorrect"], "passing_labels": ["correct"]}


def test_label_model_reads_fenced_json():
    result = grade("label_model", {"judge": f"{HERE}:judge_json", **LABELS}, "refund", expected="refund")
    assert result == GradeResult(True, 1.0, "judge said 'correct': matches the expected intent")


def test_label_model_reads_the_first_json_object_with_a_label():
    assert grade("label_model", {"judge": f"{HERE}:judge_embedded", **LABELS}).reason == "judge said 'incorrect'"


def cannot_grade(grader_type: str, options: dict[str, Any], output: str = "", **context: Any) -> str:
    """The message of a grading that ends as an error case."""
    with pytest.raises(CannotGrade) as info:
        grade(grader_type, options, output, **context)
    return str(info.value)


def test_label_model_never_guesses_a_label_from_prose():
    """Issue 12, defect 15: a label word in prose is not a judgment (the old reading took 'incorrect' here)."""
    assert cannot_grade("label_model", {"judge": f"{HERE}:judge_prose", **LABELS}, "refund") == (
        """the judge's reply has no {"label": ...} object: I think the answer is incorrect, not correct at all."""
    )
    message = cannot_grade("label_model", {"judge": f"{HERE}:judge_rambles", **LABELS})
    assert message.startswith("""the judge's reply has no {"label": ...} object: It is hard to say. It is""")
    assert len(message) < 300 and message.endswith("…")
    assert cannot_grade("label_model", {"judge": f"{HERE}:judge_odd_label", **LABELS}) == (
        "the judge said 'maybe', which is not one of the labels correct, incorrect"
    )


def judge_echo_then_answer(prompt):
    return prompt + '\n{"label": "correct"}'


def judge_echo_instruction(prompt):
    return prompt.splitlines()[-1]  # the example object of the built-in prompt: {"label": "<one of the labels>", ...}


def test_label_model_ignores_the_echoed_judge_prompt():
    """Issue 12, defect 15: the echoed prompt lists the labels and an example object; neither is a judgment."""
    assert cannot_grade("label_model", {"judge": f"{HERE}:judge_echo", **LABELS}, "refund") == (
        """the judge's reply has no {"label": ...} object: it only repeats the judge prompt"""
    )
    assert grade("label_model", {"judge": f"{HERE}:judge_echo_then_answer", **LABELS}, "refund").passed
    assert cannot_grade("label_model", {"judge": f"{HERE}:judge_echo_instruction", **LABELS}, "refund") == (
        "the judge said '<one of the labels>', which is not one of the labels correct, incorrect"
    )


def test_label_model_default_prompt_includes_expected_only_when_the_case_has_one():
    PROMPTS.clear()
    grade("label_model", {"judge": f"{HERE}:judge_json", **LABELS}, "refund", expected="billing", vars={"message": "money back"})
    grade("label_model", {"judge": f"{HERE}:judge_json", **LABELS}, "refund")
    with_expected, without = PROMPTS
    assert "<expected>\nbilling\n</expected>" in with_expected
    assert '"message": "money back"' in with_expected
    assert "<output>\nrefund\n</output>" in with_expected
    assert "correct, incorrect" in with_expected
    assert "expected" not in without


def test_label_model_custom_prompt_and_criteria_are_rendered():
    PROMPTS.clear()
    options = {"judge": f"{HERE}:judge_json", **LABELS, "prompt": "Is '{{output}}' right for {{message}}? correct"}
    assert grade("label_model", options, "refund", vars={"message": "money back"}).passed
    assert PROMPTS.pop() == "Is 'refund' right for money back? correct"
    grade("label_model", {"judge": f"{HERE}:judge_json", **LABELS, "criteria": "Polite to {{name}}"}, "hi", vars={"name": "Ann"})
    assert "<criteria>\nPolite to Ann\n</criteria>" in PROMPTS[0]


def test_judge_spec_reaches_the_judge_as_given():
    JUDGED.clear()
    provider = {"provider": {"base_url": "http://127.0.0.1:1/v1", "model": "judge-1"}}
    assert grade("label_model", {"judge": provider, **LABELS}, "x").passed
    spec, prompt = JUDGED[0]
    assert spec == ProviderTarget.model_validate(provider)
    assert "<output>\nx\n</output>" in prompt


def test_label_model_option_errors():
    assert "labels\n  List should have at least 2 items" in invalid(
        "label_model", {"judge": "m:f", "labels": ["yes"], "passing_labels": ["yes"]}
    )
    assert "passing_labels 'right' not among labels (correct, incorrect)" in invalid(
        "label_model", {"judge": "m:f", "labels": ["correct", "incorrect"], "passing_labels": ["right"]}
    )
    assert "passing_labels\n  List should have at least 1 item" in invalid(
        "label_model", {"judge": "m:f", "labels": ["a", "b"], "passing_labels": []}
    )
    assert "labels must differ from each other, ignoring case" in invalid(
        "label_model", {"judge": "m:f", "labels": ["Yes", "yes"], "passing_labels": ["Yes"]}
    )
    assert "judge\n  Field required" in invalid("label_model", {"labels": ["a", "b"], "passing_labels": ["a"]})


def test_score_model_reads_json_and_scales_the_score():
    PROMPTS.clear()
    result = grade("score_model", {"judge": f"{HERE}:judge_score_json"}, "refund", expected="refund")
    assert result == GradeResult(True, 0.75, "judge scored 4 of 1..5, passes at 4: mostly right")
    assert "from 1 (worst) to 5 (best)" in PROMPTS[0]
    assert "<expected>\nrefund\n</expected>" in PROMPTS[0]


def test_score_model_reads_a_score_given_as_text_and_clamps():
    assert grade("score_model", {"judge": f"{HERE}:judge_score_high"}) == GradeResult(
        True, 1.0, "judge scored 9 (clamped to 5) of 1..5, passes at 4"
    )


def test_score_model_threshold_default_and_explicit():
    assert not grade("score_model", {"judge": f"{HERE}:judge_score_35"}).passed
    assert grade("score_model", {"judge": f"{HERE}:judge_score_35", "pass_threshold": 3.5}).passed
    result = grade("score_model", {"judge": f"{HERE}:judge_score_json", "range": [0, 10]})
    assert result == GradeResult(False, 0.4, "judge scored 4 of 0..10, below 7.5: mostly right")


def judge_score_null(prompt):
    return '{"score": null, "reason": "cannot tell"}'


def test_score_model_never_guesses_a_score_from_prose():
    assert cannot_grade("score_model", {"judge": f"{HERE}:judge_score_text"}) == (
        """the judge's reply has no {"score": ...} object: I would give it 2 out of 5."""
    )
    assert cannot_grade("score_model", {"judge": f"{HERE}:judge_echo"}) == (
        """the judge's reply has no {"score": ...} object: it only repeats the judge prompt"""
    )
    assert cannot_grade("score_model", {"judge": f"{HERE}:judge_score_null"}) == "the judge's score null is not a number"


def test_score_model_option_errors():
    assert "range must be [min, max] with min below max (got [5, 1])" in invalid("score_model", {"judge": "m:f", "range": [5, 1]})
    assert "pass_threshold 6 lies outside range [1, 5]" in invalid("score_model", {"judge": "m:f", "pass_threshold": 6})
