"""The eval file: pydantic models, and loading a ``*.eval.yaml`` into a checked :class:`LoadedEval`.

This is the only module that reads YAML (the eval file, and included case files).
Every problem found is reported with the file, line and column of the offending
node, the field path (``cases[3].vars``) and what was expected; all problems of
a file are collected and raised together as one :class:`EvalFileError`.
"""

from __future__ import annotations

import csv
import difflib
import errno
import hashlib
import io
import json
import math
import os
import re
import stat
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from . import template

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

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """A value that cannot be what its tag says (``!!int many``, a 5000-digit number) is a located error."""
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, KeyError, TypeError, OverflowError) as exc:
            kind = node.tag.rsplit(":", 1)[-1]
            shown = _short(node.value) if isinstance(node, yaml.ScalarNode) else "this value"
            detail = f": {_TOO_MANY_DIGITS} (quote it to keep it as text)" if "digits" in str(exc) else ""
            raise yaml.constructor.ConstructorError(None, None, f"{shown} is not a valid {kind}{detail}", node.start_mark) from None


def _refuse(loader: Any, node: yaml.Node) -> Any:
    raise yaml.constructor.ConstructorError(
        None, None, f"{node.tag.rsplit(':', 1)[-1]} values are not supported: eval files hold JSON-like data", node.start_mark
    )


for _tag in ("set", "binary", "timestamp"):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refuse)

# int() refuses to read more digits than this (CVE-2020-10735), in YAML and JSON alike.
_TOO_MANY_DIGITS = f"numbers may have at most {getattr(sys, 'get_int_max_str_digits', lambda: 4300)()} digits"


def _finite_float(loader: Any, node: yaml.Node) -> float:
    value = loader.construct_yaml_float(node)
    if not math.isfinite(value):
        what = "NaN" if math.isnan(value) else "infinite"
        raise yaml.constructor.ConstructorError(
            None, None, f"{_short(node.value)} is {what}: eval files hold JSON-like data, and JSON has no NaN or infinity",
            node.start_mark,
        )
    return value


_Loader.add_constructor("tag:yaml.org,2002:float", _finite_float)

EVAL_NAME = r"^[a-z0-9][a-z0-9._-]*$"
IDENT = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
_PATTERN_MEANING = {
    EVAL_NAME: "lower-case letters, digits, '.', '_' and '-', starting with a letter or digit",
    IDENT: "letters, digits, '.', '_' and '-', starting with a letter, digit or '_'",
}
GATE_METRICS = (
    "pass_rate",
    "average_score",
    "error_rate",
    "cost_usd_total",
    "cost_usd_per_case",
    "latency_ms_avg",
    "latency_ms_p50",
    "latency_ms_p95",
    "latency_ms_p99",
    "input_tokens",
    "output_tokens",
)
# Names a grader template may use besides the case's vars.
GRADER_NAMES = ("expected", "output")

# Limits on what an eval file can make collection do (docs/eval-files.md#limits): a file,
# hostile or mistaken, gets a located error instead of hanging or exhausting the session.
#: Bytes of an eval file, and of an included .yaml/.yml case file.
MAX_YAML_BYTES = 10_000_000
#: Bytes of an included .jsonl or .csv case file.
MAX_ROWS_BYTES = 50_000_000
#: Bytes of a prompt file.
MAX_PROMPT_BYTES = 1_000_000
#: Levels of mappings and lists inside one another, aliases expanded.
MAX_NESTING = 100
#: Nodes the aliases of one file stand for, counted at each use ("billion laughs" files).
MAX_ALIAS_NODES = 1_000_000
#: Characters of names that end up in MLflow experiment and run names, node ids and file names.
MAX_EVAL_NAME = 100
MAX_VARIANT_NAME = 100
MAX_CASE_ID = 200
_YAML_FILES = "eval files and included .yaml files"  # what MAX_YAML_BYTES bounds, as messages say


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


# --------------------------------------------------------------------------- models


class _Model(BaseModel):
    # NaN passes every comparison check (ge, le) and an infinite weight makes a score NaN: numbers are finite.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _json_keys(value: Any) -> Any:
    """``value`` with every mapping key as text, as JSON writes it: ``1`` → ``"1"``, ``null`` → ``"null"``.

    Vars, expected values, params and grader options end up as JSON (reports, MLflow,
    the response cache) and are hashed with sorted keys, which mixed key types break.
    Two keys that become the same text are an error rather than one silently replacing the other.
    """
    if isinstance(value, dict):
        if all(type(key) is str and not isinstance(item, (dict, list)) for key, item in value.items()):
            return value
        out: dict[str, Any] = {}
        written: dict[str, Any] = {}
        for key, item in value.items():
            text = key if isinstance(key, str) else json.dumps(key) if isinstance(key, (bool, int, float, type(None))) else str(key)
            if text in out:
                raise ValueError(
                    f"keys {_short(written[text])} and {_short(key)} are the same key once written as JSON ({text!r}); "
                    "rename one of them"
                )
            written[text] = key
            out[text] = _json_keys(item)
        return out
    if isinstance(value, list):
        return [_json_keys(item) for item in value]
    return value


#: Any JSON-like value, its mapping keys made text.
JsonData = Annotated[Any, AfterValidator(_json_keys)]


def _at_most(limit: int, why: str) -> Callable[[Any], Any]:
    """A check that a name is at most ``limit`` characters, saying ``why`` it matters."""

    def check(value: Any) -> Any:
        if isinstance(value, str) and len(value) > limit:
            raise ValueError(f"at most {limit} characters (got {len(value)}): {why}")
        return value

    return check


class Message(_Model):
    """One message of a chat prompt."""

    role: Literal["system", "developer", "user", "assistant"]
    content: str


_REGISTRY_REF = re.compile(r"^(?:prompts:/)?(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)(?:@(?P<alias>[A-Za-z0-9_-]+)|/(?P<version>[0-9]+))$")


def parse_registry_ref(ref: str) -> tuple[str, str | None, int | None] | None:
    """``"name@alias"`` → ``(name, alias, None)``; ``"name/3"`` → ``(name, None, 3)``; None when malformed.

    MLflow's ``prompts:/`` URI prefix is accepted and dropped.
    """
    found = _REGISTRY_REF.match(ref.strip())
    if found is None:
        return None
    version = found["version"]
    return found["name"], found["alias"], int(version) if version is not None else None


class Prompt(_Model):
    """A prompt, from exactly one source: an inline template, a file, chat messages or the registry."""

    template: str | None = None
    file: str | None = None
    messages: list[Message] | None = None
    registry: str | None = None

    @field_validator("registry")
    @classmethod
    def _registry_ref(cls, value: str | None) -> str | None:
        if value is not None and parse_registry_ref(value) is None:
            raise ValueError(
                f"expected 'NAME@ALIAS' or 'NAME/VERSION' (a registry prompt such as 'support-router@production' "
                f"or 'support-router/3'), got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Prompt:
        given = [k for k in ("template", "file", "messages", "registry") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a prompt needs exactly one of template, file, messages or registry"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self


# Names of credentials; "token" only at the end, so max_tokens or stop_token_ids are fine.
_SECRET_NAME = re.compile(r"api[_-]?key|authorization|secret|password|bearer|(?:^|_)token$", re.IGNORECASE)
_SECRETS_MESSAGE = "API keys never go in eval files: put the key in an environment variable and name it with api_key_env"


def _no_secrets(params: dict[str, Any]) -> dict[str, Any]:
    """Params are sent to models and recorded (MLflow params, cache keys): a key-like name holding a value is
    refused at any depth (``extra_body: {api_key: ...}``, ``headers: {Authorization: ...}``), each error located
    at that name. A mapping under such a name is searched, not refused: a JSON schema may describe a
    ``password`` field. The value itself is never shown.
    """
    from pydantic_core import PydanticCustomError

    errors = [
        {"type": PydanticCustomError("value_error", "{name} looks like a credential: {why}",
                                     {"name": repr(loc[-1]), "why": _SECRETS_MESSAGE}),
         "loc": loc, "input": loc[-1]}
        for loc in _secret_names(params, ())
    ]
    if errors:
        raise ValidationError.from_exception_data("params", errors)
    return params


def _secret_names(value: Any, loc: tuple[Any, ...]) -> Iterable[tuple[Any, ...]]:
    """Where key-like names hold something other than a mapping, in nested mappings and lists."""
    if isinstance(value, dict):
        for name, item in value.items():
            if isinstance(name, str) and _SECRET_NAME.search(name) and not isinstance(item, dict):
                yield (*loc, name)
            else:
                yield from _secret_names(item, (*loc, name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _secret_names(item, (*loc, index))


class Provider(_Model):
    """An OpenAI-compatible chat-completions endpoint."""

    base_url: str
    model: str
    api_key_env: str | None = Field(default=None, description="name of the environment variable holding the key")
    params: Annotated[dict[str, JsonData], AfterValidator(_no_secrets)] = {}
    timeout: float = Field(default=60.0, gt=0)
    retries: int = Field(default=3, ge=0, le=20)
    prompt: str | None = Field(default=None, description="which prompt to send, when the eval has several")

    @model_validator(mode="before")
    @classmethod
    def _no_key_in_files(cls, data: Any) -> Any:
        if isinstance(data, dict) and "api_key" in data:
            raise ValueError(_SECRETS_MESSAGE)
        return data

    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https:// (got {value!r})")
        return value.rstrip("/")


class ProviderTarget(_Model):
    """``target: {provider: {...}}``."""

    provider: Provider


def _check_target_name(value: str) -> str:
    if value == "echo" or value.startswith("fixture:"):
        if value.startswith("fixture:") and not value[len("fixture:") :].isidentifier():
            raise ValueError(f"fixture target must be 'fixture:NAME' with a fixture name (got {value!r})")
        return value
    module, sep, attr = value.partition(":")
    if not sep or not all(p.isidentifier() for p in module.split(".")) or not all(
        p.isidentifier() for p in attr.split(".")
    ):
        raise ValueError(
            f"expected 'module:callable', 'fixture:NAME', 'echo' or a provider mapping (got {value!r})"
        )
    return value


TargetName = Annotated[str, Field(min_length=1), AfterValidator(_check_target_name)]
# A string names a target, a mapping is a provider; the discriminator keeps pydantic
# from reporting both readings of one mistake. The tags are dropped
# from field paths in messages.
_TARGET_TAGS = ("<name>", "<provider>")
TargetSpec = Annotated[
    Union[Annotated[TargetName, Tag(_TARGET_TAGS[0])], Annotated[ProviderTarget, Tag(_TARGET_TAGS[1])]],
    Discriminator(lambda value: _TARGET_TAGS[1] if isinstance(value, (dict, ProviderTarget)) else _TARGET_TAGS[0]),
]


class Grader(_Model):
    """A grader as written in an eval file; its own options are checked by its grader type."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str
    name: str | None = None
    weight: float = Field(default=1.0, ge=0)
    required: bool = True
    failure_mode: str | None = Field(default=None, pattern=IDENT)

    @model_validator(mode="before")
    @classmethod
    def _json_options(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value if key in cls.model_fields else _json_keys(value) for key, value in data.items()}
        return data

    @property
    def options(self) -> dict[str, Any]:
        """The grader-specific keys (everything but type, name, weight, required, failure_mode)."""
        return dict(self.model_extra or {})

    @property
    def label(self) -> str:
        """How results and metrics name this grader."""
        return self.name or self.type


class GateRule(_Model):
    """One gate rule: a metric with a minimum and/or maximum."""

    metric: Literal[GATE_METRICS]  # type: ignore[valid-type]
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bound(self) -> GateRule:
        if self.min is None and self.max is None:
            raise ValueError("a gate rule needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


class Gates(_Model):
    """The eval's gates; enforced after the session (issue 3)."""

    on_fail: Literal["warn", "fail", "block_promote"] = "fail"
    rules: list[GateRule] = Field(min_length=1)


class Price(_Model):
    """USD per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)


class Variant(_Model):
    """A named variation of the eval: other prompts, params or target."""

    name: Annotated[str, Field(pattern=IDENT), AfterValidator(_at_most(
        MAX_VARIANT_NAME, "variant names are part of node ids, MLflow run names and file names"))]
    description: str = ""
    prompts: dict[str, Prompt] = {}
    params: Annotated[dict[str, JsonData], AfterValidator(_no_secrets)] = {}
    target: TargetSpec | None = None


def _id_text(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(
            "YAML reads unquoted yes/no/true/false/on/off as a boolean; quote the id (id: \"yes\")"
        )
    return str(value) if isinstance(value, int) else value


class Case(_Model):
    """One case: inputs (vars), the expected answer, extra graders and tags."""

    id: Annotated[str | None, BeforeValidator(_id_text), AfterValidator(_at_most(
        MAX_CASE_ID, "case ids are part of node ids, which pytest's --lf and MLflow's results keep"))] = Field(
        default=None, pattern=IDENT)
    description: str = ""
    vars: dict[str, JsonData] = {}
    expected: JsonData = None
    graders: list[Grader] = []
    tags: list[str] = []


class Include(_Model):
    """``- include: cases/x.jsonl`` in a case list."""

    include: str


class Eval(_Model):
    """An eval file."""

    eval: Annotated[str, Field(pattern=EVAL_NAME), AfterValidator(_at_most(
        MAX_EVAL_NAME, "eval names are part of MLflow experiment names (PREFIX/EVAL, at most 500 characters) and file names"))]
    description: str = ""
    suites: list[str] = []
    prompts: dict[str, Prompt] = {}
    target: TargetSpec
    variants: list[Variant] = []
    repeat: int = Field(default=1, ge=1, le=1000)
    repeat_pass: float = Field(default=1.0, gt=0, le=1)
    threshold: float = Field(default=1.0, ge=0, le=1)
    warn_drop: float = Field(default=0.10, ge=0, le=1)
    pricing: dict[str, Price] = {}
    graders: list[Grader] = []
    gates: Gates | None = None
    # Entries are Case or Include; told apart and checked one by one so errors stay precise.
    cases: list[Any] = Field(min_length=1)

    @field_validator("suites")
    @classmethod
    def _suite_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name or "," in name or name != name.strip():
                raise ValueError(f"suite names are single words without commas (got {name!r})")
        return value


# --------------------------------------------------------------------------- loaded, checked result


@dataclass(frozen=True)
class PromptText:
    """A prompt's text as the eval uses it: a template string or chat messages."""

    name: str
    template: str | None = None
    messages: tuple[tuple[str, str], ...] | None = None
    source: str = "inline"
    #: For a registry prompt: its registry name and the version pinned for the session.
    registry_name: str | None = None
    version: int | None = None

    def variables(self) -> set[str]:
        """Variable names used anywhere in the prompt."""
        if self.messages is not None:
            return set().union(*(template.variables(content) for _, content in self.messages))
        return template.variables(self.template or "")

    def text(self) -> str:
        """The template as one text (what is logged and versioned): the template, or each chat message as ``[role]`` and its content."""
        if self.messages is not None:
            return "\n\n".join(f"[{role}]\n{content}" for role, content in self.messages)
        return self.template or ""

    def render(self, values: Mapping[str, Any]) -> str | list[dict[str, str]]:
        """The rendered text, or rendered chat messages (``[{role, content}]``)."""
        if self.messages is not None:
            return [{"role": role, "content": template.render(content, values)} for role, content in self.messages]
        return template.render(self.template or "", values)


@dataclass(frozen=True)
class LoadedCase:
    """A case with its id settled and where it came from."""

    id: str
    vars: dict[str, Any]
    expected: Any
    graders: tuple[Grader, ...]
    tags: tuple[str, ...]
    description: str
    file: str
    line: int | None


@dataclass(frozen=True)
class LoadedVariant:
    """A variant with the eval's prompts, params and target merged in."""

    name: str
    prompts: dict[str, PromptText]
    params: dict[str, Any]
    target: str | ProviderTarget
    target_loc: tuple[Any, ...]


@dataclass(frozen=True)
class LoadedEval:
    """A checked eval file: the model, its cases, and its variants fully resolved."""

    path: Path
    spec: Eval
    cases: tuple[LoadedCase, ...]
    variants: tuple[LoadedVariant, ...]
    dataset_hash: str
    _source: _Source = field(repr=False, compare=False)

    @property
    def name(self) -> str:
        """The eval's name."""
        return self.spec.eval

    def problem(self, loc: tuple[Any, ...], message: str) -> Problem:
        """A :class:`Problem` pointing at ``loc`` in this file (for checks made after loading)."""
        return self._source.problem(loc, message)

    def span(self, loc: tuple[Any, ...]) -> tuple[int, int] | None:
        """Where the scalar value at ``loc`` is written in the eval file (character offsets), or None."""
        return self._source.span(loc)

    def release_source(self) -> None:
        """Forget the parsed YAML once the file is collected (problems found later have no line).

        The node tree with its positions is most of a large file's memory (about 16 MB
        for 5000 cases, benchmarks b2), and nothing points into the file after collection.
        """
        self._source.node = None
        self._source.data = None


# --------------------------------------------------------------------------- loading


def registry_refs(path: Path) -> tuple[list[str], set[str]]:
    """An eval file's suites and its ``registry:`` references, read without validating the rest; ([], set()) if unreadable.

    For the controlling process, which pins registry prompts before xdist workers
    collect (and report the file's problems, if it has any).
    """
    try:
        source = _Source.from_yaml(path)
    except Exception:
        return [], set()
    data = source.data if isinstance(source.data, dict) else {}
    suites = [s for s in data.get("suites") or [] if isinstance(s, str)] if isinstance(data.get("suites"), list) else []
    prompt_maps = [data.get("prompts")]
    variants = data.get("variants")
    if isinstance(variants, list):
        prompt_maps += [v.get("prompts") for v in variants if isinstance(v, dict)]
    refs = {
        p["registry"].strip()
        for prompts in prompt_maps if isinstance(prompts, dict)
        for p in prompts.values() if isinstance(p, dict) and isinstance(p.get("registry"), str)
    }
    return suites, {ref for ref in refs if parse_registry_ref(ref) is not None}


def load_eval(
    path: Path,
    grader_options: Callable[[str], type[BaseModel] | None | Exception],
    selects: Callable[[list[str]], bool] = lambda suites: True,
    registry: Callable[[str], PromptText | str] | None = None,
    roots: Sequence[Path] = (),
) -> LoadedEval | list[str]:
    """Read, validate and resolve one eval file, or raise :class:`EvalFileError`.

    ``grader_options(type)`` returns the pydantic model of a grader type's options
    (``None`` when the type takes any options), or an exception whose text says
    why the type is unknown.

    An eval whose ``suites`` can be read and are not selected (``selects(suites)``
    is false) is not checked further: its suites are returned instead. A broken
    target or case in a nightly eval does not fail a run of the core suite; a file
    too broken to tell its suites is reported whatever was selected.

    ``registry(ref)`` resolves a ``registry:`` prompt reference to its pinned text
    (a :class:`PromptText`), or returns why it cannot (a message).

    Files the eval names (``include:``, prompt ``file:``) must lie under one of ``roots``,
    the first being the rootdir; by default, the eval file's directory.
    """
    roots = tuple(Path(os.path.realpath(root)) for root in roots or (path.parent,))
    source = _Source.from_yaml(path)
    problems: list[Problem] = list(source.problems)
    if problems:
        raise EvalFileError(problems)
    if not isinstance(source.data, dict):
        raise EvalFileError([source.problem((), "expected a mapping with keys eval, target and cases")])
    suites = source.data.get("suites", [])
    if isinstance(suites, list) and all(isinstance(s, str) for s in suites) and not selects(suites):
        return suites
    try:
        spec = Eval.model_validate(source.data)
    except ValidationError as exc:
        problems += source.convert(exc, Eval)
        # Still check the cases, so that one pass over the file reports everything.
        if isinstance(source.data.get("cases"), list):
            _load_cases(source.data["cases"], path, roots, source, problems, grader_options)
        raise EvalFileError(problems) from None

    for i, grader in enumerate(spec.graders):
        problems += _check_grader(grader, ("graders", i), source, grader_options)
    spec = spec.model_copy(update={"graders": _distinct_labels(spec.graders, (), source, ("graders",), problems)})
    cases = _load_cases(spec.cases, path, roots, source, problems, grader_options, tuple(g.label for g in spec.graders))
    if not cases and not problems:
        problems.append(source.problem(("cases",), "the eval has no cases: its includes gave none"))
    variants = _resolve_variants(spec, path, roots, source, problems, registry)
    if not problems:
        problems += _check_templates(spec, cases, variants, source)
    if problems:
        raise EvalFileError(problems)
    return LoadedEval(
        path=path,
        spec=spec,
        cases=tuple(cases),
        variants=tuple(variants),
        dataset_hash=_dataset_hash(cases),
        _source=source,
    )


def _check_grader(grader: Grader, loc: tuple[Any, ...], source: _Source, grader_options: Callable) -> list[Problem]:
    options_model = grader_options(grader.type)
    if isinstance(options_model, Exception):
        return [source.problem((*loc, "type"), str(options_model))]
    if options_model is None:
        return []
    try:
        options_model.model_validate(grader.options)
    except ValidationError as exc:
        return source.convert(exc, options_model, prefix=loc, context=f"grader '{grader.type}'")
    return []


def _load_cases(
    entries: list[Any], path: Path, roots: tuple[Path, ...], source: _Source, problems: list[Problem],
    grader_options: Callable, eval_labels: tuple[str, ...] = (),
) -> list[LoadedCase]:
    cases: list[LoadedCase] = []
    seen: dict[str, LoadedCase] = {}
    for i, entry in enumerate(entries):
        loc = ("cases", i)
        if isinstance(entry, dict) and "include" in entry:
            try:
                include = Include.model_validate(entry)
            except ValidationError as exc:
                problems += source.convert(exc, Include, prefix=loc)
                continue
            rows = _read_include(path.parent, include.include, roots, source.problem((*loc, "include"), ""), problems)
        else:
            rows = [(entry, source, loc)]
        for row, row_source, row_loc in rows:
            if not isinstance(row, dict):
                problems.append(row_source.problem(row_loc, f"expected a case mapping with vars and expected, got {_kind(row)}"))
                continue
            try:
                case = Case.model_validate(row)
            except ValidationError as exc:
                problems += row_source.convert(exc, Case, prefix=row_loc)
                continue
            for g, grader in enumerate(case.graders):
                problems += _check_grader(grader, (*row_loc, "graders", g), row_source, grader_options)
            where = row_source.problem(row_loc, "")
            loaded = LoadedCase(
                id=case.id or _derived_id(row_source.path, case),
                vars=case.vars,
                expected=case.expected,
                graders=tuple(_distinct_labels(case.graders, eval_labels, row_source, (*row_loc, "graders"), problems)),
                tags=tuple(case.tags),
                description=case.description,
                file=where.file,
                line=where.line,
            )
            first = seen.get(loaded.id)
            if first is not None:
                problems.append(
                    row_source.problem(
                        (*row_loc, "id") if case.id else row_loc,
                        f"duplicate case id {loaded.id!r} (first defined at {first.file}:{first.line});"
                        " case ids must be unique within an eval",
                    )
                )
                continue
            seen[loaded.id] = loaded
            cases.append(loaded)
    return cases


def _read_include(
    base: Path, written: str, roots: tuple[Path, ...], at: Problem, problems: list[Problem]
) -> list[tuple[Any, _Source, tuple[Any, ...]]]:
    """Rows of an included case file, each with the source and location it came from."""

    def fail(message: str) -> list:
        problems.append(Problem(at.file, at.line, at.column, at.field, message))
        return []

    suffix = Path(written).suffix.lower()
    if suffix not in (".jsonl", ".csv", ".yaml", ".yml"):
        return fail(f"cannot include {Path(written).name!r}: expected a .jsonl, .csv, .yaml or .yml file")
    yaml_file = suffix in (".yaml", ".yml")
    limit, what = (MAX_YAML_BYTES, _YAML_FILES) if yaml_file else (MAX_ROWS_BYTES, "included .jsonl and .csv files")
    try:
        path = _reference(base, written, roots, "included file")
        text = _read_file(path, limit, what)
    except _Unreadable as exc:
        return fail(str(exc))
    if yaml_file:
        inc = _Source.parse(path, text)
        if inc.problems:
            problems.extend(inc.problems)
            return []
        if not isinstance(inc.data, list):
            problems.append(inc.problem((), f"expected a list of cases, got {_kind(inc.data)}"))
            return []
        return [(row, inc, (i,)) for i, row in enumerate(inc.data)]
    shown = display_path(path)
    rows: list[tuple[Any, _Source, tuple[Any, ...]]] = []
    if suffix == ".jsonl":
        # Lines end at \n only: str.splitlines() would also split at U+2028 and friends,
        # which JSON allows unescaped inside strings.
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line, parse_constant=_no_constant)
                why = _TOO_DEEP if _too_deep(row) else None
            except json.JSONDecodeError as exc:
                problems.append(Problem(shown, number, exc.colno, "", f"invalid JSON: {exc.msg}"))
                continue
            except RecursionError:  # nested deeper than the decoder goes
                why = _TOO_DEEP
            except ValueError as exc:  # NaN, Infinity, an integer of more digits than int() reads
                why = f"invalid JSON: {_TOO_MANY_DIGITS if 'digits' in str(exc) else exc}"
            if why is not None:
                problems.append(Problem(shown, number, None, "", why))
                continue
            rows.append((row, _Source.row(path, number, shown), ()))
        return rows
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames or any(not (name or "").strip() for name in reader.fieldnames):
        return fail(f"{shown}: the first row must name every column (id, expected, tags, and one column per var)")
    start = 2
    for record in reader:
        if None in record:  # more cells than header names
            problems.append(Problem(shown, start, None, "", f"row has {len(reader.fieldnames) + len(record[None])} cells, the header names {len(reader.fieldnames)}"))
        else:
            rows.append((_csv_case(record), _Source.row(path, start, shown), ()))
        start = reader.line_num + 1
    return rows


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON: eval files hold JSON-like data, and JSON has no NaN or infinity")


def _too_deep(value: Any) -> bool:
    """Whether lists and mappings nest deeper than :data:`MAX_NESTING` in ``value`` (a row of a .jsonl file)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > MAX_NESTING:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


_CSV_RESERVED = ("id", "expected", "tags", "description")


def _csv_case(record: dict[str, str | None]) -> dict[str, Any]:
    """A CSV row as a case: reserved columns by name, every other column is a var."""
    case: dict[str, Any] = {"vars": {k: v or "" for k, v in record.items() if k not in _CSV_RESERVED}}
    if record.get("id"):
        case["id"] = record["id"]
    if record.get("expected") not in (None, ""):
        case["expected"] = record["expected"]
    if record.get("description"):
        case["description"] = record["description"]
    if record.get("tags"):
        case["tags"] = [t.strip() for t in (record["tags"] or "").split(";") if t.strip()]
    return case


def _resolve_variants(
    spec: Eval, path: Path, roots: tuple[Path, ...], source: _Source, problems: list[Problem],
    registry: Callable[[str], PromptText | str] | None,
) -> list[LoadedVariant]:
    base: dict[str, PromptText] = {}
    for name, prompt in spec.prompts.items():
        text = _prompt_text(name, prompt, path, roots, source, ("prompts", name), problems, registry)
        if text is not None:
            base[name] = text
    declared = spec.variants or [Variant(name="default")]
    names: set[str] = set()
    variants = []
    for i, variant in enumerate(declared):
        loc = ("variants", i)
        if variant.name in names:
            problems.append(source.problem((*loc, "name"), f"duplicate variant name {variant.name!r}"))
            continue
        names.add(variant.name)
        prompts = dict(base)
        for name, prompt in variant.prompts.items():
            if name not in spec.prompts:
                known = ", ".join(sorted(spec.prompts)) or "none"
                problems.append(
                    source.problem(
                        (*loc, "prompts", name),
                        f"variant prompt {name!r} is not one of the eval's prompts (declared: {known})"
                        + _did_you_mean(name, spec.prompts),
                    )
                )
                continue
            text = _prompt_text(name, prompt, path, roots, source, (*loc, "prompts", name), problems, registry)
            if text is not None:
                prompts[name] = text
        own_target = variant.target is not None
        variants.append(
            LoadedVariant(
                name=variant.name,
                prompts=prompts,
                params=dict(variant.params),
                target=variant.target if own_target else spec.target,
                target_loc=(*loc, "target") if own_target else ("target",),
            )
        )
    return variants


def _prompt_text(
    name: str, prompt: Prompt, path: Path, roots: tuple[Path, ...], source: _Source, loc: tuple[Any, ...],
    problems: list[Problem], registry: Callable[[str], PromptText | str] | None,
) -> PromptText | None:
    if prompt.template is not None:
        return PromptText(name, template=prompt.template)
    if prompt.messages is not None:
        return PromptText(name, messages=tuple((m.role, m.content) for m in prompt.messages))
    if prompt.file is not None:
        try:
            text = _read_file(_reference(path.parent, prompt.file, roots, "prompt file"), MAX_PROMPT_BYTES, "prompt files")
        except _Unreadable as exc:
            problems.append(source.problem((*loc, "file"), str(exc)))
            return None
        return PromptText(name, template=text, source=str(path.parent / prompt.file))
    assert prompt.registry is not None
    found = registry(prompt.registry) if registry is not None else "registry prompts cannot be resolved here"
    if isinstance(found, str):
        problems.append(source.problem((*loc, "registry"), found))
        return None
    return replace(found, name=name)


def _check_templates(
    spec: Eval, cases: list[LoadedCase], variants: list[LoadedVariant], source: _Source
) -> list[Problem]:
    """Every variable a prompt or grader uses must be defined by every case (DESIGN §2)."""
    problems: list[Problem] = []
    for variant_index, variant in enumerate(variants):
        for name, prompt in variant.prompts.items():
            used = prompt.variables()
            loc = (
                ("variants", variant_index, "prompts", name)
                if spec.variants and name in spec.variants[variant_index].prompts
                else ("prompts", name)
            )
            problems += _missing_vars(used, cases, lambda c: c.vars, f"prompt {name!r} (variant {variant.name})", loc, source)
    for i, grader in enumerate(spec.graders):
        used = _grader_variables(grader)
        problems += _missing_vars(used, cases, _grader_values, f"grader {grader.label!r}", ("graders", i), source)
    for case in cases:
        for grader in case.graders:
            missing = template.missing(_grader_variables(grader), _grader_values(case))
            if missing:
                problems.append(
                    Problem(case.file, case.line, None, f"case {case.id}", f"grader {grader.label!r} uses {_braces(missing)}, which the case does not define")
                )
    return problems


def _missing_vars(
    used: set[str], cases: list[LoadedCase], values: Callable[[LoadedCase], Mapping[str, Any]], what: str,
    loc: tuple[Any, ...], source: _Source,
) -> list[Problem]:
    if not used:
        return []
    short: dict[tuple[str, ...], list[LoadedCase]] = {}
    for case in cases:
        missing = tuple(template.missing(used, values(case)))
        if missing:
            short.setdefault(missing, []).append(case)
    problems = []
    for missing, which in short.items():
        ids = ", ".join(c.id for c in which[:3]) + (f" (+{len(which) - 3} more)" if len(which) > 3 else "")
        first = which[0]
        problems.append(
            source.problem(
                loc,
                f"{what} uses {_braces(missing)}, which case(s) {ids} do not define "
                f"(first at {first.file}:{first.line}); "
                + ("give those cases an expected value" if missing == ("expected",) else "define it in the case's vars"),
            )
        )
    return problems


def _grader_variables(grader: Grader) -> set[str]:
    """Top-level string options, and strings in list options, are templates."""
    used: set[str] = set()
    for value in grader.options.values():
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                used |= template.variables(text)
    return used


def _grader_values(case: LoadedCase) -> Mapping[str, Any]:
    values: dict[str, Any] = {**case.vars, "output": ""}
    if case.expected is not None:
        values["expected"] = case.expected
    return values


def _distinct_labels(
    graders: list[Grader], taken: tuple[str, ...], source: _Source, loc: tuple[Any, ...], problems: list[Problem]
) -> list[Grader]:
    """Graders with labels unique within the eval: a second unnamed ``contains`` becomes ``contains_2``.

    Results, failure text and per-grader pass rates are keyed by label; two graders
    sharing one would merge. Two graders *named* alike is a mistake and reported.
    """
    named: set[str] = set(taken)
    for i, grader in enumerate(graders):
        if grader.name is not None:
            if grader.name in named:
                problems.append(
                    source.problem((*loc, i, "name"), f"another grader of this eval is already named {grader.name!r}")
                )
            named.add(grader.name)
    used = named  # numbering skips every name a user gave
    out = []
    for grader in graders:
        if grader.name is not None:
            out.append(grader)
            continue
        label = grader.label
        if label in used:
            n = 2
            while f"{label}_{n}" in used:
                n += 1
            grader = grader.model_copy(update={"name": f"{label}_{n}"})
        used.add(grader.label)
        out.append(grader)
    return out


def _derived_id(path: Path, case: Case) -> str:
    body = json.dumps({"vars": case.vars, "expected": case.expected}, sort_keys=True, default=str)
    stem = path.stem.split(".")[0][: MAX_CASE_ID - 9]  # a file name may be longer than a case id
    return f"{stem}-{hashlib.sha256(body.encode()).hexdigest()[:8]}"


def _dataset_hash(cases: list[LoadedCase]) -> str:
    body = json.dumps(
        [[c.id, c.vars, c.expected, [g.model_dump() for g in c.graders], c.tags] for c in cases],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(body.encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- locating problems


class _Source:
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
    def row(cls, path: Path, line: int, shown: str) -> _Source:
        """One row of a .jsonl or .csv file: every field of it is reported at the row's line."""
        return cls(path, None, None, line, shown)

    @classmethod
    def from_yaml(cls, path: Path) -> _Source:
        """An eval file (or an included .yaml file that :func:`_reference` allowed), read and parsed.

        Problems with the file as a whole (it cannot be read, is too large, is empty) are
        reported at its line 1.
        """
        try:
            text = _read_file(path, MAX_YAML_BYTES, _YAML_FILES)
        except _Unreadable as exc:
            source = cls(path, None, None)
            source.problems.append(Problem(source.shown, exc.line or 1, None, "", str(exc)))
            return source
        return cls.parse(path, text)

    @classmethod
    def parse(cls, path: Path, text: str) -> _Source:
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
                self.problems.append(self._at(node, _path(loc), _TOO_DEEP))
                return
            if isinstance(node, yaml.MappingNode):
                seen: set[str] = set()
                for key, value in node.value:
                    if not isinstance(key, yaml.ScalarNode):  # a mapping or list as a key: the constructor refuses it
                        continue
                    if key.value in seen:
                        self.problems.append(
                            self._at(key, _path((*loc, key.value)), f"duplicate key {_short(key.value)} (YAML keeps only the last)")
                        )
                    seen.add(key.value)
                    if not isinstance(value, yaml.ScalarNode):
                        stack.append((value, (*loc, key.value), depth + 1))
            else:
                stack.extend((item, (*loc, i), depth + 1) for i, item in enumerate(node.value) if not isinstance(item, yaml.ScalarNode))

    def problem(self, loc: tuple[Any, ...], message: str, *, key: bool = False) -> Problem:
        """A problem at ``loc`` (the key itself when ``key``, else the value)."""
        if self.node is None:
            return Problem(self.shown, self.line, None, _path(loc), message)
        node = self.node
        for part in loc:
            found = _child(node, part, key=key and part == loc[-1])
            if found is None:
                break
            node = found
        return self._at(node, _path(loc), message)

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
            loc = tuple(part for part in error["loc"] if part not in _TARGET_TAGS)
            kind = error["type"]
            if kind == "extra_forbidden":
                allowed = _fields_at(model, loc[:-1])
                key = loc[-1]
                message = f"unknown key {key!r}" + _did_you_mean(str(key), allowed)
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
                found = self.problem((*at, key), f"{what}, got {_kind(key)} {_short(key)}; quote it or rename it", key=True)
                problems.append(replace(found, field=_path(at)))
            elif kind == "missing":
                message = f"missing required field {loc[-1]!r}" + (f" ({context})" if context else "")
                # Point at the mapping that lacks the field, but name the field itself.
                problems.append(replace(self.problem(prefix + loc[:-1], message), field=_path(prefix + loc)))
            else:
                problems.append(self.problem(prefix + loc, _expectation(error)))
        return problems


_TOO_DEEP = f"nesting deeper than {MAX_NESTING} levels of mappings and lists"


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
                    return event.start_mark, _TOO_DEEP
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
        message = f"expected {_PATTERN_MEANING.get(pattern, 'text matching ' + pattern)}"
    elif kind == "value_error":
        return message
    elif kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
        return f"expected one of: {', '.join(choices)} (got {_short(error.get('input'))})" + _did_you_mean(
            str(error.get("input")), choices
        )
    got = error.get("input")
    if kind not in ("model_type", "dict_type", "list_type") or got is not None:
        message += f" (got {_kind(got)} {_short(got)})" if not isinstance(got, (dict, list)) else f" (got {_kind(got)})"
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


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out if len(out) <= 100 else f"{out[:60]}...{out[-37:]}"  # deep nesting, long keys


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", bool: "a boolean", int: "a number", float: "a number",
            type(None): "nothing"}.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _braces(names: Iterable[str]) -> str:
    return ", ".join("{{" + n + "}}" for n in names)


class _Unreadable(ValueError):
    """Why a file cannot be read; ``line`` is where in it, when that is known (a byte that is not UTF-8)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _limit_text(limit: int) -> str:
    return f"{limit / 1_000_000:g} MB"


def _check_file(info: os.stat_result, shown: str, limit: int, what: str) -> None:
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _FILE_KINDS if test(info.st_mode)), "not a file")
        raise _Unreadable(f"{shown} is not a regular file ({kind}); only regular files are read")
    if info.st_size > limit:
        raise _Unreadable(f"{shown} is {info.st_size:,} bytes; {what} may be at most {_limit_text(limit)}")


def _os_problem(exc: OSError, path: Path, shown: str, what: str) -> _Unreadable:
    if exc.errno == errno.ELOOP:
        return _Unreadable(f"{shown} is a symbolic link loop")
    if exc.errno == errno.ENOENT:
        if os.path.islink(path):
            return _Unreadable(f"{what} not found: {shown} is a symbolic link to {os.readlink(path)}, which does not exist")
        return _Unreadable(f"{what} not found: {shown}")
    return _Unreadable(f"cannot read {shown}: {exc.strerror or exc}")


def _read_file(path: Path, limit: int, what: str) -> str:
    """The text of the regular file at ``path``, at most ``limit`` bytes of UTF-8 (a byte-order mark is dropped).

    Anything else is an :class:`_Unreadable` saying why. Only regular files are read: the
    file is looked at before it is opened, and opened without blocking, so a FIFO or a
    device (``/dev/zero``) in its place is refused instead of hanging collection or filling
    its memory. ``what`` names such files in messages ("prompt files").
    """
    shown = display_path(path)
    try:
        _check_file(os.stat(path), shown, limit, what)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise _os_problem(exc, path, shown, "file") from None
    with open(fd, "rb") as f:
        _check_file(os.fstat(f.fileno()), shown, limit, what)  # what was opened, should the path have changed since
        data = f.read(limit + 1)
    if len(data) > limit:
        raise _Unreadable(f"{shown} is more than {limit:,} bytes; {what} may be at most {_limit_text(limit)}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise _Unreadable(f"{shown} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8", line) from None


def _reference(base: Path, written: str, roots: Sequence[Path], what: str) -> Path:
    """The file a reference in an eval file names (``include:``, a prompt's ``file:``), relative to ``base``.

    It must exist and lie, symbolic links followed, under one of ``roots`` (the rootdir and
    the ini key ``promptgate_allowed_paths``): an eval file cannot read ``/etc/passwd``.
    """
    path = base / written
    shown = display_path(path)
    if len(shown) > 200:
        shown = f"{shown[:120]}...{shown[-60:]}"
    try:
        real = Path(os.path.realpath(path, strict=True))
    except OSError as exc:
        raise _os_problem(exc, path, shown, what) from None
    except ValueError as exc:  # a NUL character
        raise _Unreadable(f"{what} {_short(written)} cannot be a file name: {exc}") from None
    if not any(real.is_relative_to(root) for root in roots):
        place = shown if real == Path(os.path.abspath(path)) else f"{shown} leads to {real}, which"
        others = f" and {', '.join(map(str, roots[1:]))}" if len(roots) > 1 else ""
        raise _Unreadable(
            f"{place} is outside the rootdir ({roots[0]}){others}; files elsewhere can be read only from directories "
            "listed in the ini key promptgate_allowed_paths"
        )
    return real


def display_path(path: str | Path) -> str:
    """Paths relative to the working directory when below it, as pytest shows them (symbolic links not followed)."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)
