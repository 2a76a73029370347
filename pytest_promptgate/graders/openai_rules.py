"""openai/evals' fuzzy and JSON match rules, as functions for the ``python`` grader.

Evals imported from an openai/evals registry (``--prompt-import``) grade with the
same rule their source did: ``FuzzyMatch`` and ``JsonMatch`` have no built-in
grader that decides alike (``text_similarity: fuzzy`` is a ratio, ``json_field``
compares one field), so imported files name these functions
(``type: python, fn: "pytest_promptgate.graders.openai_rules:fuzzy_match"``). The
rules follow ``evals/elsuite/utils.py`` (``normalize``, ``fuzzy_match``) and
``evals/elsuite/basic/json_match.py`` (``json_match``) of openai/evals.
"""

from __future__ import annotations

import json
import re
import string
from typing import Any

_PUNCTUATION = frozenset(string.punctuation)


def _answers(expected: Any) -> list[Any]:
    return list(expected) if isinstance(expected, (list, tuple)) else [expected]


def normalize(text: str) -> str:
    """Lower case, without punctuation, the articles a/an/the, or runs of whitespace."""
    text = "".join(char for char in text.lower() if char not in _PUNCTUATION)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def fuzzy_match(output: str, expected: Any) -> tuple[bool, str]:
    """Passes when the normalized output contains, or is contained in, a normalized expected answer."""
    said = normalize(output)
    for answer in _answers(expected):
        wanted = normalize(str(answer))
        if (said == wanted) if not said or not wanted else (said in wanted or wanted in said):
            return True, f"output fuzzily matches {str(answer)!r}"
    return False, f"output matches none of {', '.join(repr(str(a)) for a in _answers(expected))} (normalized)"


def json_match(output: str, expected: Any) -> tuple[bool, str]:
    """Passes when the output is JSON equal, key by key and item by item, to one expected answer (JSON text)."""
    try:
        said = json.loads(output)
    except ValueError:
        return False, "output is not JSON"
    for answer in _answers(expected):
        if _same(said, json.loads(answer) if isinstance(answer, str) else answer):
            return True, f"output is the JSON {answer}"
    return False, f"output is JSON equal to none of the {len(_answers(expected))} expected answer(s)"


def _same(said: Any, wanted: Any) -> bool:
    """openai/evals' ``json_match``: a key missing on one side is ``None``, which never matches."""
    if said is None or wanted is None:
        return False
    if isinstance(said, dict):
        return isinstance(wanted, dict) and all(_same(said.get(k), wanted.get(k)) for k in said.keys() | wanted.keys())
    if isinstance(said, list):
        return isinstance(wanted, list) and len(said) == len(wanted) and all(map(_same, said, wanted))
    return bool(said == wanted)
