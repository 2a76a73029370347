"""The response cache (``--prompt-cache off|use|record|replay``, DESIGN §9; docs/cache.md).

One JSON file per entry, ``DIR/ab/ab12….json``, named by the SHA-256 of the
entry's key (:func:`cache_key`): the target's identity, what the target is given
that can change its output (rendered prompts, params, and — for a callable that
declares them — vars and the variant's name) and the run number of the case, so
the runs of ``repeat: N`` stay N independent samples. The case id is not part of
it: two cases with the same inputs share an entry.

Entries are written to a temporary file in the entry's own directory, flushed to
disk and renamed into place, so a reader (another xdist worker, another session,
a session after a crash) sees a whole entry or none. An entry that cannot be
read is a miss, except in ``replay``, where it is an error that names the file.
Entries are indented JSON with sorted keys, meant to be reviewed and committed.

Light on purpose: the standard library and pytest only; no client library.
"""

from __future__ import annotations

import hashlib
import json
import contextlib
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from ..places import write_atomically
from .base import TargetError, TargetRequest, TargetResult

#: The modes of ``--prompt-cache``.
MODES = ("off", "use", "record", "replay")
#: Where the cache lives when neither ``--prompt-cache-dir`` nor ``promptgate_cache_dir`` says: under the rootdir.
DEFAULT_DIR = Path(".promptgate", "cache")
#: Part of every key: a change to what keys mean (or how entries are read) bumps it and misses every old entry.
FORMAT = 1
#: How a replay miss says to fill the cache.
RECORD_HINT = "pytest --prompt-cache record ..."

_STASH = pytest.StashKey["ResponseCache"]()
_READS = frozenset({"use", "replay"})
_WRITES = frozenset({"use", "record"})
# Only what interrupted writes leave behind is ignored: the entries themselves are meant to be committed.
_GITIGNORE = "# pytest-promptgate response cache: entries (*.json) are meant to be committed.\n# Leftovers of interrupted writes:\n.*.tmp\n"


def cache_key(target: Any, request: TargetRequest, run: int | None, ask: int | None = None) -> dict[str, Any]:
    """What identifies one response of ``target`` to ``request``: plain data, hashed by :func:`digest`.

    - ``target``: the target's identity (``module:callable``, ``fixture:NAME``, ``echo``,
      ``provider:BASE_URL#MODEL``);
    - ``prompts``: every prompt of the variant, rendered (text, or chat messages);
    - ``params``: the variant's params; for a provider, its own params merged with them
      (what it sends), the model being part of its identity;
    - ``vars`` and ``variant``: only for a callable that declares them (or ``**kwargs``),
      since only then can they change its output;
    - ``run``: the run number (1 to ``repeat``); absent for a judge's call;
    - ``ask``: for a judge asked ``judge_repeat`` times, the ask's number from 2 on, so that the
      asks stay independent samples; absent for the first ask, whose entry is the one a judge
      asked once records (a cache recorded before ``judge_repeat`` was raised still serves it).
    """
    from . import CallableTarget
    from .provider import ProviderTarget

    key: dict[str, Any] = {"format": FORMAT, "target": target.identity, "prompts": request.prompts}
    if isinstance(target, ProviderTarget):
        key["params"] = target.params
    else:
        key["params"] = request.params
    if isinstance(target, CallableTarget):
        for name in ("vars", "variant"):
            if name in target.arguments:
                key[name] = getattr(request, name)
    if run is not None:
        key["run"] = run
    if ask is not None and ask > 1:
        key["ask"] = ask
    return key


def digest(key: Mapping[str, Any]) -> str:
    """The SHA-256 (hex) of ``key`` as canonical JSON: sorted keys, no spaces, UTF-8."""
    return hashlib.sha256(_canonical(key).encode("utf-8")).hexdigest()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


class ResponseCache:
    """The cache of one process: reads and writes entries under ``directory`` as ``mode`` allows.

    Thread-safe and process-safe: entries are files, each write goes through its own
    temporary file, and in this process the calls of one entry take turns (:meth:`claim`).
    """

    def __init__(self, directory: str | os.PathLike[str], mode: str = "off") -> None:
        if mode not in MODES:
            raise ValueError(f"expected one of {', '.join(MODES)}; got {mode!r}")
        self.directory = Path(directory)
        self.mode = mode
        self._claims: dict[str, threading.Lock] = {}
        self._claims_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.directory)!r}, mode={self.mode!r})"

    def path(self, key: Mapping[str, Any]) -> Path:
        """The file of the entry for ``key``: ``DIR/ab/ab12….json``."""
        name = digest(key)
        return self.directory / name[:2] / f"{name}.json"

    def claim(self, target: Any, request: TargetRequest, run: int | None,
              ask: int | None = None) -> contextlib.AbstractContextManager[Any]:
        """Hold the entry of this call while reading it and, on a miss, calling and recording.

        In ``use`` two items with the same inputs share an entry; when their calls run
        at once (``--prompt-concurrency``), the second waits for the first to record
        it and reads it, instead of calling the target too. Within this process only:
        xdist workers run different eval variants (docs/options.md).
        """
        if self.mode != "use":
            return contextlib.nullcontext()
        name = digest(cache_key(target, request, run, ask))
        with self._claims_lock:
            return self._claims.setdefault(name, threading.Lock())

    def read(self, target: Any, request: TargetRequest, run: int | None, ask: int | None = None) -> TargetResult | None:
        """The recorded result, or ``None`` when the target must be called.

        In ``replay`` a missing or unreadable entry raises :class:`TargetError` (an error
        case) saying which file and how to record it; ``off`` and ``record`` never read.
        """
        if self.mode not in _READS:
            return None
        key = cache_key(target, request, run, ask)
        path = self.path(key)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            problem = None
        except (OSError, ValueError) as exc:  # ValueError: not UTF-8
            problem = f"cannot be read: {exc}"
        else:
            result, problem = _parse(text, key)
            if result is not None:
                return result
        if self.mode != "replay":
            return None
        never = "--prompt-cache replay never calls the target"
        if problem is None:
            run_part = f", run {run}" if run is not None else (f", ask {ask}" if ask is not None and ask > 1 else "")
            raise TargetError(
                f"no recorded response for target {target.identity} ({never})\n"
                f"  missing: {_shown(path)} (key: the target, its params, the rendered prompts{run_part})\n"
                f"  record it with: {RECORD_HINT}"
            )
        raise TargetError(
            f"unusable recorded response for target {target.identity} ({never})\n"
            f"  {_shown(path)} {problem}\n"
            f"  record it again with: {RECORD_HINT}"
        )

    def write(self, target: Any, request: TargetRequest, run: int | None, result: TargetResult,
              ask: int | None = None) -> None:
        """Record ``result`` (as the target returned it, with its latency) when the mode writes.

        A failure to write is a :class:`TargetError`: a session asked to record must not
        pass while recording nothing.
        """
        if self.mode not in _WRITES:
            return
        key = cache_key(target, request, run, ask)
        path = self.path(key)
        entry = {
            "key": key,
            "response": {
                "output": result.output,
                "input_tokens": result.input_tokens,
                "output_tokens": result.output_tokens,
                "cost_usd": result.cost_usd,
                "model": result.model,
                "metadata": result.metadata,
                "latency_ms": result.latency_ms,
            },
            "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        try:  # values JSON cannot hold are stored as their str(); a circular metadata cannot be stored at all
            text = json.dumps(entry, sort_keys=True, indent=2, ensure_ascii=False, default=str) + "\n"
        except (TypeError, ValueError) as exc:
            raise TargetError(f"the response of target {target.identity} cannot be recorded as JSON: {exc}") from None
        try:
            if not (self.directory / ".gitignore").exists():
                write_atomically(self.directory / ".gitignore", _GITIGNORE)
            write_atomically(path, text)
        except OSError as exc:
            raise TargetError(f"could not write the response cache entry {_shown(path)}: {exc}") from None


def _parse(text: str, key: Mapping[str, Any]) -> tuple[TargetResult | None, str | None]:
    """An entry's result, or why the text is not a usable entry for ``key``."""
    try:
        entry = json.loads(text)
    except ValueError as exc:
        return None, f"is not JSON (cut short by a crash or an edit?): {exc}"
    response = entry.get("response") if isinstance(entry, dict) else None
    if not isinstance(response, dict):
        return None, "is not a response cache entry (no 'response' object)"
    if _canonical(entry.get("key")) != _canonical(key):
        return None, "holds the response to another key (was it copied or edited?)"
    try:
        result = TargetResult(
            output=_typed(response, "output", str),
            input_tokens=_typed(response, "input_tokens", int, optional=True),
            output_tokens=_typed(response, "output_tokens", int, optional=True),
            cost_usd=_number(response, "cost_usd", optional=True),
            model=_typed(response, "model", str, optional=True),
            metadata=dict(_typed(response, "metadata", dict)),
            latency_ms=_number(response, "latency_ms"),
        )
    except ValueError as exc:
        return None, f"is incomplete: {exc}"
    return result, None


def _typed(response: dict[str, Any], name: str, kind: type, optional: bool = False) -> Any:
    value = response.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"response.{name} should be {'null or ' if optional else ''}{kind.__name__}, not {value!r}")
    return value


def _number(response: dict[str, Any], name: str, optional: bool = False) -> Any:
    value = response.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError(f"response.{name} should be {'null or ' if optional else ''}a number, not {value!r}")
    return float(value)


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def from_config(config: pytest.Config) -> ResponseCache:
    """The session's cache from ``--prompt-cache`` / ``promptgate_cache`` and ``--prompt-cache-dir`` /
    ``promptgate_cache_dir``; made once per config. A bad ini value is a usage error.

    A relative ``--prompt-cache-dir`` is relative to where pytest was started; a relative
    ``promptgate_cache_dir``, to the ini file's directory; the default is under the rootdir.
    """
    cache = config.stash.get(_STASH, None)
    if cache is not None:
        return cache
    mode = config.getoption("prompt_cache") or (config.getini("promptgate_cache") or "off").strip()
    if mode not in MODES:
        raise pytest.UsageError(f"promptgate_cache: expected one of {', '.join(MODES)}; got {mode!r}")
    option, ini = config.getoption("prompt_cache_dir"), (config.getini("promptgate_cache_dir") or "").strip()
    if option:
        directory = Path(config.invocation_params.dir, option)
    elif ini:
        directory = Path(config.inipath.parent if config.inipath else config.rootpath, ini)
    else:
        directory = Path(config.rootpath, DEFAULT_DIR)
    cache = config.stash[_STASH] = ResponseCache(directory, mode)
    return cache
