"""A real ``mlflow server`` process on 127.0.0.1, for the tracking tests that talk HTTP.

The ``mlflow_server`` fixture (module scope: a start takes several seconds) runs
``mlflow server`` from the full ``mlflow`` package of the test extras on a free
port, with a SQLite backend store and proxied artifacts under a temporary
directory, waits until ``/health`` answers, and stops it after the module.
Tests may :meth:`MlflowServer.kill` it (SIGKILL, as a crash) and
:meth:`MlflowServer.start` it again on the same port and store. Every wait is
bounded; a server that dies or never answers fails the test with its log.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

START_TIMEOUT = 120.0  # seconds; a start takes 5-15 s on a busy two-core machine
STOP_TIMEOUT = 15.0

# No proxy between the tests and 127.0.0.1, whatever the environment says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """One ``mlflow server`` on 127.0.0.1: its URI, its backend store, and its process group."""

    def __init__(self, root: Path, backend_store_uri: str | None = None, workers: int = 1) -> None:
        self.root = root
        self.port = free_port()
        self.db = root / "server.db"
        self.artifacts = root / "artifacts"
        self.log = root / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.workers = workers
        self._backend = backend_store_uri

    @property
    def uri(self) -> str:
        """The tracking URI clients use."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def backend_store_uri(self) -> str:
        """The server's own store (SQLite unless another was given), which a test may also open directly."""
        return self._backend or f"sqlite:///{self.db}"

    def start(self) -> None:
        """Start the server (again) on the same port and store; return once ``/health`` answers."""
        assert self.process is None, "already running"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        # The job runner (huey consumers) is not needed and doubles the start-up time.
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        command = [
            sys.executable, "-m", "mlflow", "server",
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers),
            "--backend-store-uri", self.backend_store_uri,
            "--default-artifact-root", "mlflow-artifacts:/",
            "--artifacts-destination", str(self.artifacts),
        ]
        with open(self.log, "ab") as log:
            # A session of its own: the server's uvicorn child is killed with it.
            self.process = subprocess.Popen(
                command, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                raise RuntimeError(f"mlflow server exited at start-up:\n{self._log_tail()}")
            if self.healthy():
                return
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"mlflow server did not answer /health within {START_TIMEOUT:.0f} s:\n{self._log_tail()}")

    def healthy(self) -> bool:
        """Whether ``/health`` answers 200 now."""
        try:
            with _OPENER.open(f"{self.uri}/health", timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def kill(self) -> None:
        """SIGKILL the server and its children, as a crash would; no-op when it is not running."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """Stop the server politely (SIGTERM), killing it if it does not exit in time."""
        self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        try:
            os.killpg(process.pid, sig)  # the group is the server's own session (start_new_session)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT)
        if sig != signal.SIGKILL:  # uvicorn may outlive its parent by a moment
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A running ``mlflow server`` shared by a module's tests (each should use its own eval names)."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
