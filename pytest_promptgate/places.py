"""How the plugin points at places, on disk and in the user's code, and writes files there.

Shared by every room (schema, graders, runner, collect, targets, tracking) and
importing none of them: paths as pytest shows them, the frame of user code an
exception came from, and files that are never seen half-written.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import tempfile
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: This package's directory: frames in it are the plugin's, not the user's.
_OWN_CODE = str(Path(__file__).parent)


def display_path(path: str | Path) -> str:
    """Paths relative to the working directory when below it, as pytest shows them (symbolic links not followed)."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def describe_exception(what: str, exc: BaseException) -> str:
    """``what raised Type: message`` and the innermost frame outside this plugin (file:line, code)."""
    summary = f"{what} raised {type(exc).__name__}: {exc}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_OWN_CODE)]
    if frames:
        frame = frames[-1]
        summary += f"\n  at {display_path(frame.filename)}:{frame.lineno} in {frame.name}"
        if frame.line:
            summary += f"\n    {frame.line}"
    return summary


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that no reader, and no crash, ever leaves part of it there.

    The text goes to a hidden temporary file in the same directory, is flushed to
    disk, and is renamed into place; the directory is synced so the rename lasts.
    Used by the spool (``tracking``) and by the response cache (``targets/cache.py``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):  # where directories cannot be opened (Windows), the rename is enough
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_prompt(source: Mapping[str, Any], text: str, dry_run: bool, *, owner: str, name: str, held: str,
                 wrote: str) -> tuple[list[tuple[str, dict[str, bool]]], bool]:
    """Write ``text`` into the file or inline template (``source``: an eval's ``prompt_sources`` entry) a
    prompt comes from, showing the diff; with ``dry_run``, only show it.

    Returns the lines to print and whether it went well (an unchanged file is fine).
    ``owner`` (the eval) starts messages, ``held`` and ``wrote`` name what is written.
    An inline template is replaced by a JSON string, which is a valid double-quoted
    YAML scalar holding the template exactly, on one line.
    """
    path = Path(source["path"])
    try:
        old = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        return [(f"promptgate: cannot read {path}: {exc.strerror or exc}", {"red": True})], False
    if source.get("kind") == "file":
        new = text
    else:
        span = source.get("span")
        if not span:
            return [(f"{owner}: cannot find the template of prompt {name!r} in {path}", {"red": True})], False
        new = old[: span[0]] + json.dumps(text, ensure_ascii=False) + old[span[1]:]
    if new == old:
        return [(f"{owner}: {path} already holds {held}", {})], True
    diff = difflib.unified_diff(old.splitlines(), new.splitlines(), f"a/{path.name}", f"b/{path.name}", lineterm="")
    lines: list[tuple[str, dict[str, bool]]] = [(line, {}) for line in diff]
    if dry_run:
        return [*lines, (f"promptgate: --prompt-dry-run: {path} left as it is", {"yellow": True})], True
    try:
        path.write_text(new, encoding="utf-8")
    except OSError as exc:
        return [*lines, (f"promptgate: cannot write {path}: {exc.strerror or exc}", {"red": True})], False
    return [*lines, (f"promptgate: wrote {wrote} into {path}", {"green": True})], True
