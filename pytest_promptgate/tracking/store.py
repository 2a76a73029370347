"""Opening a tracking store: URIs, the Tracker, the migrated-store template, and what a failure means."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import posixpath
import re
import shutil
import sys
import tempfile
import uuid
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit, urlunsplit
from urllib.request import pathname2url

if TYPE_CHECKING:
    from mlflow.entities import Experiment
    from mlflow.tracking import MlflowClient



DEFAULT_EXPERIMENT_PREFIX = "promptgate"


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


UNSAFE_PATH_PART = re.compile(r"[^A-Za-z0-9_.-]+")


#: The longest file name made of a name from an eval file (file systems take 255 bytes).
_MAX_PATH_PART = 100


def path_part(name: str, empty: str) -> str:
    """``name`` as one file name: safe characters only, never hidden, and at most :data:`_MAX_PATH_PART`
    characters (a longer name keeps its start and 8 hex digits of a hash of the whole)."""
    part = UNSAFE_PATH_PART.sub("_", name).strip(".") or empty
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
    db = sqlite_path(uri)
    if db is None or db.is_absolute():
        return uri
    query = uri.split("?", 1)[1] if "?" in uri else ""
    return _sqlite_uri(base / db) + (f"?{query}" if query else "")


def sqlite_path(uri: str) -> Path | None:
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
        db = sqlite_path(uri)
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
            db = sqlite_path(self.uri)
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
        parts = [path_part(part, "_") for part in experiment_name.split("/") if part]
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
        return TrackingUnavailable(f"{down}: {failure_reason(exc)}")
    if _is_mlflow_error(exc) or isinstance(exc, OSError) or _database_error(exc) is not None:
        return TrackingError(failed + failure_reason(exc))
    return TrackingError(failed + describe_failure(exc))


def describe_failure(exc: BaseException) -> str:
    """``MLflow failed: <type>: <first line>``: an exception nothing more is known about, in one line."""
    lines = str(exc).strip().splitlines()
    first = cut_line(lines[0]) if lines else ""
    return f"MLflow failed: {type(exc).__name__}" + (f": {first}" if first else "")


def cut_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def failure_reason(exc: BaseException) -> str:
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
            return cut_line(f"{error.strerror}: {' -> '.join(names)}" if names else error.strerror)
    return cut_line(str(exc))


def _database_error(exc: BaseException) -> str | None:
    """The database's own message when ``exc`` comes from SQLAlchemy: without SQLAlchemy's wrapping, its SQL, its link."""
    for error in _chain(exc):
        if type(error).__module__.startswith("sqlalchemy"):
            orig = getattr(error, "orig", None)
            text = str(orig) if orig is not None else str(error)
            text = _SQLALCHEMY_NOISE.sub(" ", text).split("[SQL:", 1)[0]
            return cut_line(text) or type(error).__name__
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


def filter_literal(value: str) -> str | None:
    # MLflow's filter parser strips the quotes and does not unescape (SearchUtils._strip_quotes).
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    return None


# Newest first; runs of one session share a start time and were logged in the eval's variant order.
NEWEST_FIRST = ["attributes.start_time DESC", "attributes.end_time DESC"]
