"""Loading an eval file into a checked :class:`LoadedEval`: cases, includes, variants, templates.

Every problem found is reported with the file, line and column of the offending
node, the field path and what was expected; all problems of a file are collected
and raised together as one :class:`~.source.EvalFileError`.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .. import template
from .labels import Label, labels_path, load_labels
from .files import MAX_PROMPT_BYTES, MAX_ROWS_BYTES, MAX_YAML_BYTES, YAML_FILES, Unreadable, display_path, read_file, reference
from .models import MAX_CASE_ID, Case, Eval, Grader, Include, Prompt, ProviderTarget, Variant, parse_registry_ref
from .source import MAX_NESTING, TOO_DEEP, TOO_MANY_DIGITS, EvalFileError, Problem, Source
from .words import braces, did_you_mean, kind_of


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
    #: People's rated labels of the case (``NAME.labels.jsonl``), of every variant.
    labels: tuple[Label, ...] = ()
    #: The case's own ``repeat``; None: the eval's.
    repeat: int | None = None


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
    _source: Source = field(repr=False, compare=False)

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
        source = Source.from_yaml(path)
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
    labels_dir: Path | None = None,
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

    The eval's labels file (:func:`~.labels.labels_path`: beside the eval file, or in
    ``labels_dir``) is read with it; its problems are the eval's.
    """
    with paused_gc():
        return _load_eval(path, grader_options, selects, registry, roots, labels_dir)


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Python's cyclic garbage collector off while it lasts (and back on after, if it was on).

    Reading a file makes millions of objects that live on (YAML nodes, the data, the cases), none
    in a cycle; each time their count grows by 700 the collector runs, and now and then it walks
    all of them: reading a 100 000-case file took 7.6 s with it and 1.9 s without (benchmarks/run.py, b6).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _load_eval(
    path: Path,
    grader_options: Callable[[str], type[BaseModel] | None | Exception],
    selects: Callable[[list[str]], bool],
    registry: Callable[[str], PromptText | str] | None,
    roots: Sequence[Path],
    labels_dir: Path | None,
) -> LoadedEval | list[str]:
    roots = tuple(Path(os.path.realpath(root)) for root in roots or (path.parent,))
    source = Source.from_yaml(path)
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
    if not problems:  # labels name cases and variants: checked against a sound eval only
        cases = _with_labels(cases, labels_path(path, spec.eval, labels_dir), [v.name for v in variants], problems)
    if problems:
        raise EvalFileError(problems)
    return LoadedEval(
        path=path,
        spec=spec.model_copy(update={"cases": []}),  # the cases as written: ``cases`` has them, validated
        cases=tuple(cases),
        variants=tuple(variants),
        dataset_hash=_dataset_hash(cases),
        _source=source,
    )


def _with_labels(cases: list[LoadedCase], path: Path, variants: list[str], problems: list[Problem]) -> list[LoadedCase]:
    """The cases, each with its rated labels from the labels file at ``path`` (if there is one)."""
    labels = load_labels(path, (case.id for case in cases), variants, problems)
    if not labels:
        return cases
    by_case: dict[str, list[Label]] = {}
    for label in labels:
        by_case.setdefault(label.case, []).append(label)
    return [replace(case, labels=tuple(by_case[case.id])) if case.id in by_case else case for case in cases]


def _check_grader(grader: Grader, loc: tuple[Any, ...], source: Source, grader_options: Callable) -> list[Problem]:
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
    entries: list[Any], path: Path, roots: tuple[Path, ...], source: Source, problems: list[Problem],
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
                problems.append(row_source.problem(row_loc, f"expected a case mapping with vars and expected, got {kind_of(row)}"))
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
                repeat=case.repeat,
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
) -> list[tuple[Any, Source, tuple[Any, ...]]]:
    """Rows of an included case file, each with the source and location it came from."""

    def fail(message: str) -> list:
        problems.append(Problem(at.file, at.line, at.column, at.field, message))
        return []

    suffix = Path(written).suffix.lower()
    if suffix not in (".jsonl", ".csv", ".yaml", ".yml"):
        return fail(f"cannot include {Path(written).name!r}: expected a .jsonl, .csv, .yaml or .yml file")
    yaml_file = suffix in (".yaml", ".yml")
    limit, what = (MAX_YAML_BYTES, YAML_FILES) if yaml_file else (MAX_ROWS_BYTES, "included .jsonl and .csv files")
    try:
        path = reference(base, written, roots, "included file")
        text = read_file(path, limit, what)
    except Unreadable as exc:
        return fail(str(exc))
    if yaml_file:
        inc = Source.parse(path, text)
        if inc.problems:
            problems.extend(inc.problems)
            return []
        if not isinstance(inc.data, list):
            problems.append(inc.problem((), f"expected a list of cases, got {kind_of(inc.data)}"))
            return []
        return [(row, inc, (i,)) for i, row in enumerate(inc.data)]
    shown = display_path(path)
    rows: list[tuple[Any, Source, tuple[Any, ...]]] = []
    if suffix == ".jsonl":
        # Lines end at \n only: str.splitlines() would also split at U+2028 and friends,
        # which JSON allows unescaped inside strings.
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line, parse_constant=_no_constant)
                why = TOO_DEEP if _too_deep(row) else None
            except json.JSONDecodeError as exc:
                problems.append(Problem(shown, number, exc.colno, "", f"invalid JSON: {exc.msg}"))
                continue
            except RecursionError:  # nested deeper than the decoder goes
                why = TOO_DEEP
            except ValueError as exc:  # NaN, Infinity, an integer of more digits than int() reads
                why = f"invalid JSON: {TOO_MANY_DIGITS if 'digits' in str(exc) else exc}"
            if why is not None:
                problems.append(Problem(shown, number, None, "", why))
                continue
            rows.append((row, Source.row(path, number, shown), ()))
        return rows
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames or any(not (name or "").strip() for name in reader.fieldnames):
        return fail(f"{shown}: the first row must name every column (id, expected, tags, and one column per var)")
    start = 2
    for record in reader:
        if None in record:  # more cells than header names
            problems.append(Problem(shown, start, None, "", f"row has {len(reader.fieldnames) + len(record[None])} cells, the header names {len(reader.fieldnames)}"))
        else:
            rows.append((_csv_case(record), Source.row(path, start, shown), ()))
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
    spec: Eval, path: Path, roots: tuple[Path, ...], source: Source, problems: list[Problem],
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
                        + did_you_mean(name, spec.prompts),
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
    name: str, prompt: Prompt, path: Path, roots: tuple[Path, ...], source: Source, loc: tuple[Any, ...],
    problems: list[Problem], registry: Callable[[str], PromptText | str] | None,
) -> PromptText | None:
    if prompt.template is not None:
        return PromptText(name, template=prompt.template)
    if prompt.messages is not None:
        return PromptText(name, messages=tuple((m.role, m.content) for m in prompt.messages))
    if prompt.file is not None:
        try:
            text = read_file(reference(path.parent, prompt.file, roots, "prompt file"), MAX_PROMPT_BYTES, "prompt files")
        except Unreadable as exc:
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
    spec: Eval, cases: list[LoadedCase], variants: list[LoadedVariant], source: Source
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
                    Problem(case.file, case.line, None, f"case {case.id}", f"grader {grader.label!r} uses {braces(missing)}, which the case does not define")
                )
    return problems


def _missing_vars(
    used: set[str], cases: list[LoadedCase], values: Callable[[LoadedCase], Mapping[str, Any]], what: str,
    loc: tuple[Any, ...], source: Source,
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
                f"{what} uses {braces(missing)}, which case(s) {ids} do not define "
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
    graders: list[Grader], taken: tuple[str, ...], source: Source, loc: tuple[Any, ...], problems: list[Problem]
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
