"""``--prompt-import SRC --prompt-import-to DIR``: other tools' eval definitions as ``*.eval.yaml`` files.

One module per source format (:mod:`.openai_evals`, :mod:`.openai_graders`,
:mod:`.promptfoo`), each turning a parsed file into :class:`Imported` evals; the
format is recognised from the file's content. Everything is read and checked
before anything is written, and nothing already in ``DIR`` is replaced, so a
failed import leaves ``DIR`` as it was. Runs no tests.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ...schema import display_path
from . import openai_evals, openai_graders, promptfoo
from .imported import SUITE, Document, Imported, ImportFailure, paths, write

if TYPE_CHECKING:
    import pytest

FORMATS = (openai_evals, promptfoo, openai_graders)
WHAT = ("expected an openai/evals registry file (entries with class and args), a promptfoo config "
        "(prompts with providers or tests) or OpenAI grader configs (type string_check, text_similarity, "
        "score_model, label_model, python or multi; or an eval with testing_criteria)")


def import_evals(src: Path, dest: Path) -> list[tuple[Imported, list[Path]]]:
    """Read ``src``, write its evals into ``dest``; each eval with the files written for it (none for an eval
    without cases, such as an openai/evals entry whose samples are made by code: its ``unmapped`` says why).

    Raises :class:`ImportFailure` (a located message) for input that cannot be read,
    and before writing anything when a file to write exists already.
    """
    doc = Document(src)
    reader = next((f for f in FORMATS if f.looks_like(doc.data)), None)
    if reader is None:
        raise ImportFailure(f"{display_path(src)}:1: {WHAT}")
    evals = reader.read(doc)
    if not any(imported.cases for imported in evals):
        raise ImportFailure(f"{evals[0].source}: {evals[0].unmapped[0]}" if evals else f"{display_path(src)}:1: {WHAT}")
    planned = [(imported, paths(imported, dest) if imported.cases else []) for imported in evals]
    for _, files in planned:
        for path in files:
            if path.exists():
                raise ImportFailure(f"{display_path(path)} exists; remove it or import into another --prompt-import-to")
    dest.mkdir(parents=True, exist_ok=True)
    for imported, files in planned:
        if files:
            write(imported, dest)
    return planned


def import_command(config: pytest.Config) -> int:
    """``pytest --prompt-import SRC --prompt-import-to DIR``: write the eval files, say what was written; no tests.

    Exit 0 when the files were written (what was not mapped is listed in each file's
    header and counted here), 1 with one located line on stderr when ``SRC`` cannot
    be read or understood.
    """
    import pytest
    from _pytest.config import (
        create_terminal_writer,  # the terminal reporter does not exist yet
    )

    src, dest = config.getoption("prompt_import"), config.getoption("prompt_import_to")
    if dest is None:
        raise pytest.UsageError("promptgate: --prompt-import needs --prompt-import-to DIR (where to write the eval files)")
    root = Path(config.invocation_params.dir)
    try:
        written = import_evals(root / src, root / dest)
    except ImportFailure as exc:
        create_terminal_writer(config, sys.stderr).line(f"promptgate: --prompt-import: {exc}", red=True)
        return 1
    write_line = create_terminal_writer(config).line
    for imported, files in written:
        if not files:
            write_line(f"promptgate: not imported: {imported.source}: {'; '.join(imported.unmapped)}")
            continue
        left = f"; {len(imported.unmapped)} thing(s) not mapped, listed at the top of the file" if imported.unmapped else ""
        write_line(f"promptgate: imported {imported.name}: {len(imported.cases)} case(s) into "
                   f"{', '.join(display_path(f) for f in files)}{left}")
    write_line(f"promptgate: run them with: pytest --prompt-suite {SUITE} {display_path(root / dest)}")
    return 0


__all__ = ["ImportFailure", "Imported", "import_command", "import_evals"]
