"""People's labels of an eval's cases (DESIGN §11): ``NAME.labels.jsonl`` read, checked and matched to cases.

A labels file is committed beside its eval file (``NAME.eval.yaml`` → ``NAME.labels.jsonl``), or
in the directory the ini key ``promptgate_labels`` names (``EVAL.labels.jsonl`` there). One JSON
object per line: the ``case`` id, optionally the ``variant`` and the ``output_sha`` of the output
it judges, a ``rating`` (``good`` or ``bad``; empty while nobody has rated it), a ``failure_mode``,
``feedback``, the ``annotator`` and when (``at``). Reading it is part of reading the eval: its
problems are the eval file's, located at the labels file's line.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from .files import MAX_ROWS_BYTES, Unreadable, display_path, read_file
from .source import Problem, Source
from .words import did_you_mean

#: What a labels file's name ends with, in place of the eval file's ``.eval.yaml``.
LABELS_SUFFIX = ".labels.jsonl"
#: Hex digits of an output's SHA-256 that identify it in a label (64 bits: no two outputs of a project share them).
OUTPUT_SHA_CHARS = 16


def output_sha(output: str) -> str:
    """The identity of an output in a label: the first :data:`OUTPUT_SHA_CHARS` hex digits of its SHA-256."""
    return hashlib.sha256(output.encode("utf-8")).hexdigest()[:OUTPUT_SHA_CHARS]


class LabelRow(BaseModel):
    """One row of a labels file, as written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    case: str
    variant: str | None = None
    output_sha: str | None = None
    #: Empty (``""`` or ``null``) in a row nobody has rated yet, such as the rows ``--prompt-label-template`` writes.
    rating: Literal["good", "bad"] | None = None
    failure_mode: str | None = None
    feedback: str | None = None
    annotator: str | None = None
    at: str | None = None
    #: The output the row is about, as the template shows it to the person labelling: for reading only.
    output: str | None = None

    @field_validator("rating", mode="before")
    @classmethod
    def _unrated(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("output_sha")
    @classmethod
    def _hex(cls, value: str | None) -> str | None:
        if value and (len(value) != OUTPUT_SHA_CHARS or any(c not in "0123456789abcdef" for c in value)):
            raise ValueError(f"expected {OUTPUT_SHA_CHARS} lower-case hex digits, as --prompt-label-template writes them")
        return value or None


@dataclass(frozen=True)
class Label:
    """A rated label of one case (for one variant, or about one output, when it says so)."""

    case: str
    rating: str
    variant: str | None = None
    output_sha: str | None = None
    failure_mode: str | None = None
    feedback: str | None = None
    annotator: str | None = None
    at: str | None = None
    #: Where it is written: ``file:line``.
    where: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain data: it rides on the case's result to the controller and into the reports."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def applies_to(self, case_id: str, variant: str) -> bool:
        """Whether this label is about case ``case_id`` as variant ``variant`` runs it."""
        return self.case == case_id and self.variant in (None, variant)


def labels_path(eval_path: Path, eval_name: str, directory: Path | None) -> Path:
    """Where an eval's labels are: ``DIRECTORY/EVAL.labels.jsonl`` when the ini names a directory, else beside the file."""
    if directory is not None:
        return directory / f"{eval_name}{LABELS_SUFFIX}"
    name = eval_path.name
    stem = next((name[: -len(end)] for end in (".eval.yaml", ".eval.yml") if name.endswith(end)), eval_path.stem)
    return eval_path.with_name(stem + LABELS_SUFFIX)


def load_labels(path: Path, case_ids: Iterable[str], variants: Iterable[str], problems: list[Problem]) -> tuple[Label, ...]:
    """The rated labels of ``path`` (none when there is no such file); each problem appended, located at its line.

    Rows without a rating are skipped: they wait for a person. A row naming a case or
    variant the eval does not have is a problem, so a renamed case does not silently
    lose its labels.
    """
    if not path.exists():
        return ()
    shown = display_path(path)
    try:
        text = read_file(path, MAX_ROWS_BYTES, "labels files")
    except Unreadable as exc:
        problems.append(Problem(shown, exc.line, None, "", str(exc)))
        return ()
    cases, names = set(case_ids), set(variants)
    labels = []
    for number, line in enumerate(text.split("\n"), start=1):  # \n only, as for included .jsonl case files
        if not line.strip():
            continue
        label = _row(line, Source.row(path, number, shown), cases, names, problems)
        if label is not None and label.rating:
            labels.append(label)
    return tuple(labels)


def _row(line: str, source: Source, cases: set[str], variants: set[str], problems: list[Problem]) -> Label | None:
    try:
        data = json.loads(line)
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        problems.append(Problem(source.shown, source.line, getattr(exc, "colno", None), "",
                                f"invalid JSON: {getattr(exc, 'msg', exc)}"))
        return None
    if not isinstance(data, dict):
        problems.append(source.problem((), "expected an object with case and rating"))
        return None
    try:
        row = LabelRow.model_validate(data)
    except ValidationError as exc:
        problems.extend(source.convert(exc, LabelRow))
        return None
    if row.case not in cases:
        problems.append(source.problem(("case",), f"unknown case id {row.case!r}: the eval has no such case"
                                       + did_you_mean(row.case, cases)))
        return None
    if row.variant is not None and row.variant not in variants:
        problems.append(source.problem(("variant",), f"unknown variant {row.variant!r} (variants: {', '.join(sorted(variants))})"
                                       + did_you_mean(row.variant, variants)))
        return None
    fields = row.model_dump(exclude={"output"})
    return Label(**fields, where=f"{source.shown}:{source.line}")


def labels_for(labels: Iterable[Label], case_id: str, variant: str) -> tuple[Label, ...]:
    """The labels about case ``case_id`` under ``variant`` (the optimizer's and the failure text's question)."""
    return tuple(label for label in labels if label.applies_to(case_id, variant))

