"""{{var}} templates, with MLflow's variable syntax."""

from __future__ import annotations

import pytest

from pytest_promptgate import template


def test_variables_and_render():
    text = "Hi {{ name }}, about {{order.id}} ({{ order.items }})"
    assert template.variables(text) == {"name", "order.id", "order.items"}
    out = template.render(text, {"name": "Ana", "order": {"id": 7, "items": ["a", "b"]}})
    assert out == 'Hi Ana, about 7 (["a", "b"])'


def test_missing_names_and_key_error():
    assert template.missing({"a", "b.c", "d"}, {"a": 1, "b": {"x": 1}}) == ["b.c", "d"]
    with pytest.raises(KeyError, match="nope"):
        template.render("{{nope}}", {})


def test_json_and_single_braces_are_left_alone():
    text = '{"answer": "{{x}}", "n": {1}}'
    assert template.render(text, {"x": "yes"}) == '{"answer": "yes", "n": {1}}'


def test_same_pattern_as_mlflow():
    constants = pytest.importorskip("mlflow.prompt.constants")
    assert template.VARIABLE.pattern == constants.PROMPT_TEMPLATE_VARIABLE_PATTERN.pattern
