"""YAML (and rows of case files) as data that can point at its own lines: every problem located.

This is the only code that parses YAML. A file is read bounded (:mod:`.files`),
checked for alias bombs and nesting before it becomes data, and kept as a node
tree so that a field path (``cases[3].vars``) found wrong later, by pydantic or
by a check of the loader, is reported at its file, line and column with what was
expected (:meth:`Source.convert`).
"""

from __future__ import annotations

import math
import re
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import BaseModel, ValidationError

from .files import MAX_YAML_BYTES, YAML_FILES, Unreadable, display_path, read_file
from .models import PATTERN_MEANING, TARGET_TAGS
from .words import did_you_mean, field_path, kind_of, short

#: Levels of mappings and lists inside one another, aliases expanded.
MAX_NESTING = 100
#: Nodes the aliases of one file stand for, counted at each use ("billion laughs" files).
MAX_ALIAS_NODES = 1_000_000

try:  # DESIGN §2: parse with the C-accelerated loader when libyaml is there.
    _Base: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Base = yaml.SafeLoader


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """The safe loader, producing JSON-compatible values only.

    Results cross process boundaries (xdist) and end up as JSON, so an unquoted
    ``2024-01-01`` stays the text it looks like instead of becoming a date, and
    ``!!set``, ``!!binary`` and ``!!timestamp`` are refused where they stand.
    """

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in _Base.yaml_implicit_resolvers.items()
    }

    # The node kinds' tags, as PyYAML's resolver gives them to a loader without path resolvers (none is added
    # here): the same tags, a million calls a second sooner on a 100 000-case file, where libyaml asks for each node.
    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode:
            if implicit[0]:
                for tag, regexp in self.yaml_implicit_resolvers.get(value[:1], ()):
                    if regexp.match(value):
                        return tag
            return _STR
        return _SEQ if kind is yaml.SequenceNode else _MAP

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        pass

    def ascend_resolver(self) -> None:
        pass

    def construct_document(self, node: yaml.Node) -> Any:
        """The document's data, made by one walk over its nodes (:meth:`_plain`) when it is plain JSON-like YAML;
        a document with a merge key (``<<``) or a key that is a mapping or list goes through PyYAML's constructor.

        PyYAML's constructor is written in Python even with libyaml, and was two thirds of reading a 100 000-case
        file (benchmarks/run.py, b6); the walk gives the same values: text, lists and mappings as they are, any
        other tag (numbers, booleans, null, the refused ones) through :meth:`construct_object`, and a node that
        aliases share made once.
        """
        try:
            return self._plain(node, {})
        except _NotPlain:
            return super().construct_document(node)
        finally:
            self.constructed_objects, self.recursive_objects = {}, {}

    def _plain(self, node: yaml.Node, made: dict[int, Any]) -> Any:
        key = id(node)
        if key in made:
            return made[key]
        tag = node.tag
        if tag == _STR and isinstance(node, yaml.ScalarNode):
            value: Any = node.value
        elif tag == _SEQ and isinstance(node, yaml.SequenceNode):
            value = made[key] = []
            value.extend([self._plain(item, made) for item in node.value])
        elif tag == _MAP and isinstance(node, yaml.MappingNode):
            value = made[key] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE:
                    raise _NotPlain
                value[self._plain(key_node, made)] = self._plain(value_node, made)
        elif isinstance(node, yaml.ScalarNode):
            value = self.construct_object(node, deep=True)
        else:
            raise _NotPlain
        made[key] = value
        return value

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """A value that cannot be what its tag says (``!!int many``, a 5000-digit number) is a located error."""
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, KeyError, TypeError, OverflowError) as exc:
            kind = node.tag.rsplit(":", 1)[-1]
            shown = short(node.value) if isinstance(node, yaml.ScalarNode) else "this value"
            detail = f": {TOO_MANY_DIGITS} (quote it to keep it as text)" if "digits" in str(exc) else ""
            raise yaml.constructor.ConstructorError(None, None, f"{shown} is not a valid {kind}{detail}", node.start_mark) from None


_STR, _SEQ, _MAP, _MERGE = (f"tag:yaml.org,2002:{kind}" for kind in ("str", "seq", "map", "merge"))


class _NotPlain(Exception):
    """A document :meth:`_Loader._plain` leaves to PyYAML's constructor."""


def _refuse(loader: Any, node: yaml.Node) -> Any:
    raise yaml.constructor.ConstructorError(
        None, None, f"{node.tag.rsplit(':', 1)[-1]} values are not supported: eval files hold JSON-like data", node.start_mark
    )


for _tag in ("set", "binary", "timestamp"):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refuse)

# int() refuses to read more digits than this (CVE-2020-10735), in YAML and JSON alike.
TOO_MANY_DIGITS = f"numbers may have at most {getattr(sys, 'get_int_max_str_digits', lambda: 4300)()} digits"


def _finite_float(loader: Any, node: yaml.Node) -> float:
    value = loader.construct_yaml_float(node)
    if not math.isfinite(value):
        what = "NaN" if math.isnan(value) else "infinite"
        raise yaml.constructor.ConstructorError(
            None, None, f"{short(node.value)} is {what}: eval files hold JSON-like data, and JSON has no NaN or infinity",
            node.start_mark,
        )
    return value


_Loader.add_constructor("tag:yaml.org,2002:float", _finite_float)


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an eval file (or a file it includes)."""

    file: str
    line: int | None
    column: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class EvalFileError(Exception):
    """An eval file that cannot be used; carries every :class:`Problem` found in it."""

    def __init__(self, problems: list[Problem]) -> None:
        # In the order a person reads the files: by file, then line, then column; each once (variants
        # that share the eval's target would otherwise repeat its problem).
        problems = sorted(dict.fromkeys(problems), key=lambda p: (p.file, p.line or 0, p.column or 0))
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class Source:
    """A parsed file, able to point a field path at its line and column."""

    def __init__(self, path: Path, data: Any, node: yaml.Node | None, line: int | None = None,
                 shown: str | None = None) -> None:
        self.path = path
        self.shown = shown or display_path(path)
        self.data = data
        self.node = node
        self.line = line  # rows of .jsonl/.csv files: the whole row is one line
        self.problems: list[Problem] = []

    @classmethod
    def row(cls, path: Path, line: int, shown: str) -> Source:
        """One row of a .jsonl or .csv file: every field of it is reported at the row's line."""
        return cls(path, None, None, line, shown)

    @classmethod
    def from_yaml(cls, path: Path) -> Source:
        """An eval file (or an included .yaml file that :func:`reference` allowed), read and parsed.

        Problems with the file as a whole (it cannot be read, is too large, is empty) are
        reported at its line 1.
        """
        try:
            text = read_file(path, MAX_YAML_BYTES, YAML_FILES)
        except Unreadable as exc:
            source = cls(path, None, None)
            source.problems.append(Problem(source.shown, exc.line or 1, None, "", str(exc)))
            return source
        return cls.parse(path, text)

    @classmethod
    def parse(cls, path: Path, text: str) -> Source:
        """YAML text as data and as a node tree, each bounded (:data:`MAX_NESTING`, :data:`MAX_ALIAS_NODES`)."""
        source = cls(path, None, None)
        shown = source.shown
        # Aliases need anchors: a file without both marks has none, and skips the second pass.
        refused = _alias_problem(text) if "&" in text and "*" in text else None
        if refused is not None:
            mark, message = refused
            source.problems.append(Problem(shown, mark.line + 1, mark.column + 1, "", message))
            return source
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                source._check_nodes(node)
            data = loader.construct_document(node) if node is not None else None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            message = " ".join(str(p) for p in (exc.context, exc.problem) if p)
            lines = text.split("\n")
            if mark is not None and mark.line < len(lines) and "\t" in lines[mark.line][: mark.column + 1]:
                message += " (YAML does not allow tabs for indentation; use spaces)"
            source.problems.append(
                Problem(shown, mark.line + 1 if mark else None, mark.column + 1 if mark else None, "", f"invalid YAML: {message}")
            )
            return source
        except yaml.YAMLError as exc:
            source.problems.append(Problem(shown, 1, None, "", f"invalid YAML: {exc}"))
            return source
        finally:
            loader.dispose()
        source.data, source.node = data, node
        if node is None:
            source.problems.append(Problem(shown, 1, None, "", "the file is empty; expected a mapping with keys eval, target and cases"))
        return source

    def _check_nodes(self, root: yaml.Node) -> None:
        """Duplicate keys, and nesting deeper than :data:`MAX_NESTING`, found in the node tree before it becomes data.

        A node that aliases share is looked at once (:func:`_alias_problem` has bounded them).
        """
        walked: set[int] = set()
        stack: list[tuple[yaml.Node, tuple[Any, ...], int]] = [(root, (), 1)]
        while stack:
            node, loc, depth = stack.pop()
            if isinstance(node, yaml.ScalarNode) or id(node) in walked:
                continue
            walked.add(id(node))
            if depth > MAX_NESTING:
                self.problems.append(self._at(node, field_path(loc), TOO_DEEP))
                return
            if isinstance(node, yaml.MappingNode):
                seen: set[str] = set()
                for key, value in node.value:
                    if not isinstance(key, yaml.ScalarNode):  # a mapping or list as a key: the constructor refuses it
                        continue
                    if key.value in seen:
                        self.problems.append(
                            self._at(key, field_path((*loc, key.value)), f"duplicate key {short(key.value)} (YAML keeps only the last)")
                        )
                    seen.add(key.value)
                    if not isinstance(value, yaml.ScalarNode):
                        stack.append((value, (*loc, key.value), depth + 1))
            else:
                stack.extend((item, (*loc, i), depth + 1) for i, item in enumerate(node.value) if not isinstance(item, yaml.ScalarNode))

    def problem(self, loc: tuple[Any, ...], message: str, *, key: bool = False) -> Problem:
        """A problem at ``loc`` (the key itself when ``key``, else the value)."""
        if self.node is None:
            return Problem(self.shown, self.line, None, field_path(loc), message)
        node = self.node
        for part in loc:
            found = _child(node, part, key=key and part == loc[-1])
            if found is None:
                break
            node = found
        return self._at(node, field_path(loc), message)

    def span(self, loc: tuple[Any, ...]) -> tuple[int, int] | None:
        """Where the scalar at ``loc`` is written in the file (character offsets), or None."""
        node = self.node
        for part in loc:
            node = _child(node, part) if node is not None else None
        if not isinstance(node, yaml.ScalarNode):
            return None
        return node.start_mark.index, node.end_mark.index

    def _at(self, node: yaml.Node, field: str, message: str) -> Problem:
        return Problem(self.shown, node.start_mark.line + 1, node.start_mark.column + 1, field, message)

    def convert(
        self, exc: ValidationError, model: type[BaseModel], prefix: tuple[Any, ...] = (), context: str = ""
    ) -> list[Problem]:
        """pydantic errors as problems, each with a plain statement of what was expected."""
        problems = []
        for error in exc.errors(include_url=False):
            loc = tuple(part for part in error["loc"] if part not in TARGET_TAGS)
            kind = error["type"]
            if kind == "extra_forbidden":
                allowed = _fields_at(model, loc[:-1])
                key = loc[-1]
                message = f"unknown key {key!r}" + did_you_mean(str(key), allowed)
                if allowed:
                    message += f"; expected one of: {', '.join(allowed)}"
                if context:
                    message += f" ({context})"
                problems.append(self.problem(prefix + loc, message, key=True))
            elif loc[-1:] == ("[key]",):
                # A mapping key that is not text: point at the key, name the mapping. The key itself is the
                # error's input (in ``loc``, pydantic writes None as 'None' and True as 1).
                where, key = loc[:-2], error.get("input")
                at = (*prefix, *where)
                what = "var names are text (template variable names)" if where[-1:] == ("vars",) else "keys here are text"
                found = self.problem((*at, key), f"{what}, got {kind_of(key)} {short(key)}; quote it or rename it", key=True)
                problems.append(replace(found, field=field_path(at)))
            elif kind == "missing":
                message = f"missing required field {loc[-1]!r}" + (f" ({context})" if context else "")
                # Point at the mapping that lacks the field, but name the field itself.
                problems.append(replace(self.problem(prefix + loc[:-1], message), field=field_path(prefix + loc)))
            else:
                problems.append(self.problem(prefix + loc, _expectation(error)))
        return problems


TOO_DEEP = f"nesting deeper than {MAX_NESTING} levels of mappings and lists"


def _alias_problem(text: str) -> tuple[yaml.Mark, str] | None:
    """Where and why the aliases of a YAML text expand too far, if they do: (the alias's mark, the message).

    Composing shares one node among its aliases, so a "billion laughs" file composes at
    once and blows up only when walked or converted; an alias inside the node it names
    makes a cycle. Both are found here from the parser's events, before composing, with
    the place of the alias that crosses the line: a recursive alias, more than
    :data:`MAX_ALIAS_NODES` nodes stood for by aliases, or more than :data:`MAX_NESTING`
    levels once aliases are expanded. Syntax errors are left to the composer, which reports them.
    """
    loader = _Loader(text)
    #: anchor -> (nodes, levels) of the node it names, once that node is complete
    named: dict[str, tuple[int, int]] = {}
    #: the collections open around the current event: [anchor, its mark, nodes so far, levels below]
    open_: list[list[Any]] = []
    aliased = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                if len(open_) >= MAX_NESTING:
                    return event.start_mark, TOO_DEEP
                open_.append([event.anchor, event.start_mark, 1, 0])
                continue
            if isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                anchor, _, nodes, levels = open_.pop()
                levels += 1
                if anchor is not None:
                    named[anchor] = (nodes, levels)
            elif isinstance(event, yaml.ScalarEvent):
                nodes, levels = 1, 0
                if event.anchor is not None:
                    named[event.anchor] = (nodes, levels)
            elif isinstance(event, yaml.AliasEvent):
                name = event.anchor
                around = next((frame for frame in reversed(open_) if frame[0] == name), None)
                if around is not None:
                    return event.start_mark, (
                        f"alias *{name} is used inside the node it names (line {around[1].line + 1}): "
                        "YAML cannot expand a node into itself"
                    )
                if name not in named:
                    continue  # an undefined alias: the composer says so
                nodes, levels = named[name]
                aliased += nodes
                if aliased > MAX_ALIAS_NODES:
                    return event.start_mark, (
                        f"alias *{name} stands for {nodes:,} nodes; the aliases of a file may stand for at most "
                        f"{MAX_ALIAS_NODES:,} nodes in all (write the data out, or alias less)"
                    )
                if len(open_) + levels > MAX_NESTING:
                    return event.start_mark, f"alias *{name} nests deeper than {MAX_NESTING} levels of mappings and lists"
            else:
                continue
            if open_:
                frame = open_[-1]
                frame[2] += nodes
                frame[3] = max(frame[3], levels)
    except yaml.YAMLError:
        return None
    finally:
        loader.dispose()
    return None


def _child(node: yaml.Node, part: Any, key: bool = False) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if k.value == str(part) or (not isinstance(part, str) and _is_key(k, part)):
                return k if key else v
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        return node.value[part]
    return None


def _is_key(node: yaml.Node, value: Any) -> bool:
    """Whether a key node is written for ``value`` (``~`` for None, ``yes`` for True): for keys that are not text."""
    if not isinstance(node, yaml.ScalarNode):
        return False
    try:
        found = yaml.constructor.SafeConstructor().construct_object(node)
    except (yaml.YAMLError, ValueError, KeyError, TypeError):
        return False
    return type(found) is type(value) and found == value


def _expectation(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind == "string_pattern_mismatch":
        pattern = error.get("ctx", {}).get("pattern", "")
        message = f"expected {PATTERN_MEANING.get(pattern, 'text matching ' + pattern)}"
    elif kind == "value_error":
        return message
    elif kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
        return f"expected one of: {', '.join(choices)} (got {short(error.get('input'))})" + did_you_mean(
            str(error.get("input")), choices
        )
    got = error.get("input")
    if kind not in ("model_type", "dict_type", "list_type") or got is not None:
        message += f" (got {kind_of(got)} {short(got)})" if not isinstance(got, (dict, list)) else f" (got {kind_of(got)})"
    return message[0].lower() + message[1:] if message[:1].isupper() and not message[:2].isupper() else message


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model found by following ``loc`` through annotations."""
    tp: Any = model
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            info = tp.model_fields.get(str(part))
            if info is None:
                return []
            tp = info.annotation
        elif typing.get_origin(tp) in (list, tuple) and isinstance(part, int):
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        else:
            return []
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [name for name in tp.model_fields]
    return []


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            members = [typing.get_args(a)[0] if typing.get_origin(a) is Annotated else a for a in typing.get_args(tp)]
            models = [a for a in members if isinstance(a, type) and issubclass(a, BaseModel)]
            tp = models[0] if len(models) == 1 else tp
            if not models or len(models) > 1:
                return tp
        else:
            return tp
