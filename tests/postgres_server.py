"""A real PostgreSQL server on 127.0.0.1, for the team-scale tests (DESIGN §12).

The ``postgres_server`` fixture makes a new cluster with Debian's ``initdb`` in a
temporary directory, starts ``postgres`` on a free port (trust authentication on
127.0.0.1 only, its socket inside that directory) and stops it after the module.
PostgreSQL refuses to run as root: under root (CI) the cluster belongs to the
``postgres`` user the Debian package creates, and its programs run through
``runuser``. Every wait is bounded; a server that never answers fails the test
with its log. Without PostgreSQL's programs the tests skip, except in CI
(``CI`` set), where ``.ci/run`` installs them and a skip would hide a gap.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlflow_server import free_port

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def postgres_bin() -> Path | None:
    """The directory of the newest PostgreSQL server programs installed (Debian's layout), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


class PostgresServer:
    """One PostgreSQL cluster on 127.0.0.1: its data directory, port and process."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        # Not under pytest's tmp_path: its directories are private to root (mode 700), and under root the
        # cluster's files belong to the postgres user.
        self.root = Path(tempfile.mkdtemp(prefix="promptgate-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self._as_postgres = ["runuser", "-u", "postgres", "--"]

    def uri(self, database: str = "postgres") -> str:
        """An SQLAlchemy URI of ``database`` (SQLAlchemy 2.1 reaches ``postgresql://`` through psycopg 3)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *command: str) -> None:
        done = subprocess.run([*self._as_postgres, *command], capture_output=True, text=True, timeout=START_TIMEOUT)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def start(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--locale=C.UTF-8")
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [*self._as_postgres, str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-k", str(self.root), "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200",
                 "-c", "fsync=off"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited at start-up:\n{self._log_tail()}")
            ready = subprocess.run([str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                                   capture_output=True)
            if ready.returncode == 0:
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"postgres did not accept connections within {START_TIMEOUT:.0f} s:\n{self._log_tail()}")

    def create_database(self, name: str) -> str:
        """Create database ``name``; return its URI."""
        self._run(str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.uri(name)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)  # PostgreSQL's "fast" shutdown
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=STOP_TIMEOUT)
        shutil.rmtree(self.root, ignore_errors=True)

    def _log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    """A running PostgreSQL cluster shared by a module's tests (each makes its own database)."""
    bindir = postgres_bin()
    if bindir is None:
        message = "PostgreSQL is not installed (Debian package postgresql)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; .ci/run installs it, so CI must have it")
        pytest.skip(message)
    server = PostgresServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
