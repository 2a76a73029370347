"""The tracking agent: the tracking calls, run in a child process that opened MLflow while the items ran.

Importing MLflow and opening its store costs seconds of CPU (about 3.5 s on a
SQLite store here: ``mlflow`` and its SQLAlchemy store, docs/benchmarks.md), and
the controller needs MLflow only once the items have run. So as soon as
collection meets an eval file, the controller starts this agent, which imports
MLflow and the store's module on another core while pytest reads the file. Once
collection shows that eval items will run, the controller tells it to open the
store (``go``), which it does while pytest runs the items; if none will run, the
agent is killed: it has only imported modules, and never touched the store. At the end of
the session the controller sends it the calls that compare and log the runs
(:data:`CALLS`), one at a time, and gets their results back -- the same values,
and the same :class:`~pytest_promptgate.tracking.TrackingError` exceptions, as
calling :mod:`tracking` in-process.

The channel is the agent's stdin and stdout: one pickled message each way per
call (both ends are this package, in processes of the same user). The agent
writes nothing else to its stdout; what MLflow prints goes to its stderr, which
the controller keeps in a temporary file and quotes when the agent dies. Each
call carries the controller's environment as it is then (a conftest or fixture
may set ``MLFLOW_TRACKING_TOKEN`` after the agent started). The agent ignores
Ctrl-C (the controller decides what an interrupted session logs), is never sent
a signal once it was told to open the store (it may be writing to it), and exits when told to, when
its stdin closes, or when its parent is gone (a controller killed with ``kill -9`` whose pipe a forked
child still holds open): it never outlives its session by more than the call under way, whose run
the killed session's journal (:mod:`journal`) keeps anyway.

Runs as ``python -c`` with the package's directory on ``sys.path`` (not
``multiprocessing``, whose spawn would import the user's ``__main__`` again).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .baselines import Baseline, BaselineError
from .registry import RegistryError
from .store import Tracker, TrackingError, TrackingUnavailable, preload, tracking_failure

#: The functions of the package's face the agent runs, each with the agent's tracker as the first argument.
CALLS = frozenset({
    "find_baseline", "pinned_baseline", "baseline_outcomes", "baseline_cases", "recent_outcomes", "run_cases",
    "log_eval_run", "send_spooled", "eval_runs", "log_report",
})
#: The TrackingError classes an answer may name, to raise the same one in the controller.
_ERRORS = {cls.__name__: cls for cls in (TrackingError, TrackingUnavailable, BaselineError, RegistryError)}

#: ``PROMPTGATE_TRACKING_AGENT``: ``auto`` (the default) starts the agent when MLflow is not imported yet.
AGENT_ENV = "PROMPTGATE_TRACKING_AGENT"
_MODES = {"auto": "auto", "": "auto", "on": "on", "1": "on", "true": "on", "yes": "on",
          "off": "off", "0": "off", "false": "off", "no": "off"}

# How long the controller waits for the agent to exit after "close" (it may be creating a store, or
# waiting on a slow server) before it kills it.
_CLOSE_TIMEOUT_S = 60.0

# How often the agent looks whether its parent is still there.
_WATCH_INTERVAL_S = 0.2

#: What MLflow imports when it is there, for features the agent never uses (pandas datasets, model signatures,
#: ``log_table``), and runs without, as ``mlflow-skinny`` does: kept out of the agent while it imports MLflow.
#: With the full ``mlflow`` package installed they are about a third of the agent's memory (86 of 213 MB) and
#: 0.4 s of its imports (docs/benchmarks.md). Imported later (a tracking plugin that needs them), they load.
OPTIONAL_MODULES = ("pandas", "numpy", "pyarrow", "scipy", "sklearn", "matplotlib")

# The package the controller runs, first on the path unless the path has it already (an installed package).
_BOOT = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); p = {path!r}; "
    "p in sys.path or sys.path.insert(0, p); "
    "from pytest_promptgate.tracking.agent import main as promptgate_tracking_agent; promptgate_tracking_agent()"
)


def agent_mode(env: Any = None) -> str:
    """``auto``, ``on`` or ``off``, from :data:`AGENT_ENV`; anything else is a ValueError saying what is expected."""
    value = (os.environ if env is None else env).get(AGENT_ENV, "").strip().lower()
    if value not in _MODES:
        raise ValueError(f"{AGENT_ENV}={value!r}: expected auto, on or off")
    return _MODES[value]


class AgentGone(Exception):
    """The agent exited (or never started); the message says how, with the end of what it printed."""


class AgentBug(RuntimeError):
    """The agent was asked for a call it does not know (the controller and the agent disagree: a bug)."""


class TrackingAgent:
    """The controller's end of one agent process for the store ``uri``: it imports what the store needs at once,
    and opens the store when told to (:meth:`go`, or the first :meth:`call`)."""

    def __init__(self, uri: str, experiment_prefix: str) -> None:
        """Start the agent; raises OSError when no process can be started, AgentGone when it exits at once."""
        self._stderr = tempfile.TemporaryFile()
        package_parent = str(Path(__file__).resolve().parents[2])
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _BOOT.format(path=package_parent)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                start_new_session=True,  # the terminal's Ctrl-C and Ctrl-Z go to pytest, not to the agent
            )
        except BaseException:
            self._stderr.close()
            raise
        self._gone: str | None = None
        self._opening = False  # told to open the store: from then on it may be writing, and is never killed early
        # The URI may hold a password: sent on the channel, never on argv.
        try:
            self._send(("start", (uri, experiment_prefix), {}))
        except AgentGone:
            self.close()
            raise

    def go(self) -> None:
        """Have the agent open the store now, while the items run; the answer comes with the next :meth:`call`.

        An agent that is gone already is found so by that call.
        """
        self._opening = True
        with contextlib.suppress(AgentGone):
            self._send(("go", (), {}))

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """``tracking.{name}(tracker, *args, **kwargs)`` in the agent; ``open`` waits until the store is open.

        Raises what the call raised there (TrackingError and its kinds: any other exception
        arrives as the TrackingError that says what it was), :class:`AgentBug` for a call the
        agent does not know, and :class:`AgentGone` when the agent is not there to answer.
        """
        self._opening = True
        self._send((name, args, kwargs))
        try:
            reply = pickle.load(self._process.stdout)  # type: ignore[arg-type]
        except (EOFError, OSError, pickle.UnpicklingError) as exc:
            raise self._lost(exc) from None
        kind, value = reply
        if kind == "ok":
            return value
        if kind == "error":
            cls, message = value
            raise _ERRORS.get(cls, TrackingError)(message)
        raise AgentBug(f"the tracking agent failed in {name}:\n{value}")

    def close(self) -> None:
        """Tell the agent to exit once it has done what it is doing, and wait for it; calling it again does nothing.

        It is never interrupted while it may be writing (a store half created would be
        unusable); only one that has not exited after :data:`_CLOSE_TIMEOUT_S` is killed.
        An agent never told to open the store is killed at once: it has only imported modules.
        """
        process = self._process
        if process.poll() is None and self._opening:
            with contextlib.suppress(AgentGone):
                self._send(("close", (), {}))
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(_CLOSE_TIMEOUT_S)
        if process.poll() is None:
            process.kill()
            process.wait()
        self._release()

    def abandon(self) -> None:
        """Stop talking to the agent without waiting (Ctrl-C): it finishes the call under way, then exits."""
        self._gone = self._gone or "the tracking agent was left (Ctrl-C)"
        self._release()

    def _release(self) -> None:
        process = self._process
        for stream in (process.stdin, process.stdout, self._stderr):
            if stream is not None and not stream.closed:
                with contextlib.suppress(OSError):  # a pipe the agent left: what was buffered for it is moot
                    stream.close()

    def _send(self, message: tuple[str, tuple[Any, ...], dict[str, Any]]) -> None:
        if self._gone is not None:
            raise AgentGone(self._gone)
        try:
            pickle.dump((*message, dict(os.environ)), self._process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self._process.stdin.flush()  # type: ignore[union-attr]
        except (OSError, ValueError) as exc:  # BrokenPipeError; ValueError once the pipe is closed
            raise self._lost(exc) from None

    def _lost(self, exc: BaseException) -> AgentGone:
        """The agent stopped answering: wait for it, and say how it ended, with the end of its stderr."""
        process = self._process
        try:
            code = process.wait(_CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        self._stderr.seek(0)
        tail = self._stderr.read()[-2000:].decode("utf-8", "replace").strip()
        self._gone = f"the tracking agent exited with code {code} ({type(exc).__name__})" + (f": {tail}" if tail else "")
        return AgentGone(self._gone)


# --------------------------------------------------------------------------- the agent process


def main() -> None:
    """The agent process: :func:`serve`, then exit at once.

    Every call into MLflow has returned (and committed) by then; skipping the interpreter's
    shutdown saves about a second with MLflow and SQLAlchemy loaded, which pytest would wait for.
    """
    code = 0
    try:
        serve()
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    sys.stderr.flush()
    os._exit(code)


def serve() -> None:
    """The agent's main loop: import what the store named by the first message needs, open it when told to
    (``go``, or the first call), and answer calls until told to close.

    The agent's own stdout (fd 1) is pointed at its stderr before MLflow is imported, so
    nothing MLflow prints can break the channel, which keeps the original stdout.
    """
    stdout = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    stdin = sys.stdin.buffer
    busy = threading.Event()  # set while a call is under way
    threading.Thread(target=_watch_parent, args=(os.getppid(), busy), daemon=True).start()
    # The calls are looked up on the package's face when they are made, as the controller looks them up when it
    # calls them in-process (``session.EvalSession._via``): the same functions either way. The face is loaded
    # (this module is part of it), so this is a lookup, not an import.
    face = sys.modules[__package__]
    _, (uri, prefix), _, env = pickle.load(stdin)
    _environ(env)
    tracker = Tracker(uri, experiment_prefix=prefix)
    with _without(OPTIONAL_MODULES):
        preload(uri)
    opened: tuple[str, Any] | None = None
    while True:
        try:
            name, args, kwargs, env = pickle.load(stdin)
        except EOFError:
            return
        if name == "close":
            return
        busy.set()
        changed = _environ(env)
        if opened is None:
            opened = _attempt(tracker.open, uri)
        elif name == "open" and opened[0] != "ok" and (
            changed or opened[0] == "error" and opened[1][0] == "TrackingUnavailable"
        ):
            opened = _attempt(tracker.open, uri)  # it may be up now, or reachable with the session's settings
        if name == "go":  # no answer: the controller asks with its first call
            busy.clear()
            continue
        if name == "open":
            reply = ("ok", None) if opened[0] == "ok" else opened
        elif name in CALLS:
            reply = _attempt(lambda: _portable(getattr(face, name)(tracker, *args, **kwargs)), uri)
        else:
            reply = ("bug", f"no such call: {name!r}")
        busy.clear()
        pickle.dump(reply, stdout, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.flush()


@contextlib.contextmanager
def _without(names: tuple[str, ...]) -> Any:
    """While it lasts, importing one of ``names`` (not imported yet) raises ModuleNotFoundError, as where it is
    not installed; after, it imports as usual."""
    blocked = [name for name in names if name not in sys.modules]
    sys.modules.update(dict.fromkeys(blocked))
    try:
        yield
    finally:
        for name in blocked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def _watch_parent(parent: int, busy: threading.Event) -> None:
    """Exit once the controller (``parent``) is gone: at once when idle, else when the call under way ends
    (never later than :data:`_CLOSE_TIMEOUT_S` after), so a store being written is left whole."""
    while os.getppid() == parent:
        time.sleep(_WATCH_INTERVAL_S)
    deadline = time.monotonic() + _CLOSE_TIMEOUT_S
    while busy.is_set() and time.monotonic() < deadline:
        time.sleep(_WATCH_INTERVAL_S)
    sys.stderr.flush()
    os._exit(0)


def _environ(env: dict[str, str]) -> bool:
    """Make the agent's environment the controller's (MLflow reads its settings and credentials there);
    whether it changed."""
    if env == os.environ:
        return False
    os.environ.clear()
    os.environ.update(env)
    return True


def _attempt(action: Any, uri: str) -> tuple[str, Any]:
    """``("ok", value)``, or ``("error", (class name, message))`` of the TrackingError it raised.

    Any other exception is the TrackingError :func:`~pytest_promptgate.tracking.tracking_failure`
    makes of it in pytest's process too, so the session treats it as it would there; its
    traceback goes to the agent's stderr, which the controller quotes if the agent dies.
    """
    try:
        return ("ok", action())
    except Exception as exc:
        failure = tracking_failure(exc, uri)
        if failure is not exc:
            import traceback

            traceback.print_exc()
        return ("error", (type(failure).__name__, str(failure)))


def _portable(value: Any) -> Any:
    """A value that can cross to the controller: a baseline without its tracker (it reads through the agent)."""
    import dataclasses

    if isinstance(value, Baseline):
        return dataclasses.replace(value, _tracker=None)
    return value
