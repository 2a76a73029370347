"""The end of a process that ran evals: the interpreter's last garbage collection is skipped (plugin.py).

Each session runs in a process of its own. Its conftest registers an ``atexit``
handler before the session starts, so the handler runs after every handler the
session registered, as late as anything at exit can look: it writes what the
interpreter's last collection would still have to walk.
"""

from __future__ import annotations

import gc
import json

import pytest

AT_EXIT = """
import atexit, gc, json

def _what_the_last_collection_walks():
    with open("at-exit.json", "w") as out:
        json.dump({"frozen": gc.get_freeze_count(), "tracked": len(gc.get_objects())}, out)

atexit.register(_what_the_last_collection_walks)
"""

EVAL = (
    'eval: e\nsuites: [s]\ntarget: echo\nprompts: {main: {template: "say {{word}}"}}\n'
    'graders: [{type: contains, value: "{{word}}"}]\ncases:\n'
) + "".join(f"  - {{id: c{i}, vars: {{word: w{i}}}}}\n" for i in range(200))


@pytest.fixture
def exiting(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    """Runs pytest with ``args`` in a process of its own; returns what was left to collect at its exit."""
    pytester.makeconftest(AT_EXIT)
    pytester.makefile(".eval.yaml", e=EVAL)
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    monkeypatch.delenv("PROMPTGATE_FAST_EXIT", raising=False)

    def run(*args: str, passed: int) -> dict[str, int]:
        result = pytester.runpytest_subprocess(*args)
        result.assert_outcomes(passed=passed)
        return json.loads((pytester.path / "at-exit.json").read_text())

    return run


def test_after_evals_the_objects_of_the_session_are_left_to_the_os(exiting):
    left = exiting("--prompt-suite", "s", passed=201)
    assert left["frozen"] > 10_000  # the session's items, reports, modules: out of the collector's reach
    assert left["tracked"] < left["frozen"] / 10


@pytest.mark.parametrize("value", ["off", "0", " False "])
def test_promptgate_fast_exit_off_keeps_the_last_collection(exiting, monkeypatch, value):
    monkeypatch.setenv("PROMPTGATE_FAST_EXIT", value)
    left = exiting("--prompt-suite", "s", passed=201)
    assert left["frozen"] == 0
    assert left["tracked"] > 10_000


def test_a_session_without_evals_exits_as_pytest_does(exiting):
    left = exiting("test_plain.py", passed=1)
    assert left["frozen"] == 0


def test_a_program_that_runs_pytest_and_goes_on_is_not_touched(pytester: pytest.Pytester):
    pytester.makefile(".eval.yaml", e=EVAL)
    frozen = gc.get_freeze_count()
    pytester.runpytest("--prompt-suite", "s", "-p", "no:cacheprovider").assert_outcomes(passed=200)
    assert gc.get_freeze_count() == frozen
