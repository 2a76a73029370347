"""``{{var}}`` templates, with the same variable syntax as the MLflow prompt registry.

A variable is a name, optionally dotted (``{{customer.name}}`` looks up
``vars["customer"]["name"]``). Whitespace inside the braces is ignored. Nothing
else is interpreted, so JSON or code in a prompt is left alone.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

# The pattern MLflow uses (mlflow.prompt.constants.PROMPT_TEMPLATE_VARIABLE_PATTERN),
# copied so that loading the plugin does not import MLflow.
VARIABLE = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*(?:\.[a-zA-Z_][a-zA-Z0-9_]*)*)\s*\}\}")


def variables(text: str) -> set[str]:
    """The variable names a template uses, dotted names included as written."""
    return set(VARIABLE.findall(text))


def missing(names: Iterable[str], values: Mapping[str, Any]) -> list[str]:
    """The names among ``names`` that ``values`` cannot supply, sorted."""
    return sorted(name for name in names if not _has(values, name))


def render(text: str, values: Mapping[str, Any]) -> str:
    """Substitute every variable; a missing one raises ``KeyError`` with its name.

    Strings are inserted as they are, other values as JSON (``true``, ``3``,
    ``{"a": 1}``), which is what a model prompt wants to see.
    """
    pieces = _pieces(text)
    if len(pieces) == 1:
        return text
    out = [pieces[0]]
    for k in range(1, len(pieces), 2):
        name = pieces[k]
        try:
            value = _get(values, name)
        except (KeyError, TypeError):
            raise KeyError(name) from None
        out.append(value if isinstance(value, str) else as_text(value))
        out.append(pieces[k + 1])
    return "".join(out)


@functools.lru_cache(maxsize=1024)
def _pieces(text: str) -> tuple[str, ...]:
    """``text`` split at its variables: text, name, text, ..., text (every case renders the same few templates)."""
    return tuple(VARIABLE.split(text))


def as_text(value: Any) -> str:
    """How a value appears inside a rendered template."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _has(values: Mapping[str, Any], name: str) -> bool:
    try:
        _get(values, name)
    except (KeyError, TypeError):
        return False
    return True


def _get(values: Mapping[str, Any], name: str) -> Any:
    head, *rest = name.split(".")
    value = values[head]
    for part in rest:
        if not isinstance(value, Mapping):
            raise TypeError(name)
        value = value[part]
    return value


def prompt_digest(text: str) -> str:
    """``sha256:<12 hex>``: the version of an inline or file prompt in the ``prompt.{name}`` param."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
