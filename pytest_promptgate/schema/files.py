"""Files an eval file reads: only regular files, bounded in size, under the rootdir or an allowed directory.

An eval file names other files (``include:``, a prompt's ``file:``); a hostile or
mistaken reference (``../../etc/passwd``, ``/dev/zero``, a FIFO, a symbolic link loop)
is refused with a reason (:class:`Unreadable`) that the loader turns into a located
problem, instead of reading outside the project, hanging or filling memory.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from ..places import display_path
from .words import short

# Limits on what an eval file can make collection read (docs/eval-files.md#limits).
#: Bytes of an eval file, and of an included .yaml/.yml case file.
MAX_YAML_BYTES = 10_000_000
#: Bytes of an included .jsonl or .csv case file.
MAX_ROWS_BYTES = 50_000_000
#: Bytes of a prompt file.
MAX_PROMPT_BYTES = 1_000_000
YAML_FILES = "eval files and included .yaml files"  # what MAX_YAML_BYTES bounds, as messages say


class Unreadable(ValueError):
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
        raise Unreadable(f"{shown} is not a regular file ({kind}); only regular files are read")
    if info.st_size > limit:
        raise Unreadable(f"{shown} is {info.st_size:,} bytes; {what} may be at most {_limit_text(limit)}")


def _os_problem(exc: OSError, path: Path, shown: str, what: str) -> Unreadable:
    if exc.errno == errno.ELOOP:
        return Unreadable(f"{shown} is a symbolic link loop")
    if exc.errno == errno.ENOENT:
        if os.path.islink(path):
            return Unreadable(f"{what} not found: {shown} is a symbolic link to {os.readlink(path)}, which does not exist")
        return Unreadable(f"{what} not found: {shown}")
    return Unreadable(f"cannot read {shown}: {exc.strerror or exc}")


def read_file(path: Path, limit: int, what: str) -> str:
    """The text of the regular file at ``path``, at most ``limit`` bytes of UTF-8 (a byte-order mark is dropped).

    Anything else is an :class:`Unreadable` saying why. Only regular files are read: the
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
        raise Unreadable(f"{shown} is more than {limit:,} bytes; {what} may be at most {_limit_text(limit)}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise Unreadable(f"{shown} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8", line) from None


def reference(base: Path, written: str, roots: Sequence[Path], what: str) -> Path:
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
        raise Unreadable(f"{what} {short(written)} cannot be a file name: {exc}") from None
    if not any(real.is_relative_to(root) for root in roots):
        place = shown if real == Path(os.path.abspath(path)) else f"{shown} leads to {real}, which"
        others = f" and {', '.join(map(str, roots[1:]))}" if len(roots) > 1 else ""
        raise Unreadable(
            f"{place} is outside the rootdir ({roots[0]}){others}; files elsewhere can be read only from directories "
            "listed in the ini key promptgate_allowed_paths"
        )
    return real


