"""What every importer produces (an :class:`Imported` eval), how it reads its inputs, and how it is written.

Each source format has its own module; they share this one so that every imported
file looks alike: a header comment naming the source and listing what could not be
mapped (nothing is dropped silently), the eval as YAML, and its cases inline or,
past :data:`INLINE_CASES`, in a ``.jsonl`` include beside it.
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ...schema import (
    MAX_ROWS_BYTES,
    MAX_YAML_BYTES,
    Source,
    Unreadable,
    display_path,
    read_file,
)

#: More cases than this go to a ``NAME.cases.jsonl`` include: a large sample set stays one row per line.
INLINE_CASES = 50
#: The suite every imported eval is in: ``pytest --prompt-suite imported DIR`` runs what was imported.
SUITE = "imported"


class ImportFailure(Exception):
    """Input that cannot be read or understood; the message is located (``file:line: field: what was expected``)."""


@dataclass
class Imported:
    """One eval file to write: the eval's keys (without ``cases``), its cases, and what was not mapped."""

    name: str
    source: str  # "promptfoo config promptfooconfig.yaml", said in the header
    eval: dict[str, Any]
    cases: list[dict[str, Any]]
    unmapped: list[str] = field(default_factory=list)  # "where: what, and why", one per thing left out
    notes: list[str] = field(default_factory=list)  # choices the importer made that a person should review
    files: dict[str, str] = field(default_factory=dict)  # other files to write beside the eval: name -> text


class Document:
    """A YAML or JSON input file, parsed with places so that a problem is reported at its line."""

    def __init__(self, path: Path) -> None:
        try:
            text = read_file(path, MAX_YAML_BYTES, "imported files")
        except Unreadable as exc:
            raise ImportFailure(f"{display_path(path)}:{exc.line or 1}: {exc}") from None
        self.path = path
        # YAML reads JSON too, and keeps its places; but it also reads what JSON refuses (`"a": }`), so a .json
        # file is JSON first. YAML refuses some JSON (tabs before a key): such a file is used without places.
        data = _json(path, text) if path.suffix == ".json" else None
        self.source = Source.parse(path, text)
        if self.source.problems and path.suffix == ".json":
            self.source = Source(path, data, None)
        if self.source.problems:
            raise ImportFailure(str(self.source.problems[0]))
        self.data = self.source.data

    def fail(self, loc: tuple[Any, ...], message: str) -> ImportFailure:
        """A failure located at ``loc`` (a field path into the document)."""
        return ImportFailure(str(self.source.problem(loc, message)))

    def place(self, loc: tuple[Any, ...]) -> str:
        """``file:line:column`` of the value at ``loc``."""
        found = self.source.problem(loc, "")
        return ":".join(str(part) for part in (found.file, found.line, found.column) if part is not None)

    def get(self, loc: tuple[Any, ...], kind: type | tuple[type, ...], what: str) -> Any:
        """The value at ``loc``, which must be of ``kind`` (``what`` says what was expected)."""
        value: Any = self.data
        for part in loc:
            if isinstance(value, dict):
                value = value.get(part)
            else:
                value = value[part] if isinstance(value, list) and isinstance(part, int) and part < len(value) else None
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
            raise self.fail(loc, f"expected {what}")
        return value


def _json(path: Path, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ImportFailure(f"{display_path(path)}:{getattr(exc, 'lineno', 1)}: invalid JSON: {exc}") from None


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """The JSON objects of a ``.jsonl`` file with their line numbers; blank lines skipped."""
    try:
        text = read_file(path, MAX_ROWS_BYTES, "imported files")
    except Unreadable as exc:
        raise ImportFailure(f"{display_path(path)}:{exc.line or 1}: {exc}") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ImportFailure(f"{display_path(path)}:{number}: invalid JSON: {exc}") from None
        if not isinstance(row, dict):
            raise ImportFailure(f"{display_path(path)}:{number}: expected a JSON object, got {type(row).__name__}")
        rows.append((number, row))
    return rows


def eval_name(text: str) -> str:
    """``text`` as an eval name (lower case, ``[a-z0-9._-]``, starting with a letter or digit)."""
    name = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")[:100].strip("-._")
    return name or "imported"


def ident(text: str) -> str:
    """``text`` as a case id or variant name."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:100].strip("-.")
    return name or "_"


#: A ``{{name}}`` of our templates; text that holds one would be read as a variable, so it goes in a var instead.
TEMPLATE_VARIABLE = re.compile(r"\{\{\s*[a-zA-Z_][a-zA-Z0-9_.]*\s*\}\}")


def variable(name: str) -> str:
    """``{{name}}``: a template variable, as the eval file writes it."""
    return "{{" + name + "}}"


class _Dumper(yaml.SafeDumper):
    """Writes text of several lines (prompts, judge prompts) as a ``|`` block a person can read and edit,
    and a value used twice (a shared prompt, graders of expanded tests) in full each time, not as an alias."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _text)


def paths(imported: Imported, dest: Path) -> list[Path]:
    """The files :func:`write` writes for ``imported``: the eval file, its cases include if large, other files."""
    include = [dest / f"{imported.name}.cases.jsonl"] if len(imported.cases) > INLINE_CASES else []
    return [dest / f"{imported.name}.eval.yaml", *include, *(dest / name for name in imported.files)]


def write(imported: Imported, dest: Path) -> None:
    """Write the eval file, its cases include (past :data:`INLINE_CASES` cases) and other files into ``dest``."""
    target, *others = paths(imported, dest)
    data = dict(imported.eval)
    if len(imported.cases) > INLINE_CASES:
        include = others[0]
        data["cases"] = [{"include": include.name}]
        include.write_text("".join(json.dumps(case, ensure_ascii=False) + "\n" for case in imported.cases),
                           encoding="utf-8")
    else:
        data["cases"] = imported.cases
    for name, text in imported.files.items():
        (dest / name).write_text(text, encoding="utf-8")
    target.write_text(header(imported) + yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100),
                      encoding="utf-8")


def header(imported: Imported) -> str:
    """The comment above the eval: where it came from, what to review, and everything not mapped."""
    lines = [f"Imported by pytest-promptgate (--prompt-import) from {imported.source}."]
    lines += imported.notes
    if imported.unmapped:
        lines.append(f"Not mapped ({len(imported.unmapped)}): left out of this file, check by hand:")
        lines += [f"  - {item}" for item in imported.unmapped]
    else:
        lines.append("Everything in the source was mapped.")
    wrapped = [part for line in lines
               for part in textwrap.wrap(line, 98, subsequent_indent="    " if line.startswith("  - ") else "  ",
                                         break_long_words=False, break_on_hyphens=False)]
    return "".join(f"# {line}\n" for line in wrapped) + "\n"
