"""Everything that touches MLflow: runs, baselines, and the spool that keeps runs when MLflow is down.

Runs on the controlling process only (DESIGN §6): xdist workers never import this
module. The module itself imports nothing heavy; MLflow is imported inside the
functions that talk to it, so a session without evals never pays for it (§9).

What the code keeps from the measured facts of DESIGN §6.1:

- :class:`MlflowClient <mlflow.tracking.MlflowClient>` only, never the fluent
  ``mlflow.start_run`` API, which would disturb the user's own active run.
- One ``log_batch`` per run for params, metrics and tags (about 21 ms on SQLite
  against about 220 ms for single calls); more only when MLflow's batch limits
  (100 params and tags, 1000 entries) force it.
- No pandas (``mlflow-skinny`` has none): the per-case results table is JSON in
  the shape ``MlflowClient.log_table`` writes (``{"columns": [...], "data": [...]}``)
  and is listed in the ``mlflow.loggedArtifacts`` tag, so the UI shows it as a table.
- Each experiment gets an explicit artifact location next to a SQLite store,
  since MLflow's default is ``./mlruns`` under whatever the current directory is.
- Keys are cut to the characters MLflow accepts, values to its length limits,
  and a cut is recorded in the ``promptgate.truncated`` tag rather than made silently.
- SQLAlchemy 2.1 deprecates the ``noload`` loader strategy that MLflow's SQL
  store configures when it is first opened; that one warning is ignored around
  calls into MLflow, so suites run with ``-W error`` still work.
- HTTP requests fail fast (no retries, a 10 s timeout) unless the user set
  MLflow's own variables, and MLflow prints no run links or progress bars.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit
from urllib.request import pathname2url

from .places import write_atomically
from .template import prompt_digest

if TYPE_CHECKING:
    from mlflow.entities import Experiment, Run
    from mlflow.tracking import MlflowClient

    from .results import EvalSummary

#: The per-case results table artifact of every run.
RESULTS_FILE = "promptgate_results.json"
#: Rendered prompt templates are logged as ``prompts/{name}.txt``.
PROMPTS_DIR = "prompts"
#: Where a session keeps the runs it could not send, relative to the rootdir.
SPOOL_DIR = Path(".promptgate") / "spool"
#: Spooled records MLflow refused (or that cannot be read) are moved here, with the reason beside them.
REJECTED_DIR = "rejected"
DEFAULT_EXPERIMENT_PREFIX = "promptgate"

# MLflow's limits (mlflow.utils.validation): longer values are cut silently by
# MLflow, or refused; we cut them ourselves and say so in TRUNCATED_TAG.
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_KEY = 250
_MAX_PARAMS_TAGS_PER_BATCH = 100
_MAX_ENTRIES_PER_BATCH = 1000

TRUNCATED_TAG = "promptgate.truncated"
# Tags set when the run is created, so that even a run whose batch never arrived
# can be recognised (and closed) when its spooled record is sent again.
_IDENTITY_TAGS = ("promptgate.record", "promptgate.session", "promptgate.eval", "promptgate.variant")

# MLflow's own local default (mlflow.tracking._tracking_service.utils, 3.x).
_DEFAULT_DB = "mlflow.db"
_LEGACY_FILE_STORE = "mlruns"

# Set around calls into MLflow only when the user has not set them: an unreachable
# server must fail in seconds, not after MLflow's 7 retries with backoff (minutes);
# and MLflow must not write run links or progress bars into the terminal.
_MLFLOW_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # Read when MLflow is first imported: no "Creating initial MLflow database tables" INFO lines.
    "MLFLOW_LOGGING_LEVEL": "WARNING",
}
# SQLAlchemy 2.1 warns when MLflow's SQL store module configures its mappers,
# once per process, on the first open of any SQL store.
_SQLALCHEMY_NOLOAD_WARNING = r"The ``noload`` loader strategy is deprecated"

# The logger of MLflow's SQL store: it logs every database error with its traceback and SQL.
_MLFLOW_DB_LOGGER = "mlflow.store.db.utils"

# SQLAlchemy errors that mean the database could not be reached (or was locked), not that it refused.
_SQLALCHEMY_UNREACHABLE = ("OperationalError", "InterfaceError", "DisconnectionError", "TimeoutError")

_SPOOL_FORMAT = 1
_UNSAFE_KEY = re.compile(r"[^A-Za-z0-9_ .:/-]" if os.name != "nt" else r"[^A-Za-z0-9_ ./-]")
_UNSAFE_PATH_PART = re.compile(r"[^A-Za-z0-9_.-]+")
#: The longest file name made of a name from an eval file (file systems take 255 bytes).
_MAX_PATH_PART = 100


def _path_part(name: str, empty: str) -> str:
    """``name`` as one file name: safe characters only, never hidden, and at most :data:`_MAX_PATH_PART`
    characters (a longer name keeps its start and 8 hex digits of a hash of the whole)."""
    part = _UNSAFE_PATH_PART.sub("_", name).strip(".") or empty
    if len(part) <= _MAX_PATH_PART:
        return part
    return part[:_MAX_PATH_PART - 9] + "-" + hashlib.sha256(name.encode("utf-8", "replace")).hexdigest()[:8]


class TrackingError(Exception):
    """MLflow refused or failed an operation (the message says which, and on which store)."""


class TrackingUnavailable(TrackingError):
    """The tracking store cannot be reached: connection refused, timed out, unauthorised, or not MLflow.

    The session still runs and gates by thresholds; its runs are spooled (:func:`spool`)
    and sent by a later session (:func:`send_spooled`).
    """


class BaselineError(TrackingError):
    """A pinned baseline run (``--prompt-baseline RUN_ID``) does not exist or is not a run of that eval."""


# --------------------------------------------------------------------------- tracking URI


def resolve_tracking_uri(
    option: str | None, ini: str | None, env: Mapping[str, str], *, cwd: Path | None = None
) -> str:
    """The tracking URI: ``--prompt-tracking-uri``, else ini ``promptgate_tracking_uri``,
    else ``MLFLOW_TRACKING_URI``, else MLflow's own local default.

    MLflow 3's default (``mlflow.get_tracking_uri()`` with nothing set) is the SQLite
    store ``mlflow.db`` in the current directory (``cwd``), as an absolute
    ``sqlite:///`` URI; this returns the same without importing MLflow. Empty
    values count as unset. One exception follows MLflow too: when ``./mlruns``
    already holds file-store experiments MLflow keeps using that directory, but
    MLflow 3.17 refuses to open a file store unless ``MLFLOW_ALLOW_FILE_STORE``
    is true, so ``./mlruns`` is chosen only when ``env`` allows it.
    """
    for value in (option, ini, env.get("MLFLOW_TRACKING_URI")):
        if value and value.strip():
            return value.strip()
    base = Path(cwd) if cwd is not None else Path.cwd()
    legacy = base / _LEGACY_FILE_STORE
    allowed = env.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() in ("true", "1")
    if allowed and _has_file_store_data(legacy):
        return legacy.absolute().as_uri()
    return _sqlite_uri(base / _DEFAULT_DB)


def _has_file_store_data(directory: Path) -> bool:
    # MLflow's test (_has_existing_mlruns_data): an experiment directory with a meta.yaml.
    try:
        return any(p.is_dir() and p.name.isdigit() and (p / "meta.yaml").exists() for p in directory.iterdir())
    except OSError:
        return False


def _sqlite_uri(path: Path) -> str:
    # As mlflow.utils.file_utils.path_to_local_sqlite_uri writes it.
    prefix = "sqlite://" if sys.platform == "win32" else "sqlite:///"
    return prefix + posixpath.abspath(pathname2url(os.path.abspath(path)))


def anchor_sqlite(uri: str, base: Path) -> str:
    """``uri`` with a relative ``sqlite:///`` database path made absolute against ``base``; other URIs unchanged."""
    db = _sqlite_path(uri)
    if db is None or db.is_absolute():
        return uri
    query = uri.split("?", 1)[1] if "?" in uri else ""
    return _sqlite_uri(base / db) + (f"?{query}" if query else "")


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:`` URI; None for in-memory databases and other schemes."""
    if not uri.startswith("sqlite:"):
        return None
    rest = uri[len("sqlite:"):]
    if not rest.startswith("//"):
        return None
    rest = rest[2:].split("?", 1)[0]
    if rest.startswith("/"):
        rest = rest[1:]  # sqlite:///relative.db, sqlite:////absolute.db
    if not rest or rest == ":memory:":
        return None
    return Path(unquote(rest))


def display_uri(uri: str) -> str:
    """``uri`` with any password replaced by ``***``, for messages and logs."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}:***@{host}" if parts.username else f"***@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def same_store(a: str, b: str) -> bool:
    """Whether two tracking URIs name the same store: scheme and host in any case, a trailing ``/`` or not."""
    def key(uri: str) -> tuple[str, str, str]:
        try:
            parts = urlsplit(uri.strip())
        except ValueError:
            return ("", "", uri)
        return (parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/") + ("?" + parts.query if parts.query else ""))

    return key(a) == key(b)


# --------------------------------------------------------------------------- the store


class Tracker:
    """One MLflow tracking store, opened once, on the controlling process.

    ``uri`` is any tracking URI MLflow accepts; a relative ``sqlite:///`` path is
    made absolute against the current directory now, so later ``chdir`` calls
    (pytester's, a test's) change nothing. Every method raises
    :class:`TrackingUnavailable` when the store cannot be reached and
    :class:`TrackingError` when MLflow refuses an operation.
    """

    def __init__(
        self, uri: str, *, experiment_prefix: str = DEFAULT_EXPERIMENT_PREFIX, read_only: bool = False
    ) -> None:
        uri = anchor_sqlite(uri, Path.cwd())
        db = _sqlite_path(uri)
        self.uri = uri
        self.experiment_prefix = experiment_prefix
        #: Only reads (``--prompt-trend``): a SQLite store need not be writable then.
        self.read_only = read_only
        #: Where experiments created here keep their artifacts: a directory beside a
        #: SQLite database. None for servers (they decide) and file stores (artifacts
        #: already live inside the store's directory).
        self.artifact_root: Path | None = db.parent / "mlartifacts" if db is not None else None
        self._client: MlflowClient | None = None
        self._experiments: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"Tracker({display_uri(self.uri)!r})"

    @property
    def is_remote(self) -> bool:
        """Whether the store is a tracking server reached over HTTP(S)."""
        return self.uri.split(":", 1)[0].lower() in ("http", "https", "databricks")

    def open(self) -> Tracker:
        """Create or open the store and check that it answers; returns the tracker.

        Call it on the controller before any worker starts: a fresh SQLite file is
        created and migrated here, once (several processes migrating one new file
        at the same time crash in MLflow's migrations, DESIGN §6.1). Calling it
        again does nothing. Any failure is :class:`TrackingUnavailable`: a store
        that cannot be opened is as good as unreachable. A SQLite store (unless
        :attr:`read_only`) is checked for writing before MLflow touches it
        (:func:`_unwritable`).
        """
        if self._client is not None:
            return self
        with self._calling("opening the store", opening=True):
            db = _sqlite_path(self.uri)
            problem = _unwritable(db, self.artifact_root) if db is not None and not self.read_only else None
            if problem is not None:
                raise TrackingUnavailable(
                    f"MLflow tracking at {display_uri(self.uri)} is unavailable (opening the store): {problem}"
                )
            from mlflow.tracking import MlflowClient

            if db is not None and not db.exists():
                _seed_from_template(db)
            client = MlflowClient(tracking_uri=self.uri)
            client.search_experiments(max_results=1)  # creates a SQL store; reaches a server
        self._client = client
        return self

    @property
    def client(self) -> MlflowClient:
        """The :class:`MlflowClient` of this store, opened first.

        Calls made on it directly get MLflow's own errors and retries; the
        functions of this module wrap theirs (quick failure, errors as
        :class:`TrackingError` / :class:`TrackingUnavailable`).
        """
        if self._client is None:
            self.open()
        assert self._client is not None
        return self._client

    def experiment_name(self, eval_name: str, prefix: str | None = None) -> str:
        """``{prefix}/{eval}``: one experiment per eval (DESIGN §6)."""
        return f"{self.experiment_prefix if prefix is None else prefix}/{eval_name}"

    def experiment_for(self, eval_name: str, prefix: str | None = None) -> str:
        """The id of the eval's experiment, created if missing; ``prefix`` defaults to the tracker's.

        A new experiment on a SQLite store keeps its artifacts in
        :attr:`artifact_root`, beside the database, never in ``./mlruns``. An
        existing experiment keeps the location it was created with. A deleted
        experiment is an error: MLflow logs nothing into it until it is restored.
        """
        name = self.experiment_name(eval_name, prefix)
        if name in self._experiments:
            return self._experiments[name]
        client = self.client
        with self._calling(f"creating experiment {name!r}"):
            from mlflow.exceptions import MlflowException

            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                try:
                    experiment_id = client.create_experiment(name, artifact_location=self._artifact_location(name))
                except MlflowException as exc:
                    if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                        raise
                    experiment = client.get_experiment_by_name(name)  # another session created it just now
                    if experiment is None:
                        raise
            if experiment is not None:
                _check_active(experiment, self)
                experiment_id = experiment.experiment_id
        self._experiments[name] = experiment_id
        return experiment_id

    def find_experiment(self, eval_name: str, prefix: str | None = None, *, deleted_is_error: bool = False) -> str | None:
        """The id of the eval's active experiment, or None when it does not exist (nothing is created).

        A deleted experiment is None too, or with ``deleted_is_error`` a :class:`TrackingError`
        saying how to restore it (runs cannot be logged into it, so it is not a "first run").
        """
        name = self.experiment_name(eval_name, prefix)
        if name in self._experiments:
            return self._experiments[name]
        client = self.client
        with self._calling(f"looking up experiment {name!r}"):
            experiment = client.get_experiment_by_name(name)
        if experiment is not None and experiment.lifecycle_stage != "active" and deleted_is_error:
            _check_active(experiment, self)
        if experiment is None or experiment.lifecycle_stage != "active":
            return None
        self._experiments[name] = experiment.experiment_id
        return experiment.experiment_id

    def _artifact_location(self, experiment_name: str) -> str | None:
        if self.artifact_root is None:
            return None
        parts = [_path_part(part, "_") for part in experiment_name.split("/") if part]
        return self.artifact_root.joinpath(*parts).as_uri()

    @contextlib.contextmanager
    def _calling(self, action: str, *, opening: bool = False) -> Iterator[None]:
        """Around every call into MLflow: quick HTTP failure, the one SQLAlchemy warning, errors in our words.

        Whatever is raised inside comes out as a :class:`TrackingError` (:func:`tracking_failure`);
        with ``opening``, as :class:`TrackingUnavailable`. MLflow's SQL store logs each database
        error with its traceback and SQL; those lines are held back, the error is said once, translated.
        """
        added = [name for name in _MLFLOW_ENV if name not in os.environ]
        os.environ.update({name: _MLFLOW_ENV[name] for name in added})
        quiet = logging.getLogger(_MLFLOW_DB_LOGGER)
        was_disabled, quiet.disabled = quiet.disabled, True
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", message=_SQLALCHEMY_NOLOAD_WARNING, category=DeprecationWarning, module=r"mlflow\.store\."
                )
                yield
        except Exception as exc:
            failure = tracking_failure(exc, self.uri, action, remote=self.is_remote)
            if opening and not isinstance(failure, TrackingUnavailable):
                failure = TrackingUnavailable(str(failure))
            if failure is exc:
                raise
            raise failure from exc
        finally:
            quiet.disabled = was_disabled
            for name in added:
                os.environ.pop(name, None)


def preload(uri: str) -> None:
    """Import what opening the store ``uri`` needs -- MLflow and the store of that URI's scheme -- touching nothing.

    These imports are most of the cost of opening a store (about 2.5 s of CPU for
    MLflow and its SQLAlchemy store here); the tracking agent makes them before it is
    told that the session needs the store. An import that fails is left to
    :meth:`Tracker.open` to report.
    """
    import importlib

    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower()
    store = _STORE_MODULES.get(scheme)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for module in ("mlflow.tracking", *([store] if store else [])):
            with contextlib.suppress(ImportError):
                importlib.import_module(module)


#: URI scheme → the module of MLflow's tracking store for it (what :func:`preload` imports).
_STORE_MODULES = {
    **dict.fromkeys(("sqlite", "postgresql", "mysql", "mssql"), "mlflow.store.tracking.sqlalchemy_store"),
    **dict.fromkeys(("http", "https", "databricks"), "mlflow.store.tracking.rest_store"),
}


def template_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where migrated empty SQLite stores are kept, one per MLflow version: ``$XDG_CACHE_HOME/pytest-promptgate``."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pytest-promptgate"


def _seed_from_template(db: Path) -> None:
    """Create the new SQLite store ``db`` as a copy of a migrated empty store, when one can be had.

    MLflow creates a store by running its whole chain of schema migrations, about
    3.5 s on a 2-core machine, on every new file. The result is the same for every
    store of one MLflow version, so it is made once per machine and version (in
    :func:`template_dir`) and copied (milliseconds). The template holds no
    experiment: MLflow adds its Default experiment when it opens the copy, with
    an artifact location of its own. Anything that fails here leaves ``db``
    absent, and MLflow creates it the slow way; a cache directory that cannot be
    written is found first (MLflow would retry for minutes, :func:`_unwritable`).
    """
    import sqlite3

    import mlflow

    try:
        directory = template_dir()
        template = directory / f"mlflow-{mlflow.__version__}.db"
        if not template.exists():
            directory.mkdir(parents=True, exist_ok=True)
            if _cannot_create_in(directory) is not None:
                return
            fresh = directory / f".{uuid.uuid4().hex}.db"
            try:
                from mlflow.tracking import MlflowClient

                MlflowClient(tracking_uri=_sqlite_uri(fresh)).search_experiments(max_results=1)
                with contextlib.closing(sqlite3.connect(fresh)) as connection, connection:
                    connection.execute("DELETE FROM experiment_tags")
                    connection.execute("DELETE FROM experiments")
                os.replace(fresh, template)
            finally:
                with contextlib.suppress(OSError):
                    fresh.unlink()
        db.parent.mkdir(parents=True, exist_ok=True)
        copy = db.parent / f".{db.name}.{uuid.uuid4().hex}.tmp"
        try:
            shutil.copyfile(template, copy)
            os.link(copy, db)  # never replaces a store that appeared meanwhile
        finally:
            with contextlib.suppress(OSError):
                copy.unlink()
    except Exception:  # OSError, sqlite3.Error, MLflow refusing the template: the slow way still works
        return


def _check_active(experiment: Experiment, tracker: Tracker) -> None:
    if experiment.lifecycle_stage != "active":
        raise TrackingError(
            f"experiment {experiment.name!r} (id {experiment.experiment_id}) is deleted in "
            f"{display_uri(tracker.uri)}: restore it (mlflow experiments restore --experiment-id "
            f"{experiment.experiment_id}) or delete it for good (mlflow gc) to log runs again"
        )


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _unreachable(exc: BaseException, *, remote: bool) -> bool:
    """Whether ``exc`` means the store could not be reached (as opposed to a refused request)."""
    for error in _chain(exc):
        if isinstance(error, (ConnectionError, TimeoutError)):
            return True
        kind = type(error)
        module, name = kind.__module__, kind.__name__
        if module.startswith(("requests", "urllib3")) and any(
            base.__name__ in ("ConnectionError", "Timeout", "ProtocolError", "MaxRetryError", "NewConnectionError")
            for base in kind.__mro__
        ):
            return True
        if module.startswith("sqlalchemy") and name in _SQLALCHEMY_UNREACHABLE:
            return True
        if remote and _is_mlflow_error(error):
            code = getattr(error, "error_code", None)
            try:
                status = error.get_http_status_code()  # type: ignore[attr-defined]
            except Exception:
                status = 500
            # 5xx: the server (or what is behind it) is down; 401/403: we are not let in;
            # ENDPOINT_NOT_FOUND: whatever answers at this URI is not an MLflow server.
            if status >= 500 or status in (401, 403, 429) or code == "ENDPOINT_NOT_FOUND":
                return True
    return False


def _is_mlflow_error(exc: BaseException) -> bool:
    return any(base.__name__ == "MlflowException" and base.__module__.startswith("mlflow") for base in type(exc).__mro__)


def tracking_failure(exc: BaseException, uri: str, action: str | None = None, *, remote: bool = False) -> TrackingError:
    """``exc``, raised while ``action`` on the store ``uri``, as the :class:`TrackingError` that says what happened.

    Known failures get their reason in a line: a store of another MLflow version (what to
    do about it), a server or database that cannot be reached (:class:`TrackingUnavailable`),
    a request MLflow or the database refused, a file that could not be written.
    Anything else is ``MLflow failed: <type>: <first line>`` (:func:`describe_failure`).
    Database errors are given by the database's own message, never SQLAlchemy's text
    with its SQL. A :class:`TrackingError` is returned as it is.
    """
    if isinstance(exc, TrackingError):
        return exc
    where = display_uri(uri)
    down = f"MLflow tracking at {where} is unavailable" + (f" ({action})" if action else "")
    failed = f"MLflow tracking at {where}: " + (f"{action} failed: " if action else "")
    schema = _schema_mismatch(exc, where)
    if schema is not None:
        return TrackingUnavailable(f"{down}: {schema}")
    if _unreachable(exc, remote=remote):
        return TrackingUnavailable(f"{down}: {_reason(exc)}")
    if _is_mlflow_error(exc) or isinstance(exc, OSError) or _database_error(exc) is not None:
        return TrackingError(failed + _reason(exc))
    return TrackingError(failed + describe_failure(exc))


def describe_failure(exc: BaseException) -> str:
    """``MLflow failed: <type>: <first line>``: an exception nothing more is known about, in one line."""
    lines = str(exc).strip().splitlines()
    first = _cut_line(lines[0]) if lines else ""
    return f"MLflow failed: {type(exc).__name__}" + (f": {first}" if first else "")


def _cut_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def _reason(exc: BaseException) -> str:
    for error in _chain(exc):
        text = str(error)
        if "Connection refused" in text:
            return "connection refused"
        if "Connection reset" in text or "Connection aborted" in text:
            return "connection lost"
        if isinstance(error, TimeoutError) or "timed out" in text.lower():
            return "timed out"
    database = _database_error(exc)
    if database is not None:
        return database
    for error in _chain(exc):
        if isinstance(error, OSError) and error.strerror:
            names = [str(name) for name in (error.filename, error.filename2) if name is not None]
            return _cut_line(f"{error.strerror}: {' -> '.join(names)}" if names else error.strerror)
    return _cut_line(str(exc))


def _database_error(exc: BaseException) -> str | None:
    """The database's own message when ``exc`` comes from SQLAlchemy: without SQLAlchemy's wrapping, its SQL, its link."""
    for error in _chain(exc):
        if type(error).__module__.startswith("sqlalchemy"):
            orig = getattr(error, "orig", None)
            text = str(orig) if orig is not None else str(error)
            text = _SQLALCHEMY_NOISE.sub(" ", text).split("[SQL:", 1)[0]
            return _cut_line(text) or type(error).__name__
    return None


# What SQLAlchemy adds to a database's message: the autoflush note, the "(sqlite3.OperationalError)" prefix, the link.
_SQLALCHEMY_NOISE = re.compile(
    r"\(raised as a result of Query-invoked autoflush;[^)]*\)|\(Background on this error at:[^)]*\)|^\s*\([\w.]+\)\s*"
)


def _schema_mismatch(exc: BaseException, where: str) -> str | None:
    """What to do about a SQL store whose schema is not the one this MLflow expects; None for other errors."""
    for error in _chain(exc):
        found = _SCHEMA_MISMATCH.search(str(error))
        if found is None:
            continue
        store, expected = found.group(1), found.group(2)
        import mlflow

        this = f"schema {store}, this MLflow {mlflow.__version__} expects {expected}"
        if _known_revision(store):
            return (f"the store has the schema of an older MLflow ({this}); upgrade it with "
                    f"'mlflow db upgrade {where}' after a backup, or point --prompt-tracking-uri elsewhere")
        return (f"the store was written by another MLflow version ({this}); "
                "upgrade MLflow, or point --prompt-tracking-uri elsewhere")
    return None


# MLflow's message (mlflow.store.db.utils._verify_schema) when a store's schema is not its own.
_SCHEMA_MISMATCH = re.compile(r"out-of-date database schema \(found version (\S+), but expected (\S+?)\)")


def _known_revision(revision: str) -> bool:
    """Whether ``revision`` is one of this MLflow's own schema migrations (the store is older), not a later one."""
    try:
        from alembic.script import ScriptDirectory
        from mlflow.store.db.utils import _get_alembic_config

        return ScriptDirectory.from_config(_get_alembic_config("")).get_revision(revision) is not None
    except Exception:  # an unknown revision raises; so does an MLflow that moved its migrations: not known either
        return False


def _unwritable(db: Path, artifacts: Path | None) -> str | None:
    """Why the SQLite store ``db`` or its artifact directory cannot be written, with what to do; None when they can.

    MLflow finds out by itself only after its engine's retries, about 100 s per open of a
    new store in a directory it cannot write. ``access(2)`` alone would not do: it lets root
    write anywhere but on a read-only file system (sysfs, say, refuses all the same), so a
    file is made and removed in each directory that must take new files: the store's
    (SQLite keeps its journal beside the database), or the nearest one that exists when
    the store's must be made, and the artifact directory when it exists already.
    """
    directory = db.parent
    problem = None
    existing = next((p for p in (directory, *directory.parents) if os.path.lexists(p)), None)
    if existing is not None and not existing.is_dir():
        problem = f"{existing} is not a directory"
    elif existing is not None:
        problem = _cannot_create_in(existing)
    if problem is None and os.path.lexists(db):
        if not db.is_file():
            problem = "it is not a file"
        else:
            try:
                os.close(os.open(db, os.O_RDWR))
            except OSError as exc:
                problem = f"the file cannot be opened for writing ({exc.strerror})"
    if problem is None and artifacts is not None and os.path.lexists(artifacts):
        if not artifacts.is_dir():
            problem = f"its artifact directory {artifacts} is not a directory"
        else:
            problem = _cannot_create_in(artifacts)
    if problem is None:
        return None
    return f"cannot write the SQLite store {db}: {problem}; fix that, or point --prompt-tracking-uri at a store in a writable directory"


def _cannot_create_in(directory: Path) -> str | None:
    """Why no file can be made in ``directory`` (tried for real), or None."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".promptgate-probe-", dir=directory)
    except OSError as exc:
        return f"no file can be made in {directory} ({exc.strerror})"
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return None


# --------------------------------------------------------------------------- what a session did


@dataclass
class TrackingStatus:
    """What tracking did in one session, for the summary and the reports."""

    #: ``logged``: every run reached MLflow; ``unavailable``: some or all were kept on disk; ``off``: tracking is off.
    state: str
    #: The tracking URI with any password hidden (:func:`display_uri`).
    uri: str | None = None
    logged: int = 0
    #: Runs of this session written to the spool instead.
    spooled: int = 0
    spool: str | None = None
    #: Runs kept by earlier sessions that this session sent.
    sent_earlier: int = 0
    #: Spooled runs that are waiting still, from earlier sessions or this one.
    waiting: int = 0
    #: Runs of this session neither logged nor spooled (the spool could not be written): lost.
    lost: int = 0
    #: Partial runs of killed sessions, rebuilt from their journals at the start and spooled (``journal.recover``).
    recovered: int = 0
    #: Why tracking failed, and anything else MLflow refused, one sentence each.
    problems: list[str] = field(default_factory=list)
    experiments: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- what a run holds


@dataclass
class TrackedRun:
    """Everything one MLflow run of one (eval, variant) holds, as plain data.

    Built on the controller at the end of a session; logged by :func:`log_eval_run`,
    or written to disk by :func:`spool` when tracking is down and sent later
    with everything it had (git state and times included).

    ``params`` are the run's params besides ``eval``, ``variant`` and ``suite``
    (``dataset_hash``, ``repeat``, ``target``, model params, ``prompt.{name}``);
    a prompt of ``prompts`` without a ``prompt.{name}`` param gets its digest
    (:func:`prompt_digest`). ``metrics`` usually come from :func:`summary_metrics`;
    ``tags`` from :func:`git_tags` and :func:`ci_tags` plus any others. ``cases``
    are :meth:`CaseResult.to_dict <pytest_promptgate.results.CaseResult.to_dict>`
    dicts; ``prompts`` the rendered prompt texts by name. ``complete`` is true
    only when every case of the dataset ran and none errored: only complete runs
    become baselines.
    """

    eval: str
    variant: str
    suite: str
    session: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    cases: list[dict[str, Any]] = field(default_factory=list)
    prompts: dict[str, str] = field(default_factory=dict)
    complete: bool = False
    verdict: str | None = None
    baseline_run_id: str | None = None
    #: Milliseconds since the epoch; the run's times in MLflow, also when it is sent later.
    start_time_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    end_time_ms: int | None = None
    #: Identifies the record across retries, so a spooled run is never logged twice.
    record_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: The store the run was meant for (:func:`display_uri`) and its experiment prefix: a spooled
    #: run is sent there, not to whatever store a later session uses. None: any store, the tracker's prefix.
    tracking_uri: str | None = None
    experiment_prefix: str | None = None
    #: Registry prompt versions the run used, ``[{"name": ..., "version": "3"}]``: tagged
    #: ``mlflow.linkedPrompts`` as MlflowClient.link_prompt_version_to_run does, in the same batch.
    linked_prompts: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (the spool file's content)."""
        return {"format": _SPOOL_FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrackedRun:
        """The inverse of :meth:`to_dict`; raises :class:`ValueError` on data it cannot read."""
        if data.get("format") != _SPOOL_FORMAT:
            raise ValueError(f"unknown spool format {data.get('format')!r} (expected {_SPOOL_FORMAT})")
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except TypeError as exc:
            raise ValueError(f"not a run record: {exc}") from None


def prompt_versions(params: Mapping[str, Any]) -> dict[str, str]:
    """``{prompt name: version}`` of a run, from its ``prompt.{name}`` params (as :func:`log_eval_run` logs them)."""
    return {key[len("prompt."):]: str(value) for key, value in params.items() if key.startswith("prompt.")}


def metric_key(name: str) -> str:
    """``name`` as a key MLflow accepts for metrics, params and tags.

    Characters outside ``[A-Za-z0-9_ .:/-]`` become ``_`` (no ``:`` on Windows,
    where MLflow refuses it), and a name MLflow would read as a path that is not
    its own normal form (``a//b``, ``/a``, ``a/``, ``..``) loses its slashes;
    cut to 250 characters.
    """
    key = _UNSAFE_KEY.sub("_", name)[:MAX_KEY] or "_"
    if posixpath.normpath(key) != key or key.startswith(("/", "..")) or key == ".":
        key = key.replace("/", "_")
        if key in (".", "..") or key.startswith(".."):
            key = "_" + key[1:]
    return key


def summary_metrics(summary: EvalSummary) -> dict[str, float]:
    """The metrics of one (eval, variant) as MLflow run metrics (DESIGN §6); unknown (None) values are left out.

    The gate metric names (``verdicts.GATE_METRICS``) are the summary's field names;
    case counts are ``total_cases``, ``passed_cases``, ``failed_cases``,
    ``error_cases`` and ``flaky_cases``; each grader adds ``grader.{name}.pass_rate``
    and each failure mode ``failure_mode.{code}.count`` (names through :func:`metric_key`).
    """
    values: dict[str, float | int | None] = {
        "pass_rate": summary.pass_rate,
        "average_score": summary.average_score,
        "error_rate": summary.error_rate,
        "total_cases": summary.cases,
        "passed_cases": summary.passed,
        "failed_cases": summary.failed,
        "error_cases": summary.errors,
        "flaky_cases": summary.flaky,
        "latency_ms_avg": summary.latency_ms_avg,
        "latency_ms_p50": summary.latency_ms_p50,
        "latency_ms_p95": summary.latency_ms_p95,
        "latency_ms_p99": summary.latency_ms_p99,
        "input_tokens": summary.input_tokens,
        "output_tokens": summary.output_tokens,
        "cost_usd_total": summary.cost_usd_total,
        "cost_usd_per_case": summary.cost_usd_per_case,
    }
    for name, rate in summary.grader_pass_rates.items():
        values[metric_key(f"grader.{name}.pass_rate")] = rate
    for code, count in summary.failure_modes.items():
        values[metric_key(f"failure_mode.{code}.count")] = count
    return {name: float(value) for name, value in values.items() if value is not None}


# --------------------------------------------------------------------------- git and CI


def git_tags(cwd: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``git.commit``, ``git.branch`` and ``git.dirty`` of the checkout at ``cwd``; {} without git.

    ``git.dirty`` is ``"true"`` when tracked files differ from the commit
    (untracked files do not count: the store and the spool are usually untracked).
    CI checkouts are often a detached HEAD; the branch then comes from the CI's
    variables in ``env`` (default :data:`os.environ`): ``GITHUB_HEAD_REF`` or
    ``GITHUB_REF_NAME`` (for branch refs), ``CI_COMMIT_BRANCH`` or
    ``CI_MERGE_REQUEST_SOURCE_BRANCH_NAME``, ``BUILDKITE_BRANCH``,
    ``CIRCLE_BRANCH``, ``BRANCH_NAME``.
    """
    env = os.environ if env is None else env
    commit = _git(cwd, "rev-parse", "HEAD")
    if commit is None and _git(cwd, "rev-parse", "--git-dir") is None:
        return {}
    tags: dict[str, str] = {}
    if commit:
        tags["git.commit"] = commit
    branch = _git(cwd, "symbolic-ref", "--short", "-q", "HEAD") or _ci_branch(env)
    if branch:
        tags["git.branch"] = branch
    status = _git(cwd, "status", "--porcelain", "--untracked-files=no")
    if status is not None:
        tags["git.dirty"] = "true" if status else "false"
    return tags


def _git(cwd: str | os.PathLike[str], *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},  # `git status` must not take the index lock
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _ci_branch(env: Mapping[str, str]) -> str | None:
    if env.get("GITHUB_HEAD_REF"):
        return env["GITHUB_HEAD_REF"]
    pull_request = env.get("GITHUB_REF", "").startswith("refs/pull/")
    if env.get("GITHUB_REF_NAME") and env.get("GITHUB_REF_TYPE", "branch") == "branch" and not pull_request:
        return env["GITHUB_REF_NAME"]
    for name in ("CI_COMMIT_BRANCH", "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", "BUILDKITE_BRANCH", "CIRCLE_BRANCH",
                 "BRANCH_NAME"):
        if env.get(name):
            return env[name]
    return None


def ci_tags(env: Mapping[str, str]) -> dict[str, str]:
    """CI identifiers of the current job, as ``ci.*`` tags; {} outside CI.

    ``ci.provider`` is ``github``, ``gitlab`` or ``ci`` (any CI that sets ``CI``);
    then, when the provider gives them: ``ci.run_id``, ``ci.commit``, ``ci.ref``,
    ``ci.actor``, ``ci.repository``, ``ci.url``. GitHub Actions: ``GITHUB_RUN_ID``,
    ``GITHUB_SHA``, ``GITHUB_REF_NAME``, ``GITHUB_ACTOR``, ``GITHUB_REPOSITORY``
    (and the run's URL from ``GITHUB_SERVER_URL``). GitLab: ``CI_PIPELINE_ID``,
    ``CI_COMMIT_SHA``, ``CI_COMMIT_REF_NAME``, ``GITLAB_USER_LOGIN``,
    ``CI_PROJECT_PATH``, ``CI_PIPELINE_URL``. Others: ``BUILD_ID``, ``BUILD_URL``.
    """
    if env.get("GITHUB_ACTIONS") == "true":
        tags = {
            "ci.provider": "github",
            "ci.run_id": env.get("GITHUB_RUN_ID", ""),
            "ci.commit": env.get("GITHUB_SHA", ""),
            "ci.ref": env.get("GITHUB_REF_NAME", ""),
            "ci.actor": env.get("GITHUB_ACTOR", ""),
            "ci.repository": env.get("GITHUB_REPOSITORY", ""),
        }
        if env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
            server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
            tags["ci.url"] = f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
    elif env.get("GITLAB_CI") == "true":
        tags = {
            "ci.provider": "gitlab",
            "ci.run_id": env.get("CI_PIPELINE_ID", ""),
            "ci.commit": env.get("CI_COMMIT_SHA", ""),
            "ci.ref": env.get("CI_COMMIT_REF_NAME", ""),
            "ci.actor": env.get("GITLAB_USER_LOGIN", ""),
            "ci.repository": env.get("CI_PROJECT_PATH", ""),
            "ci.url": env.get("CI_PIPELINE_URL", ""),
        }
    elif env.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        tags = {"ci.provider": "ci", "ci.run_id": env.get("BUILD_ID", ""), "ci.url": env.get("BUILD_URL", "")}
    else:
        return {}
    return {name: value for name, value in tags.items() if value}


# --------------------------------------------------------------------------- logging a run


def log_eval_run(tracker: Tracker, record: TrackedRun, results: str | None = None) -> str:
    """Log one (eval, variant) as one MLflow run and return its run id.

    ``results`` is the results table's text (:func:`results_json`) when the caller has
    made it already, in which case ``record.cases`` is not read: the session sends its
    tracking agent a few megabytes of text rather than the cases as objects.

    In order: the run is created in the eval's experiment (named after the
    variant, with the record's start time and identity tags); params, metrics and
    tags go in one ``log_batch``; the results table (:data:`RESULTS_FILE`) and
    the prompt texts (``prompts/{name}.txt``) are uploaded; the run is set
    FINISHED. Only a FINISHED run can become a baseline, so a run whose logging
    fails half way never does: it is ended FAILED (:func:`_end_failed`), so that
    the store never holds a run that looks in progress, and its record can be
    spooled and sent again (:func:`send_spooled` closes any half-logged run of the
    same record first).
    """
    experiment_id = tracker.experiment_for(record.eval, record.experiment_prefix)
    client = tracker.client
    what = f"logging run {record.eval}/{record.variant}"
    end_time = record.end_time_ms if record.end_time_ms is not None else int(time.time() * 1000)
    with tracker._calling(what):
        from mlflow.entities import Metric, Param, RunTag

        params, tags, truncated = _run_params_and_tags(record)
        values: dict[str, float] = {}
        for key, value in record.metrics.items():
            values[_unique_key(metric_key(key), values)] = float(value)
        metrics = [Metric(key, value, end_time, 0) for key, value in values.items()]
        identity = {k: tags.pop(k) for k in _IDENTITY_TAGS}
        if truncated:
            tags[TRUNCATED_TAG] = _cut(",".join(truncated), MAX_TAG_VALUE)[0]
        run = client.create_run(experiment_id, start_time=record.start_time_ms, tags=identity, run_name=record.variant)
    run_id = run.info.run_id
    try:
        with tracker._calling(what):
            param_list = [Param(k, v) for k, v in params.items()]
            for batch in _batches(metrics, param_list, [RunTag(k, v) for k, v in tags.items()]):
                client.log_batch(run_id, *batch)
            with tempfile.TemporaryDirectory(prefix="promptgate-") as tmp:
                _write_artifacts(Path(tmp), record, results)
                client.log_artifacts(run_id, tmp)
            client.set_terminated(run_id, "FINISHED", end_time=end_time)
    except BaseException:
        _end_failed(tracker, run_id, end_time)
        raise
    return run_id


def _end_failed(tracker: Tracker, run_id: str, end_time: int) -> None:
    """End the half-logged run ``run_id`` FAILED; best effort, never raises.

    A full disk refuses that too, and what the run's artifacts took of the disk is why:
    their half-written files are worth nothing (the record is kept and sent again as a
    new run), so when the first try fails and they lie under :attr:`Tracker.artifact_root`,
    they are removed and the run is ended again.
    """
    client = tracker.client
    for attempt in (1, 2):
        try:
            with tracker._calling(f"ending run {run_id} FAILED"):
                client.set_terminated(run_id, "FAILED", end_time=end_time)
            return
        except Exception:
            if attempt == 2 or not _drop_local_artifacts(tracker, run_id):
                return


def _drop_local_artifacts(tracker: Tracker, run_id: str) -> bool:
    """Remove the artifacts of run ``run_id`` when they lie under the tracker's own artifact directory; whether it did."""
    root = tracker.artifact_root
    if root is None:
        return False
    try:
        with tracker._calling(f"reading run {run_id}"):
            uri = tracker.client.get_run(run_id).info.artifact_uri
        parts = urlsplit(uri)
        if parts.scheme not in ("", "file"):
            return False
        directory = Path(unquote(parts.path)).resolve()
        if directory.parent.name != run_id or not directory.is_relative_to(root.resolve()):
            return False
        shutil.rmtree(directory.parent)  # the run's directory: RUN_ID/artifacts
    except Exception:
        return False
    return True


def _run_params_and_tags(record: TrackedRun) -> tuple[dict[str, str], dict[str, str], list[str]]:
    truncated: list[str] = []
    params: dict[str, str] = {}

    def put(target: dict[str, str], kind: str, key: str, value: Any, limit: int) -> None:
        safe = _unique_key(metric_key(key), target)
        text, cut = _cut(_text(value), limit)
        if cut:
            truncated.append(f"{kind}:{safe}")
        target[safe] = text

    for key, value in {"eval": record.eval, "variant": record.variant, "suite": record.suite, **record.params}.items():
        put(params, "param", key, value, MAX_PARAM_VALUE)
    for name, text in record.prompts.items():
        if metric_key(f"prompt.{name}") not in params:
            put(params, "param", f"prompt.{name}", prompt_digest(text), MAX_PARAM_VALUE)

    tags: dict[str, str] = {}
    given = dict(record.tags)
    if "git.commit" in given:
        given.setdefault("mlflow.source.git.commit", given["git.commit"])
    if "git.branch" in given:
        given.setdefault("mlflow.source.git.branch", given["git.branch"])
    ours = {
        "promptgate.record": record.record_id,
        "promptgate.session": record.session,
        "promptgate.suite": record.suite,
        "promptgate.eval": record.eval,
        "promptgate.variant": record.variant,
        "promptgate.complete": "true" if record.complete else "false",
        "mlflow.source.name": "pytest-promptgate",
        "mlflow.source.type": "LOCAL",
        # Lets the MLflow UI show the results file as a table (what MlflowClient.log_table records).
        "mlflow.loggedArtifacts": json.dumps([{"path": RESULTS_FILE, "type": "table"}]),
    }
    if record.linked_prompts:
        # MlflowClient.link_prompt_version_to_run looks the run up in the default tracking
        # store, not the client's (MLflow 3.17); the tag it writes is set here instead.
        ours["mlflow.linkedPrompts"] = json.dumps(
            [{"name": p["name"], "version": str(p["version"])} for p in record.linked_prompts]
        )
    if record.verdict is not None:
        ours["promptgate.verdict"] = record.verdict
    if record.baseline_run_id is not None:
        ours["promptgate.baseline_run_id"] = record.baseline_run_id
    for key, value in {**given, **ours}.items():
        put(tags, "tag", key, value, MAX_TAG_VALUE)
    return params, tags, truncated


def _unique_key(key: str, taken: Mapping[str, Any]) -> str:
    # Two names that sanitise alike must not overwrite each other (nor make log_batch refuse duplicates).
    if key not in taken:
        return key
    n = 2
    while f"{key}_{n}" in taken:
        n += 1
    return f"{key}_{n}"


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return str(value)


def _cut(text: str, limit: int) -> tuple[str, bool]:
    if len(text) <= limit:
        return text, False
    marker = f"… [cut from {len(text)} chars]"
    keep = max(0, limit - len(marker))
    return (text[:keep] + marker)[:limit], True


def _batches(
    metrics: Sequence[Any], params: Sequence[Any], tags: Sequence[Any]
) -> Iterator[tuple[list[Any], list[Any], list[Any]]]:
    """``(metrics, params, tags)`` chunks within MLflow's ``log_batch`` limits; one chunk in the usual case."""
    metrics, params, tags = list(metrics), list(params), list(tags)
    while True:
        p = params[:_MAX_PARAMS_TAGS_PER_BATCH]
        t = tags[: _MAX_PARAMS_TAGS_PER_BATCH - len(p)]
        m = metrics[: _MAX_ENTRIES_PER_BATCH - len(p) - len(t)]
        yield m, p, t
        params, tags, metrics = params[len(p):], tags[len(t):], metrics[len(m):]
        if not (params or tags or metrics):
            return


# --------------------------------------------------------------------------- the results table

#: Columns of the results table, one row per case.
RESULT_COLUMNS = (
    "case_id", "outcome", "passed", "score", "flaky", "runs", "runs_passed", "latency_ms",
    "input_tokens", "output_tokens", "cost_usd", "model", "output", "graders", "failure_modes",
    "error", "vars", "expected", "tags",
)


def _row(case: Mapping[str, Any]) -> list[Any]:
    """One case's cells, in :data:`RESULT_COLUMNS` order (one pass over its runs: one call per case of the session)."""
    runs = case.get("runs") or ()
    error = case.get("error")
    several = len(runs) > 1
    grader_lines = []
    modes = set()
    latencies = []
    totals: list[Any] = [None, None, None]  # input tokens, output tokens, cost: None unless some run knows it
    runs_passed, model = 0, None
    for i, run in enumerate(runs, 1):
        runs_passed += bool(run.get("passed"))
        if run.get("latency_ms") is not None:
            latencies.append(run["latency_ms"])
        for k, key in enumerate(("input_tokens", "output_tokens", "cost_usd")):
            value = run.get(key)
            if value is not None:
                totals[k] = value if totals[k] is None else totals[k] + value
        model = model or run.get("model") or None
        for g in run.get("graders") or ():
            passed = g["passed"]
            line = f"{g['name']}: {'pass' if passed else 'FAIL'} ({_number(g.get('score'))})"
            if not passed:
                if g.get("reason"):
                    line += f" {g['reason']}"
                if g.get("failure_mode"):
                    modes.add(g["failure_mode"])
            grader_lines.append(f"run {i}: {line}" if several else line)
    if several:
        output = "\n".join(f"--- run {i} ---\n{r.get('output', '')}" for i, r in enumerate(runs, 1))
    else:
        output = str(runs[0].get("output", "")) if runs else None
    passed = bool(case.get("passed"))
    return [
        case.get("case_id"),
        "error" if error is not None else ("passed" if passed else "failed"),
        passed and error is None,
        _cell(case.get("score")),
        bool(case.get("flaky")),
        len(runs),
        runs_passed,
        _cell(sum(latencies) / len(latencies)) if latencies else None,
        _cell(totals[0]),
        _cell(totals[1]),
        _cell(totals[2]),
        None if model is None else str(model),  # a target's own value: text in the table, whatever it was
        output,
        "\n".join(grader_lines),
        ", ".join(sorted(modes)),
        error,
        json.dumps(case.get("vars") or {}, ensure_ascii=False, default=str),
        _json_text(case.get("expected")),
        ", ".join(case.get("tags") or ()),
    ]


def _json_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _number(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "-"


def _cell(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def results_json(cases: Sequence[Mapping[str, Any]]) -> str:
    """The per-case results as the JSON text of an MLflow table (:data:`RESULTS_FILE`).

    ``{"columns": [...], "data": [[...], ...]}``: the shape ``MlflowClient.log_table``
    writes (pandas' ``orient="split"``), which the MLflow UI renders and ``load_table``
    reads, built without pandas. ``cases`` are :meth:`CaseResult.to_dict` dicts; every
    cell is JSON (no NaN). Encoded a row at a time with the C encoder: ``json.dump``
    of the whole table to a file would hold every row at once and encode in Python.
    """
    encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
    rows = ", ".join(encode(_row(case)) for case in cases)
    return '{"columns": ' + json.dumps(list(RESULT_COLUMNS)) + ', "data": [' + rows + "]}"


def _write_artifacts(directory: Path, record: TrackedRun, results: str | None = None) -> None:
    (directory / RESULTS_FILE).write_text(results_json(record.cases) if results is None else results, encoding="utf-8")
    if record.prompts:
        prompts = directory / PROMPTS_DIR
        prompts.mkdir()
        taken: set[str] = set()
        for name, text in record.prompts.items():
            stem = _path_part(name, "prompt")
            while stem in taken:
                stem += "_"
            taken.add(stem)
            (prompts / f"{stem}.txt").write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------- baselines


@dataclass(frozen=True)
class Baseline:
    """The run a current (eval, variant) is compared with (DESIGN §5, §6)."""

    run_id: str
    eval: str
    variant: str
    #: Milliseconds since the epoch, as MLflow keeps it.
    start_time: int
    status: str
    complete: bool
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    _tracker: Tracker | None = field(default=None, repr=False, compare=False)

    @property
    def prompt_versions(self) -> dict[str, str]:
        """``{prompt name: version}`` from the ``prompt.{name}`` params."""
        return prompt_versions(self.params)

    @property
    def session(self) -> str | None:
        """The session that logged the run."""
        return self.tags.get("promptgate.session")

    @property
    def branch(self) -> str | None:
        """The git branch the run was made on, when known."""
        return self.tags.get("git.branch")

    def case_outcomes(self) -> dict[str, bool]:
        """``{case_id: passed}`` from the run's results table, for the paired (McNemar) test (:func:`baseline_outcomes`)."""
        if self._tracker is None:
            raise TrackingError("this baseline was not read from a tracker")
        return baseline_outcomes(self._tracker, self.run_id)


def baseline_outcomes(tracker: Tracker, run_id: str) -> dict[str, bool]:
    """``{case_id: passed}`` of run ``run_id``, from its results table.

    Downloads :data:`RESULTS_FILE`; {} when the run has none (it was not
    logged by this plugin, or its upload failed).
    """
    client = tracker.client
    what = f"reading the results of run {run_id}"
    with tempfile.TemporaryDirectory(prefix="promptgate-") as tmp, tracker._calling(what):
        names = {item.path for item in client.list_artifacts(run_id)}
        if RESULTS_FILE not in names:
            return {}
        path = client.download_artifacts(run_id, RESULTS_FILE, tmp)
        with open(path, encoding="utf-8") as f:
            table = json.load(f)
    return outcomes_from_table(table)


def outcomes_from_table(table: Mapping[str, Any]) -> dict[str, bool]:
    """``{case_id: passed}`` from a results table (:func:`results_json`); {} for a table without those columns."""
    columns = list(table.get("columns") or [])
    if "case_id" not in columns or "passed" not in columns:
        return {}
    case, passed = columns.index("case_id"), columns.index("passed")
    return {str(row[case]): bool(row[passed]) for row in table.get("data") or []}


def find_baseline(
    tracker: Tracker,
    eval_name: str,
    variant: str,
    *,
    branch: str | None = None,
    run_id: str | None = None,
    exclude_session: str | None = None,
    exclude_verdicts: Sequence[str] = ("REGRESSION",),
) -> Baseline | None:
    """The baseline of (eval, variant), or None when there is none yet.

    The most recent (by start time) run in the eval's experiment that FINISHED,
    is tagged ``promptgate.complete = true`` and ``promptgate.variant = variant``,
    and whose ``promptgate.verdict`` is not one of ``exclude_verdicts`` (REGRESSION
    by default; the session passes the verdicts that fail it, ``--prompt-fail-on``):
    a run that failed the bar cannot be the bar, so running the same change again
    is measured against the last good run, not against itself,
    and, with ``branch``, ``git.branch = branch``; runs of ``exclude_session``
    (the current session) never count. With ``run_id`` (``--prompt-baseline``)
    that run is the baseline whatever its variant, status or completeness; a run
    that does not exist, is deleted, or is not a run of this eval raises
    :class:`BaselineError`.

    Two searches of one run each, however many runs the experiment holds (DESIGN §12); more
    only when a value holds both quote kinds (:func:`_newest_run`).
    """
    if run_id is not None:
        return pinned_baseline(tracker, run_id, eval_name)
    experiment_id = tracker.find_experiment(eval_name, deleted_is_error=True)
    if experiment_id is None:
        return None
    conditions = [("promptgate.variant", variant, True)]
    if branch is not None:
        conditions.append(("git.branch", branch, True))
    if exclude_session is not None:
        conditions.append(("promptgate.session", exclude_session, False))
    base = ["attributes.status = 'FINISHED'", "tags.\"promptgate.complete\" = 'true'"]
    # MLflow's != leaves out runs without the tag, and runs logged without a verdict (no baseline
    # then, or an older plugin) have none: one search for runs with an acceptable verdict, one for
    # runs without a verdict, and the newer of the two wins. Filtering the verdict on this side
    # instead paged through every run that failed the bar (30-40 s with 20 000 of them).
    searches = [[*conditions, *(("promptgate.verdict", verdict, False) for verdict in exclude_verdicts)]]
    if exclude_verdicts:
        searches.append([*conditions, ("promptgate.verdict", None, True)])
    client = tracker.client
    with tracker._calling(f"searching the baseline of {eval_name}/{variant}"):
        found = [_newest_run(client, experiment_id, base, search) for search in searches]
    candidates = [run for run in found if run is not None]
    if not candidates:
        return None
    return _baseline(min(candidates, key=_recency), tracker)


def _recency(run: Run) -> tuple[int, int, str]:
    # MLflow's SQL stores order by the given keys, then by run id (sqlalchemy_store._get_orderby_clauses).
    return -run.info.start_time, -(run.info.end_time or 0), run.info.run_id


def _newest_run(
    client: MlflowClient, experiment_id: str, base: Sequence[str], conditions: Sequence[tuple[str, str | None, bool]]
) -> Run | None:
    """The newest run matching ``base`` clauses and tag ``conditions`` ``(key, value, equal)``; value None: no such tag.

    One search, unless a value no MLflow string literal can hold (both quote kinds)
    leaves a condition to be checked here: the filter then narrows the search as far
    as it can and pages through what it lets pass.
    """
    clauses, local = list(base), []
    for key, value, equal in conditions:
        clause, exact = _tag_clause(key, value, equal)
        if clause is not None:
            clauses.append(clause)
        if not exact:
            local.append((key, value, equal))
    page_token = None
    while True:
        runs = client.search_runs(
            [experiment_id], filter_string=" and ".join(clauses), max_results=50 if local else 1,
            order_by=_NEWEST_FIRST, page_token=page_token,
        )
        for run in runs:
            if all((run.data.tags.get(key) == value) == equal for key, value, equal in local):
                return run
        page_token = runs.token
        if not page_token:
            return None


_LIKE_ANY_CHAR = re.compile(r"['\"\\%_]")


def _tag_clause(key: str, value: str | None, equal: bool) -> tuple[str | None, bool]:
    """The filter clause of one tag condition (None: MLflow cannot express it), and whether it is exact.

    A value holding both quote kinds becomes a LIKE pattern that lets it pass (each
    quote, backslash or wildcard matches any one character), to be checked exactly
    on the runs found.
    """
    if value is None:
        return f'tags."{key}" {"IS NULL" if equal else "IS NOT NULL"}', True
    literal = _literal(value)
    if literal is not None:
        return f'tags."{key}" {"=" if equal else "!="} {literal}', True
    if not equal:
        return None, False
    return f"tags.\"{key}\" LIKE '{_LIKE_ANY_CHAR.sub('_', value)}'", False


def _literal(value: str) -> str | None:
    # MLflow's filter parser strips the quotes and does not unescape (SearchUtils._strip_quotes).
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    return None


def pinned_baseline(tracker: Tracker, run_id: str, eval_name: str | None = None) -> Baseline:
    """The run ``run_id`` as a baseline (``--prompt-baseline``), whatever its variant, status or completeness.

    Raises :class:`BaselineError` when the run does not exist, is deleted, was not
    logged by this plugin, or (with ``eval_name``) is a run of another eval.
    """
    client = tracker.client
    with tracker._calling(f"reading baseline run {run_id}"):
        from mlflow.exceptions import MlflowException

        try:
            run = client.get_run(run_id)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
                raise BaselineError(f"baseline run {run_id!r} does not exist in {display_uri(tracker.uri)}") from None
            raise
    if run.info.lifecycle_stage != "active":
        raise BaselineError(f"baseline run {run_id!r} is deleted in {display_uri(tracker.uri)}")
    owner = run.data.tags.get("promptgate.eval")
    if owner is None:
        raise BaselineError(f"baseline run {run_id!r} is not a pytest-promptgate run (it has no promptgate.eval tag)")
    if eval_name is not None and owner != eval_name:
        raise BaselineError(f"baseline run {run_id!r} is a run of eval {owner!r}, not of {eval_name!r}")
    return _baseline(run, tracker)


def _baseline(run: Run, tracker: Tracker) -> Baseline:
    tags = dict(run.data.tags)
    return Baseline(
        run_id=run.info.run_id,
        eval=tags.get("promptgate.eval", ""),
        variant=tags.get("promptgate.variant", ""),
        start_time=run.info.start_time,
        status=run.info.status,
        complete=tags.get("promptgate.complete") == "true",
        # Numbers only: a store whose values are not (a damaged or foreign one) must not break the comparison.
        metrics={k: float(v) for k, v in run.data.metrics.items() if isinstance(v, (int, float))},
        params=dict(run.data.params),
        tags=tags,
        _tracker=tracker,
    )


# --------------------------------------------------------------------------- the prompt registry


class RegistryError(TrackingError):
    """A registry prompt, alias or version that does not exist."""


def resolve_prompt(tracker: Tracker, name: str, *, alias: str | None = None, version: int | None = None) -> dict[str, Any]:
    """The registry prompt ``name`` at ``alias`` or ``version``, as plain data to pin for a session.

    ``{"name", "version", "template", "messages"}``: ``template`` for a text prompt,
    ``messages`` (``[[role, content], ...]``) for a chat prompt. Raises
    :class:`RegistryError` when the prompt, alias or version does not exist.
    """
    what = f"{name}@{alias}" if alias is not None else f"{name}/{version}"
    client = tracker.client
    with tracker._calling(f"resolving registry prompt {what}"):
        from mlflow.exceptions import MlflowException

        try:
            if alias is not None:
                found = client.get_prompt_version_by_alias(name, alias)
            else:
                found = client.get_prompt_version(name, version)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
                raise
            found = None
        if found is None:
            exists = client.get_prompt(name) is not None
    if found is None:
        where = display_uri(tracker.uri)
        if not exists:
            raise RegistryError(f"registry prompt {name!r} does not exist in {where}")
        if alias is not None:
            raise RegistryError(f"registry prompt {name!r} has no alias {alias!r} in {where}")
        raise RegistryError(f"registry prompt {name!r} has no version {version} in {where}")
    template = found.template
    if isinstance(template, str):
        return {"name": name, "version": int(found.version), "template": template, "messages": None}
    messages = [[str(m.get("role", "user")), m.get("content") if isinstance(m.get("content"), str) else json.dumps(m.get("content"))]
                for m in template]
    return {"name": name, "version": int(found.version), "template": None, "messages": messages}


def register_prompt_version(
    tracker: Tracker, name: str, template: str | list[dict[str, str]], *, message: str, tags: Mapping[str, str],
    alias: str | None = None,
) -> int:
    """Register ``template`` as a new version of registry prompt ``name`` (created if new); point ``alias`` at it."""
    client = tracker.client
    with tracker._calling(f"registering a new version of prompt {name}"):
        version = client.register_prompt(name, template, commit_message=message,
                                         tags={k: _cut(v, MAX_TAG_VALUE)[0] for k, v in tags.items()})
        if alias is not None:
            client.set_prompt_alias(name, alias, int(version.version))
    return int(version.version)


#: Prompt tags holding the plugin's promotion history, one event each: ``promptgate.audit.{time}-{id}``.
AUDIT_TAG_PREFIX = "promptgate.audit."
#: The DESIGN §7 audit keys, tagged on each justifying run and on the prompt version.
AUDIT_KEYS = ("action", "prompt_name", "from_version", "to_version", "alias", "timestamp", "actor")


def alias_version(tracker: Tracker, name: str, alias: str) -> int | None:
    """The version ``alias`` of prompt ``name`` points at; None when the alias is not set."""
    client = tracker.client
    with tracker._calling(f"reading alias {name}@{alias}"):
        from mlflow.exceptions import MlflowException

        try:
            found = client.get_prompt_version_by_alias(name, alias)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
                raise
            return None
    return int(found.version) if found is not None else None


def set_alias(tracker: Tracker, name: str, alias: str, version: int) -> int | None:
    """Point ``alias`` of prompt ``name`` at ``version``; return what the alias reads back as afterwards."""
    client = tracker.client
    with tracker._calling(f"moving alias {name}@{alias} to version {version}"):
        client.set_prompt_alias(name, alias, int(version))
    return alias_version(tracker, name, alias)


def audit_history(tracker: Tracker, name: str) -> list[dict[str, Any]]:
    """Every promotion and rollback of prompt ``name`` recorded by this plugin, oldest first.

    The registry keeps no alias history (DESIGN §6.1), so each event is a prompt
    tag of its own; ``key`` in each event is its tag name.
    """
    client = tracker.client
    with tracker._calling(f"reading the promotion history of {name}"):
        prompt = client.get_prompt(name)
    if prompt is None:
        raise RegistryError(f"registry prompt {name!r} does not exist in {display_uri(tracker.uri)}")
    events = []
    for key, value in sorted((prompt.tags or {}).items()):
        if key.startswith(AUDIT_TAG_PREFIX):
            try:
                events.append({**json.loads(value), "key": key})
            except ValueError:
                continue
    return events


def record_audit(tracker: Tracker, event: Mapping[str, Any], run_ids: Sequence[str] = ()) -> str:
    """Record a promotion or rollback: in the prompt's history, on the version it moved to, on each run.

    ``event`` holds the :data:`AUDIT_KEYS` (and may hold more: ``forced``,
    ``reason``, ``reverts``, ``runs``). Returns the history tag's name.
    """
    name, version = str(event["prompt_name"]), int(event["to_version"])
    key = f"{AUDIT_TAG_PREFIX}{int(time.time() * 1000):013d}-{uuid.uuid4().hex[:8]}"
    text = json.dumps(dict(event), sort_keys=True, default=str)
    # Every key, every time (empty when it does not apply): a version's tags show its latest event whole,
    # with nothing left over from an earlier one.
    keys = dict.fromkeys((*AUDIT_KEYS, "forced", "reason", "reverts"), "")
    keys.update({k: v for k, v in event.items() if k != "runs" and v is not None})
    tags = {f"audit.{k}": _cut(_text(v), MAX_TAG_VALUE)[0] if v != "" else "" for k, v in keys.items()}
    client = tracker.client
    with tracker._calling(f"recording the {event['action']} of {name}"):
        client.set_prompt_tag(name, key, text)
        for tag, value in tags.items():
            client.set_prompt_version_tag(name, version, tag, value)
        from mlflow.entities import RunTag

        for run_id in run_ids:
            client.log_batch(run_id, tags=[RunTag(tag, value) for tag, value in tags.items()])
    return key


# --------------------------------------------------------------------------- the spool


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
        return _UNSAFE_PATH_PART.sub("_", text)[:limit] or "_"

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
        raise TrackingError(f"the spool {directory} cannot be read or changed: {_reason(exc)}") from exc
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
    literal = _literal(record.record_id)
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
        why = f"{rejected} is not a directory" if rejected.exists() and not rejected.is_dir() else _reason(exc)
        stuck.append(f"the spool cannot set aside {claimed.name} ({_cut_line(reason, 200)}): {why}; it stays in {directory}")
        with contextlib.suppress(OSError):
            os.rename(claimed, directory / claimed.name)


# --------------------------------------------------------------------------- trend

# Newest first; runs of one session share a start time and were logged in the eval's variant order.
_NEWEST_FIRST = ["attributes.start_time DESC", "attributes.end_time DESC"]


@dataclass(frozen=True)
class TrendRun:
    """One FINISHED run of an (eval, variant), as ``--prompt-trend`` shows it: plain data, no MLflow objects."""

    run_id: str
    eval: str
    variant: str
    #: Milliseconds since the epoch: when the session that made the run started.
    start_time: int
    #: ``promptgate.complete``: every case of the dataset ran and none errored.
    complete: bool
    pass_rate: float | None
    average_score: float | None
    #: The cases that ran (fewer than the dataset's in a partial run).
    total_cases: int | None
    verdict: str | None
    #: The selected suites the eval's run was made for (``promptgate.suite``).
    suites: tuple[str, ...]
    #: ``{prompt name: version}`` from the ``prompt.{name}`` params.
    prompt_versions: dict[str, str]


@dataclass(frozen=True)
class EvalHistory:
    """The runs of one eval that ``--prompt-trend`` needs, read with a few bounded searches."""

    eval: str
    experiment: str
    #: The newest runs of the eval (every variant), up to the limit, oldest first.
    runs: tuple[TrendRun, ...]
    #: Per variant seen in ``runs``: its newest complete runs, oldest first, however far back they are.
    complete: dict[str, tuple[TrendRun, ...]]
    #: Per variant seen in ``runs``: its run just before its oldest one in ``runs``, when the limit left that out.
    earlier: dict[str, TrendRun]


def eval_runs(
    tracker: Tracker,
    eval_names: Sequence[str] | None = None,
    suites: Sequence[str] = (),
    *,
    limit: int = 10,
    complete_runs: int = 3,
) -> dict[str, EvalHistory]:
    """``{eval: EvalHistory}`` of the evals with FINISHED runs in experiments ``{prefix}/{eval}``, by eval name.

    Only the evals named in ``eval_names`` when given; only runs whose
    ``promptgate.suite`` tag lists one of ``suites`` when given. Per eval: its
    ``limit`` newest runs, and per variant among them its ``complete_runs``
    newest complete runs and the run before its oldest shown one (for what
    changed). Each is one ``search_runs`` ordered newest first with
    ``max_results``: the store is never read through. Runs that are not
    FINISHED (a logging that failed half way and was sent again later, a session
    still logging) and deleted runs and experiments are left out. A SQLite store
    that does not exist yet has no runs; it is not created.
    """
    if limit < 1 or complete_runs < 1:
        raise ValueError("limit and complete_runs must be at least 1")
    database = _sqlite_path(tracker.uri)
    if database is not None and not database.exists():
        return {}
    histories = (
        _history(tracker, eval_name, experiment_id, frozenset(suites), limit, complete_runs)
        for eval_name, experiment_id in sorted(_eval_experiments(tracker, eval_names).items())
    )
    return {history.eval: history for history in histories if history.runs}


def _history(
    tracker: Tracker, eval_name: str, experiment_id: str, suites: frozenset[str], limit: int, complete_runs: int
) -> EvalHistory:
    def newest(count: int, tags: Mapping[str, str], before: int | None = None) -> list[TrendRun]:
        return _newest_runs(tracker, experiment_id, count, suites, {"promptgate.eval": eval_name, **tags}, before)

    runs = newest(limit, {})[::-1]
    complete: dict[str, tuple[TrendRun, ...]] = {}
    earlier: dict[str, TrendRun] = {}
    for variant in dict.fromkeys(run.variant for run in runs):
        of_variant = {"promptgate.variant": variant}
        complete[variant] = tuple(newest(complete_runs, {**of_variant, "promptgate.complete": "true"})[::-1])
        if len(runs) == limit:  # with fewer, every run of the eval is shown already
            oldest = next(run for run in runs if run.variant == variant)
            before = newest(1, of_variant, before=oldest.start_time)
            if before:
                earlier[variant] = before[0]
    return EvalHistory(eval_name, tracker.experiment_name(eval_name), tuple(runs), complete, earlier)


def _eval_experiments(tracker: Tracker, eval_names: Sequence[str] | None) -> dict[str, str]:
    """``{eval: experiment id}`` of the active experiments ``{prefix}/{eval}``; only ``eval_names`` when given."""
    if eval_names is not None:
        found = {name: tracker.find_experiment(name) for name in eval_names}
        return {name: experiment_id for name, experiment_id in found.items() if experiment_id is not None}
    prefix = tracker.experiment_name("")
    # LIKE narrows the search; its wildcards (_ and %) may match more, so the prefix is checked again below.
    literal = _literal(prefix + "%")
    experiments: dict[str, str] = {}
    client = tracker.client
    page_token = None
    with tracker._calling("listing the eval experiments"):
        while True:
            page = client.search_experiments(
                filter_string=f"name LIKE {literal}" if literal else None, page_token=page_token,
            )
            for experiment in page:
                name = experiment.name[len(prefix):]
                if experiment.name.startswith(prefix) and name and "/" not in name:  # eval names have no "/"
                    experiments[name] = experiment.experiment_id
            page_token = page.token
            if not page_token:
                return experiments


def _newest_runs(
    tracker: Tracker, experiment_id: str, count: int, suites: frozenset[str], tags: Mapping[str, str],
    before: int | None = None,
) -> list[TrendRun]:
    """The ``count`` newest FINISHED runs with these tag values, listing one of ``suites`` (any when empty),
    started before ``before`` (ms), newest first.

    One search when the filter says it all; more pages only while runs are dropped
    here (several suites, which an MLflow filter cannot OR, or a value no filter literal can hold).
    """
    clauses = ["attributes.status = 'FINISHED'"]
    local = dict(tags)
    for key, value in tags.items():
        literal = _literal(value)
        if literal is not None:
            clauses.append(f'tags."{key}" = {literal}')
            del local[key]
    if before is not None:
        clauses.append(f"attributes.start_time < {int(before)}")
    found: list[TrendRun] = []
    client = tracker.client
    page_token = None
    with tracker._calling(f"searching the runs of experiment {experiment_id}"):
        while len(found) < count:
            page = client.search_runs(
                [experiment_id], filter_string=" and ".join(clauses), max_results=count, order_by=_NEWEST_FIRST,
                page_token=page_token,
            )
            for run in page:
                trend_run = _trend_run(run)
                if all(run.data.tags.get(k) == v for k, v in local.items()) and (
                    not suites or suites.intersection(trend_run.suites)
                ):
                    found.append(trend_run)
            page_token = page.token
            if not page_token:
                break
    return found[:count]


def _trend_run(run: Run) -> TrendRun:
    tags, metrics = run.data.tags, run.data.metrics
    total = metrics.get("total_cases")
    return TrendRun(
        run_id=run.info.run_id,
        eval=tags.get("promptgate.eval", ""),
        variant=tags.get("promptgate.variant", ""),
        start_time=run.info.start_time,
        complete=tags.get("promptgate.complete") == "true",
        pass_rate=metrics.get("pass_rate"),
        average_score=metrics.get("average_score"),
        total_cases=int(total) if total is not None else None,
        verdict=tags.get("promptgate.verdict"),
        # The suites the eval lists (promptgate.eval_suites); older runs have only the session's selection.
        suites=tuple(name for name in tags.get("promptgate.eval_suites", tags.get("promptgate.suite", "")).split(",") if name),
        prompt_versions=prompt_versions(run.data.params),
    )
