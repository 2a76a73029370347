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


def _reference_render(text, values):
    """Substitution done the plain way, one regex match at a time: what render must agree with."""

    def substitute(match):
        value = values
        for part in match.group(1).split("."):
            if not isinstance(value, dict) or part not in value:
                raise KeyError(match.group(1))
            value = value[part]
        return template.as_text(value)

    return template.VARIABLE.sub(substitute, text)


@pytest.mark.parametrize("text", [
    "{{a}}", "{{a}}{{b}}", "x{{ a }}y{{b.c}}z", "no variables", "", "{{a}} and {{a}} again", "{{b}}: {{ b.c }}{{n}}",
])
def test_every_case_renders_the_same_template_with_its_own_values(text):
    cases = [{"a": "one", "b": {"c": 2}, "n": None}, {"a": "two", "b": {"c": [1, "x"]}, "n": True}, {"a": "", "b": {"c": "é"}, "n": 1.5}]
    for values in cases * 2:  # a template seen before renders with the values it is given now
        assert template.render(text, values) == _reference_render(text, values)


def test_a_dotted_name_through_a_value_that_is_not_a_mapping_is_missing():
    with pytest.raises(KeyError, match="a.b"):
        template.render("{{a.b}}", {"a": "text"})
    with pytest.raises(KeyError, match="a.b"):
        template.render("{{a.b}}", {"a": {"c": 1}})
