"""Targets: what produces the output of a case.

- ``module:callable`` — the team's own code, sync or ``async def``;
- ``fixture:NAME`` — the value of a pytest fixture (a callable), set up by pytest;
- ``echo`` — the rendered prompt itself (for checking the harness);
- ``{provider: {...}}`` — an OpenAI-compatible chat-completions endpoint
  (:mod:`pytest_promptgate.targets.provider`, imported only when used).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from .base import Target, TargetError, TargetRequest, TargetResult, as_result

__all__ = ["CallableTarget", "EchoTarget", "Target", "TargetError", "TargetRequest", "TargetResult", "as_result",
           "build", "import_callable"]

#: Keyword arguments a callable target may declare.
ARGUMENTS = ("prompt", "prompts", "vars", "params", "variant")


class EchoTarget:
    """Returns the rendered prompt; several prompts are joined by a blank line."""

    identity = "echo"
    #: Answers at once: the runner calls it in the item's turn rather than on a thread.
    instant = True

    def __call__(self, request: TargetRequest) -> TargetResult:
        if request.prompt is not None:
            return TargetResult(output=_as_text(request.prompt))
        return TargetResult(output="\n\n".join(_as_text(p) for p in request.prompts.values()))


def _as_text(prompt: Any) -> str:
    if isinstance(prompt, list):  # chat messages
        return "\n".join(f"{m['role']}: {m['content']}" for m in prompt)
    return prompt


class CallableTarget:
    """The team's own function: called with the keyword arguments it declares among :data:`ARGUMENTS`."""

    def __init__(self, fn: Callable[..., Any], identity: str, prompt_names: tuple[str, ...]) -> None:
        self.fn = fn
        self.identity = identity
        self.prompt_names = prompt_names
        try:
            params = inspect.signature(fn).parameters
            takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        except (TypeError, ValueError):  # builtins without a signature: offer everything
            params, takes_all = {}, True
        unknown = [
            name for name, p in params.items()
            if name not in ARGUMENTS and p.default is inspect.Parameter.empty
            and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        ]
        if unknown:
            raise TargetError(
                f"target {identity} requires {', '.join(map(repr, unknown))}, which promptgate cannot supply; "
                f"it passes only {', '.join(ARGUMENTS)} (declare the ones you need)"
            )
        self.arguments = ARGUMENTS if takes_all else tuple(a for a in ARGUMENTS if a in params)
        if "prompt" in self.arguments and not takes_all and len(prompt_names) > 1:
            raise TargetError(
                f"target {identity} takes 'prompt' but the eval has several prompts ({', '.join(prompt_names)}); "
                "take 'prompts' (a dict by name) instead"
            )

    def __call__(self, request: TargetRequest) -> Any:
        return self.fn(**{name: getattr(request, name) for name in self.arguments})


def import_callable(spec: str) -> Callable[..., Any]:
    """``module:attr.path`` → the object; errors say which part was not found."""
    module_name, _, attr_path = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise TargetError(
                f"cannot import module {module_name!r} for {spec!r}: no module named {exc.name!r} "
                "(is its directory on sys.path? pytest's `pythonpath` ini option adds it)"
            ) from None
        raise TargetError(f"importing {module_name!r} for {spec!r} failed: {exc}") from None
    except Exception as exc:
        raise TargetError(f"importing {module_name!r} for {spec!r} failed: {type(exc).__name__}: {exc}") from None
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TargetError(f"module {module_name!r} has no attribute {attr_path!r} (from {spec!r})") from None
    if not callable(obj):
        raise TargetError(f"{spec!r} is a {type(obj).__name__}, not a callable")
    return obj


def build(spec: Any, params: dict[str, Any], prompt_names: tuple[str, ...]) -> Target | str:
    """The target for a spec; ``fixture:NAME`` specs come back as the fixture name, resolved per item."""
    if isinstance(spec, str):
        if spec == "echo":
            return EchoTarget()
        if spec.startswith("fixture:"):
            return spec[len("fixture:"):]
        return CallableTarget(import_callable(spec), spec, prompt_names)
    from .provider import ProviderTarget

    return ProviderTarget(spec.provider, params, prompt_names)


