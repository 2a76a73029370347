"""The repository's own test-session set-up: what every run of the plugin's tests needs first.

Shared fixtures live in ``tests/conftest.py``; this file holds what makes a
test session of this repository what it is, whoever starts it (a developer,
``.ci/run``, an xdist worker):

- pytest's ``pytester`` plugin, which most tests drive;
- environment hygiene: eval runs log nothing to MLflow unless a test switches
  tracking on, and migrated MLflow stores are cached in a directory of the
  test process's own, never in the user's cache;
- modules that must stay loaded across pytester's in-process runs.

``examples/`` and the benchmarks' data directories have ini files of their own,
so their pytest runs never load this file.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

pytest_plugins = ("pytester",)

# Migrated empty MLflow stores are kept under $XDG_CACHE_HOME/pytest-promptgate: the tests keep theirs
# in a directory of their own (one per test process, removed when it ends), not in the user's cache.
# Set before any test runs, so that every pytest child a test starts inherits it.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="promptgate-test-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], True)


def pytest_configure(config: pytest.Config) -> None:
    """Import what pytester's in-process runs would otherwise import afresh.

    Those runs restore ``sys.modules`` afterwards. A module first imported inside
    such a run is imported again by the next one: PyYAML's Python side then no
    longer matches its C extension, and openai's exception classes no longer match
    the ones a client made earlier raises; numpy, which the embedding libraries of
    ``text_similarity``'s cosine import, refuses to load twice in a process.
    Importing them here keeps them loaded.
    """
    import model2vec  # noqa: F401
    import openai
    import wordllama  # noqa: F401

    import pytest_promptgate.collect  # noqa: F401
    import pytest_promptgate.targets.provider  # noqa: F401

    openai.OpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1").close()  # loads the SDK's lazy HTTP transport too


@pytest.fixture(autouse=True)
def _tracking_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eval runs in tests log nothing to MLflow unless a test switches tracking on (tests of tracking do).

    A fresh SQLite store takes seconds to create; the tests of tracking copy a migrated one.
    """
    monkeypatch.setenv("PROMPTGATE_TRACKING", "off")
