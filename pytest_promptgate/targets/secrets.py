"""Keeping API keys out of everything the plugin writes or prints.

A key lives in an environment variable that an eval names with ``api_key_env``
(a provider target's or a judge's). An endpoint may reflect it into its reply: in
the text, the model name, the response id, an error message. Whatever comes back
is scrubbed where it enters the plugin (the provider target, and
:func:`~pytest_promptgate.targets.base.as_result` for every target), before it
reaches graders, the cache, reports or MLflow.

Every provider built in this process calls :func:`watch` with its variable's
name; :func:`values` gives the current values of all of them, and :func:`redact`
and :func:`redact_all` mask those values (and their URL-quoted form) in text and in
nested data. Values shorter than :data:`MIN_CHARS` are placeholders a local
server accepts (``none``, ``1``), not credentials: masking them would mangle
every output that happens to contain them.
"""

from __future__ import annotations

import os
import threading
import urllib.parse
from collections.abc import Iterable
from typing import Any

#: What a secret is replaced with.
MASK = "***"
#: Shorter values are not treated as secrets (every real provider's keys are far longer).
MIN_CHARS = 8

_names: set[str] = set()
_lock = threading.Lock()


def watch(name: str) -> None:
    """Treat the value of environment variable ``name`` as a secret from now on, in this process."""
    with _lock:
        _names.add(name)


def values() -> list[str]:
    """The current values of the watched variables that are long enough to be secrets."""
    with _lock:
        names = list(_names)
    return [value for value in (os.environ.get(name, "") for name in names) if len(value) >= MIN_CHARS]


def _forms(secrets: Iterable[str]) -> list[str]:
    """Each secret and its URL-quoted form, longest first (so a longer form is masked whole)."""
    forms = {form for secret in secrets if len(secret) >= MIN_CHARS
             for form in (secret, urllib.parse.quote(secret, safe=""))}
    return sorted(forms, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` with every form of every secret (the watched ones unless given) replaced by :data:`MASK`."""
    return _masked(text, _forms(values() if secrets is None else secrets))


def redact_all(value: Any, secrets: Iterable[str] | None = None) -> Any:
    """``value`` with :func:`redact` applied to every string in it: mapping keys and values, list and tuple items."""
    forms = _forms(values() if secrets is None else secrets)
    return _walk(value, forms) if forms else value


def _masked(text: str, forms: list[str]) -> str:
    for form in forms:
        if form in text:
            text = text.replace(form, MASK)
    return text


def _walk(value: Any, forms: list[str]) -> Any:
    if isinstance(value, str):
        return _masked(value, forms)
    if isinstance(value, dict):
        return {_walk(key, forms): _walk(item, forms) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_walk(item, forms) for item in value)
    return value
