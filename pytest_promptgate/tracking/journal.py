"""The journal: each finished case of a session on disk as it finishes, so that a killed session loses nothing.

A session that ends normally logs its runs to MLflow or keeps them in the spool, and
removes its journal. One killed before that (``kill -9``, the machine's OOM killer, a
CI runner that gives up) leaves ``.promptgate/journal/{session}-{pid}.jsonl``: a header
line, then one JSON line per finished case, each flushed as it is written (a killed
process loses nothing the kernel has; no fsync, which would cost milliseconds a case).

The next session (or ``--prompt-sync``) turns every journal whose writer is gone into
spooled runs, which are sent as any spooled run is: **partial** runs
(``promptgate.complete=false``, so never a baseline) holding the cases that finished.
The writer holds an exclusive ``flock`` on its journal for as long as it runs; the kernel
drops it when the process dies, however it dies, so a journal whose lock can be taken is
a dead session's, and a reused pid cannot fool it. Where there is no ``flock`` (Windows)
journals are written but never recovered.

Runs only on the controlling process (the one that receives every case's report).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

from ..results import CaseResult, summarize
from .runs import TrackedRun, summary_metrics
from .spooling import spool

#: Where journals live, under the rootdir.
JOURNAL_DIR = Path(".promptgate") / "journal"
_FORMAT = 1
#: Tag of a run rebuilt from the journal of a session that was killed.
RECOVERED_TAG = "promptgate.recovered"
# Params every run has; a target param of the same name is logged as ``param.{name}``.
_RESERVED_PARAMS = frozenset({"eval", "variant", "suite", "dataset_hash", "repeat", "target", "cache"})


def journal_dir(rootdir: str | os.PathLike[str]) -> Path:
    """The journal directory of a project: ``{rootdir}/.promptgate/journal``."""
    return Path(rootdir) / JOURNAL_DIR


def record_id(session: str, eval_name: str, variant: str) -> str:
    """The record id of the run of (``eval_name``, ``variant``) in ``session``: the same whoever builds it.

    The session logging its run and a later session recovering it from the journal (the
    writer was killed after the run was logged) make the same id, and a record whose run
    arrived already is never logged again (``tracking.send_spooled``).
    """
    return hashlib.sha256(f"{session}\0{eval_name}\0{variant}".encode("utf-8", "replace")).hexdigest()[:32]


def run_params(info: Mapping[str, Any], variant: str) -> dict[str, Any]:
    """The params of the run of ``variant`` of an eval, from what collection found of it (``State.evals``)."""
    run = (info.get("runs") or {}).get(variant, {})
    params = {"dataset_hash": info.get("dataset_hash"), "repeat": info.get("repeat"), "target": run.get("target"),
              "cache": info.get("cache")}
    for key, value in (run.get("params") or {}).items():
        params[f"param.{key}" if key in _RESERVED_PARAMS or key.startswith("prompt.") else key] = value
    for name, version in (run.get("prompt_versions") or {}).items():
        params[f"prompt.{name}"] = version
    return {key: value for key, value in params.items() if value is not None}


class Journal:
    """The journal this session writes: opened at its first case, removed once its runs are kept."""

    def __init__(self, directory: Path, session: str, header: Mapping[str, Any]) -> None:
        """Create the journal and lock it; raises OSError when it cannot be written."""
        self.path = directory / f"{session}-{os.getpid()}.jsonl"
        for attempt in range(2):  # another session may remove the directory just made (see _tidy)
            directory.mkdir(parents=True, exist_ok=True)
            ignore = directory / ".gitignore"
            try:
                if not ignore.exists():
                    ignore.write_text("# Cases of sessions still running or killed (pytest-promptgate).\n*\n",
                                      encoding="utf-8")
                self._file: IO[str] | None = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (held to the end)
                break
            except FileNotFoundError:
                if attempt:
                    raise
        if fcntl is not None:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._evals: set[str] = set()
        #: Why the journal stopped being written (a full disk), once it did.
        self.problem: str | None = None
        self._write({"journal": _FORMAT, "session": session, **header})

    def case(self, data: Mapping[str, Any], info: Mapping[str, Any] | None) -> None:
        """Append a finished case (``CaseResult.to_dict``), after its eval's ``info`` the first time it is seen."""
        if data["eval"] not in self._evals and info is not None:
            self._evals.add(data["eval"])
            self._write({"eval": data["eval"], "info": info})
        self._write({"case": data})

    def _write(self, entry: Mapping[str, Any]) -> None:
        if self._file is None:
            return
        try:
            self._file.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
            self._file.flush()
        except OSError as exc:  # the session goes on; what it ends with is still logged or spooled
            self.problem = f"the journal {self.path} could not be written ({exc.strerror or exc}); a killed session would lose its cases"
            self.close(keep=True)

    def close(self, *, keep: bool) -> None:
        """Stop writing; remove the journal unless ``keep`` (its runs were not all kept elsewhere)."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        if not keep:
            with contextlib.suppress(OSError):
                self.path.unlink()
            _tidy(self.path.parent)


def _tidy(directory: Path) -> None:
    """Remove the journal directory, and ``.promptgate`` above it, when nothing else is there: a session
    whose runs reached MLflow leaves nothing behind in the project."""
    with contextlib.suppress(OSError):
        if os.listdir(directory) == [".gitignore"]:
            (directory / ".gitignore").unlink()
        directory.rmdir()
        directory.parent.rmdir()


@dataclass
class Recovered:
    """What :func:`recover` did: runs rebuilt from killed sessions' journals and spooled, and what failed."""

    runs: int = 0
    journals: int = 0
    problems: list[str] = field(default_factory=list)


def recover(rootdir: str | os.PathLike[str], spool_directory: Path) -> Recovered:
    """Spool the runs of every journal whose writer is gone, as partial runs, and remove those journals.

    Journals of running sessions (their lock is held) are left alone. A journal that
    cannot be read or spooled stays where it is, and :attr:`Recovered.problems` says why.
    """
    recovered = Recovered()
    directory = journal_dir(rootdir)
    if fcntl is None or not directory.is_dir():
        return recovered
    for path in sorted(directory.glob("*.jsonl")):
        try:
            runs = _recover_one(path, spool_directory)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            recovered.problems.append(f"the journal {path} of a killed session could not be recovered: {exc}")
            continue
        if runs is not None:
            recovered.runs += runs
            recovered.journals += 1
    return recovered


def _recover_one(path: Path, spool_directory: Path) -> int | None:
    """Spool the runs of ``path`` and remove it; None when its writer still runs (or another session took it)."""
    try:
        file = open(path, encoding="utf-8")  # noqa: SIM115 (closed below, after the lock)
    except FileNotFoundError:
        return None
    with file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # its session runs
        if not path.exists() or os.stat(path).st_ino != os.fstat(file.fileno()).st_ino:
            return None  # recovered meanwhile by another session
        runs = journal_runs(file.read().splitlines(), end_time_ms=int(os.fstat(file.fileno()).st_mtime * 1000))
        for run in runs:
            spool(spool_directory, run)
        path.unlink()
        return len(runs)


def journal_runs(lines: list[str], end_time_ms: int) -> list[TrackedRun]:
    """The partial runs a journal's ``lines`` hold: one per (eval, variant) with a finished case.

    A last line cut short (the writer was killed while writing it) is left out.
    """
    entries = []
    for number, line in enumerate(lines):
        try:
            entries.append(json.loads(line))
        except ValueError:
            if number < len(lines) - 1:
                raise
    header = entries[0] if entries else {}
    if header.get("journal") != _FORMAT:
        raise ValueError(f"not a journal of format {_FORMAT}")
    infos = {entry["eval"]: entry["info"] for entry in entries if "info" in entry}
    cases = [entry["case"] for entry in entries if "case" in entry]
    session = header["session"]
    runs = []
    for summary in summarize(CaseResult.from_dict(case) for case in cases):
        info = infos.get(summary.eval, {})
        runs.append(TrackedRun(
            eval=summary.eval, variant=summary.variant, suite=",".join(info.get("suites", [])), session=session,
            params=run_params(info, summary.variant), metrics=summary_metrics(summary),
            tags={RECOVERED_TAG: f"journal of killed process {header.get('pid')}"},
            cases=[case for case in cases if case["eval"] == summary.eval and case["variant"] == summary.variant],
            prompts=dict(((info.get("runs") or {}).get(summary.variant) or {}).get("prompts") or {}),
            complete=False, start_time_ms=header["started_ms"], end_time_ms=max(end_time_ms, header["started_ms"]),
            record_id=record_id(session, summary.eval, summary.variant),
            tracking_uri=header.get("tracking_uri"), experiment_prefix=header.get("experiment_prefix"),
        ))
    return runs
