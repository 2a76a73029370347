"""Runs kept on disk while MLflow is down, and sending them later: claims, idempotent delivery."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..places import write_atomically
from .runs import TrackedRun, log_eval_run
from .store import (
    UNSAFE_PATH_PART,
    Tracker,
    TrackingError,
    TrackingUnavailable,
    cut_line,
    display_uri,
    failure_reason,
    filter_literal,
    same_store,
)

if TYPE_CHECKING:

    pass


#: Where a session keeps the runs it could not send, relative to the rootdir.
SPOOL_DIR = Path(".promptgate") / "spool"


#: Spooled records MLflow refused (or that cannot be read) are moved here, with the reason beside them.
REJECTED_DIR = "rejected"


def spool_dir(rootdir: str | os.PathLike[str]) -> Path:
    """The spool directory of a project: ``{rootdir}/.promptgate/spool``."""
    return Path(rootdir) / SPOOL_DIR


def spool(directory: str | os.PathLike[str], record: TrackedRun) -> Path:
    """Write ``record`` into the spool ``directory`` (see :func:`spool_dir`) and return its path.

    Atomic (:func:`write_atomically`): a reader sees a whole record or none. File names
    sort by the run's start time, so records are sent oldest first, and are bounded
    whatever the eval's and variant's names (:func:`spool_name`). The directory gets a
    ``.gitignore`` so spooled runs are never committed.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ignore = directory / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# Runs waiting to be sent to MLflow (pytest-promptgate).\n*\n", encoding="utf-8")
    final = directory / spool_name(record)
    write_atomically(final, json.dumps(record.to_dict(), ensure_ascii=False, default=str))
    return final


#: How much of the eval's and of the variant's name a spool file name keeps.
_NAME_PART = 40


def spool_name(record: TrackedRun) -> str:
    """``{start ms}-{eval}-{variant}-{hash}-{record id}.json``: at most about 160 characters, of ``[A-Za-z0-9_.-]``.

    The eval and variant are cut to their first 40 safe characters; 8 hex digits of a
    hash of the whole names keep two runs whose names share that much apart (the record
    id would too; the hash says which names they were). File systems take 255 bytes.
    """
    def part(text: str, limit: int = _NAME_PART) -> str:
        return UNSAFE_PATH_PART.sub("_", text)[:limit] or "_"

    digest = hashlib.sha256(f"{record.eval}\0{record.variant}".encode("utf-8", "replace")).hexdigest()[:8]
    return "-".join((
        f"{int(record.start_time_ms):013d}"[:16], part(record.eval), part(record.variant), digest,
        part(str(record.record_id), 40),
    )) + ".json"


def spooled(directory: str | os.PathLike[str]) -> list[Path]:
    """The records waiting in the spool ``directory``, oldest first."""
    directory = Path(directory)
    return sorted(directory.glob("*.json")) if directory.is_dir() else []


def rejected_spool(directory: str | os.PathLike[str]) -> list[Path]:
    """Spooled records MLflow refused or that could not be read (kept, with a ``.reason.txt`` beside each)."""
    rejected = Path(directory) / REJECTED_DIR
    return sorted(rejected.glob("*.json")) if rejected.is_dir() else []


class SentRuns(list):  # type: ignore[type-arg]
    """What :func:`send_spooled` did: the run ids it logged (the list itself), and :attr:`problems`."""

    def __init__(self, run_ids: Sequence[str] = (), problems: Sequence[str] = ()) -> None:
        super().__init__(run_ids)
        #: Spool files that could not be dealt with (they stay in the spool), one sentence each.
        self.problems: list[str] = list(problems)


def send_spooled(tracker: Tracker, directory: str | os.PathLike[str]) -> SentRuns:
    """Log every record in the spool ``directory``, oldest first; return the run ids (:class:`SentRuns`).

    Several senders may share a spool (sessions and ``--prompt-sync`` at once): each
    record is **claimed** before it is sent, by renaming it into a directory of this
    sender's own (``.sending-{pid}-{random}``), which exactly one sender can do; a record
    another sender claimed first is skipped. Claims still there when the sending ends
    (the store went away, Ctrl-C) go back into the spool; those a dead sender left are
    taken back by the next one (:func:`_reclaim`).

    A file is removed only once its run reads back FINISHED. A record whose run
    already arrived (a previous send that lost its answer, or a sender that died
    after logging) is not logged twice: runs are matched by the record's
    ``promptgate.record`` tag, and a half-logged run of the record is marked FAILED
    before it is logged again. When the store becomes unreachable this raises
    :class:`TrackingUnavailable`; the records not yet sent stay. A record MLflow
    refuses (say, its experiment was deleted), or a file that is not a record, is
    moved to ``rejected/`` with the reason beside it (:func:`rejected_spool`), so it
    cannot block the others; moving it back into the spool sends it again. A record
    meant for another store (its ``tracking_uri``) is left waiting for a session that
    uses that store. A file that cannot be set aside stays in the spool, and
    :attr:`SentRuns.problems` says why.
    """
    directory = Path(directory)
    _reclaim(directory)
    sent: list[str] = []
    stuck: list[str] = []
    here = display_uri(tracker.uri)
    claims: Path | None = None
    try:
        for path in spooled(directory):
            try:
                record: TrackedRun | None = TrackedRun.from_dict(json.loads(path.read_text(encoding="utf-8")))
                unreadable = None
            except FileNotFoundError:
                continue  # another sender has it
            except (OSError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
                record, unreadable = None, f"unreadable spool file: {exc}"
            if record is not None and record.tracking_uri is not None and not same_store(record.tracking_uri, here):
                continue
            if claims is None:
                claims = _claims_dir(directory)
            claimed = _claim(path, claims)
            if claimed is None:
                continue
            if record is None:
                _reject(claimed, directory, unreadable or "", stuck)
                continue
            try:
                run_id = _deliver(tracker, record)
            except TrackingUnavailable:
                raise
            except TrackingError as exc:
                _reject(claimed, directory, str(exc), stuck)
                continue
            with contextlib.suppress(FileNotFoundError):  # taken back by a sender that thought this one dead
                claimed.unlink()
            sent.append(run_id)
    except OSError as exc:
        raise TrackingError(f"the spool {directory} cannot be read or changed: {failure_reason(exc)}") from exc
    finally:
        if claims is not None:
            _release(claims, directory)
    return SentRuns(sent, stuck)


#: A claim older than this is taken back even when its sender's process seems to run (its pid may be another's now).
CLAIM_TIMEOUT_S = 15 * 60


_CLAIMS_PREFIX = ".sending-"


def _claims_dir(directory: Path) -> Path:
    claims = directory / f"{_CLAIMS_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    claims.mkdir()
    return claims


def _claim(path: Path, claims: Path) -> Path | None:
    """Move ``path`` into this sender's ``claims``: the one atomic step that makes a record this sender's; None
    when another sender moved it first."""
    claimed = claims / path.name
    try:
        os.rename(path, claimed)
    except FileNotFoundError:
        return None
    return claimed


def _release(claims: Path, directory: Path) -> None:
    """Put what is still claimed in ``claims`` back into the spool, and remove the claims directory; best effort."""
    with contextlib.suppress(OSError):
        for path in claims.iterdir():
            with contextlib.suppress(OSError):
                os.rename(path, directory / path.name)
        claims.rmdir()


def _reclaim(directory: Path) -> None:
    """Take back into the spool the records claimed by senders that died: a claims directory whose process is
    not running, or that has not changed for :data:`CLAIM_TIMEOUT_S`."""
    try:
        found = [p for p in directory.iterdir() if p.name.startswith(_CLAIMS_PREFIX) and p.is_dir()]
    except OSError:
        return
    for claims in found:
        try:
            pid = int(claims.name[len(_CLAIMS_PREFIX):].split("-", 1)[0])
            age = time.time() - claims.stat().st_mtime
        except (ValueError, OSError):
            continue
        if age > CLAIM_TIMEOUT_S or (pid != os.getpid() and not _running(pid)):
            _release(claims, directory)


def _running(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (where that cannot be asked cheaply, it counts as running)."""
    if os.name == "nt":
        return True  # os.kill(pid, 0) would end it there; the claim's age decides
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it runs, as another user
        return True
    return True


def _deliver(tracker: Tracker, record: TrackedRun) -> str:
    experiment_id = tracker.experiment_for(record.eval, record.experiment_prefix)
    client = tracker.client
    literal = filter_literal(record.record_id)
    if literal is None or not record.record_id:
        raise TrackingError(f"spooled record has an unusable record id {record.record_id!r}")
    with tracker._calling(f"sending spooled run {record.eval}/{record.variant}"):
        earlier = client.search_runs([experiment_id], filter_string=f'tags."promptgate.record" = {literal}')
        for run in earlier:
            if run.info.status == "FINISHED":
                return run.info.run_id
        for run in earlier:
            if run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, "FAILED")
    run_id = log_eval_run(tracker, record)
    with tracker._calling(f"checking spooled run {record.eval}/{record.variant}"):
        status = client.get_run(run_id).info.status
    if status != "FINISHED":
        raise TrackingError(f"run {run_id} of spooled record {record.record_id} reads back {status}, not FINISHED")
    return run_id


def _reject(claimed: Path, directory: Path, reason: str, stuck: list[str]) -> None:
    """Move the claimed record into ``rejected/`` with ``reason`` beside it; when that fails, back into the spool,
    and why goes into ``stuck``."""
    rejected = directory / REJECTED_DIR
    try:
        rejected.mkdir(exist_ok=True)
        (rejected / f"{claimed.stem}.reason.txt").write_text(reason + "\n", encoding="utf-8")
        os.replace(claimed, rejected / claimed.name)
    except OSError as exc:
        why = f"{rejected} is not a directory" if rejected.exists() and not rejected.is_dir() else failure_reason(exc)
        stuck.append(f"the spool cannot set aside {claimed.name} ({cut_line(reason, 200)}): {why}; it stays in {directory}")
        with contextlib.suppress(OSError):
            os.rename(claimed, directory / claimed.name)
