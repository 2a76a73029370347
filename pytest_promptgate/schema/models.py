"""The eval file's models (DESIGN §2): pydantic classes that forbid unknown keys and finite numbers only.

They say what a valid file holds; reading YAML and locating what is wrong is :mod:`.source`'s work.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from ..verdicts import GATE_METRICS
from .words import short

EVAL_NAME = r"^[a-z0-9][a-z0-9._-]*$"
IDENT = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
PATTERN_MEANING = {
    EVAL_NAME: "lower-case letters, digits, '.', '_' and '-', starting with a letter or digit",
    IDENT: "letters, digits, '.', '_' and '-', starting with a letter, digit or '_'",
}

#: Characters of names that end up in MLflow experiment and run names, node ids and file names.
MAX_EVAL_NAME = 100
MAX_VARIANT_NAME = 100
MAX_CASE_ID = 200


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
                    f"keys {short(written[text])} and {short(key)} are the same key once written as JSON ({text!r}); "
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
TARGET_TAGS = ("<name>", "<provider>")
TargetSpec = Annotated[
    Union[Annotated[TargetName, Tag(TARGET_TAGS[0])], Annotated[ProviderTarget, Tag(TARGET_TAGS[1])]],
    Discriminator(lambda value: TARGET_TAGS[1] if isinstance(value, (dict, ProviderTarget)) else TARGET_TAGS[0]),
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
    # Factories, not ``= []``: pydantic deep-copies a mutable default for every case (a second per 100 000 cases).
    vars: dict[str, JsonData] = Field(default_factory=dict)
    expected: JsonData = None
    graders: list[Grader] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    #: Runs of the target for this case, in place of the eval's ``repeat`` (one nondeterministic case need not
    #: make every case run N times).
    repeat: int | None = Field(default=None, ge=1, le=1000)


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
    #: The optimizer model of ``--prompt-optimize`` (any target or provider); else ini ``promptgate_optimizer``.
    optimizer: TargetSpec | None = None
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
