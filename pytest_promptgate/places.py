"""How the plugin points at places, on disk and in the user's code, and writes files there.

Shared by every room (schema, graders, runner, collect, targets, tracking) and
importing none of them: paths as pytest shows them, the frame of user code an
exception came from, and files that are never seen half-written.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import traceback
from pathlib import Path

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
