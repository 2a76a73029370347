"""The eval file (DESIGN §2): its models, and loading a ``*.eval.yaml`` into a checked :class:`LoadedEval`.

The only code that reads YAML. Its rooms: :mod:`.models` (the pydantic models),
:mod:`.source` (YAML parsed with every node's place, and problems located there),
:mod:`.files` (the files an eval file may read, bounded), :mod:`.load` (cases,
includes, variants and templates checked into a ``LoadedEval``) and :mod:`.words`
(how messages name things). Other rooms import from here, not from those modules.
"""

from __future__ import annotations

from .files import MAX_ROWS_BYTES, MAX_YAML_BYTES, Unreadable, display_path, read_file
from .labels import LABELS_SUFFIX, Label, labels_for, output_sha
from .load import LoadedCase, LoadedEval, LoadedVariant, PromptText, load_eval, registry_refs
from .models import (
    Case, Eval, GateRule, Gates, Grader, Message, Prompt, Provider, ProviderTarget, TargetSpec, Variant,
    parse_registry_ref,
)
from .source import EvalFileError, Problem, Source

__all__ = [
    "LABELS_SUFFIX", "Label", "labels_for", "output_sha",
    "Case", "Eval", "EvalFileError", "GateRule", "Gates", "Grader", "LoadedCase", "LoadedEval", "LoadedVariant",
    "MAX_ROWS_BYTES", "MAX_YAML_BYTES", "Message", "Problem", "Prompt", "PromptText", "Provider", "ProviderTarget",
    "Source", "TargetSpec", "Unreadable", "Variant",
    "display_path", "load_eval", "parse_registry_ref", "read_file", "registry_refs",
]
