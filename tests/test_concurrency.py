"""--prompt-concurrency: target calls of upcoming items run N at a time, each call once, and stop with the session.

Every call is counted by the target itself (one JSON line per call in ``calls.jsonl``,
written by whichever thread or process made it), so the tests see what was really
called, not what the plugin says it did. Proof that calls overlap comes from a
barrier the first N calls must all reach; nothing here measures time.
"""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest

pytest.importorskip("xdist")

CALLS = r'''
import asyncio, json, os, threading, time

LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "calls.jsonl")
MEET = int(os.environ.get("MEET", "0"))   # the first MEET calls wait for each other: proof they overlap
_lock = threading.Lock()
_state = {"in_flight": 0, "arrived": 0}
_barrier = threading.Barrier(MEET, timeout=20) if MEET else None


def log(**fields):
    fields.update(thread=threading.current_thread().name, pid=os.getpid())
    with open(LOG, "a") as f:  # one short write per line: whole lines, from any thread or process
        f.write(json.dumps(fields) + "\n")


def answer(vars, variant):
    with _lock:
        _state["in_flight"] += 1
        _state["arrived"] += 1
        peak, first = _state["in_flight"], _state["arrived"] <= MEET
    try:
        if first:
            _barrier.wait()
        time.sleep(float(vars.get("sleep", 0)))
        if vars.get("crash"):
            raise RuntimeError("model unavailable")
        return vars["answer"]
    finally:
        with _lock:
            _state["in_flight"] -= 1
        log(eval=vars["eval"], case=vars["id"], variant=variant, peak=peak, event="call")


_async = {"in_flight": 0, "arrived": 0, "met": None}


async def async_answer(vars, variant):
    state = _async
    if state["met"] is None:
        state["met"] = asyncio.Event()
    state["in_flight"] += 1
    state["arrived"] += 1
    peak = state["in_flight"]
    if state["arrived"] >= MEET:
        state["met"].set()
    try:
        await asyncio.wait_for(state["met"].wait(), 20)
        await asyncio.sleep(float(vars.get("sleep", 0)))
    except asyncio.CancelledError:
        log(case=vars["id"], variant=variant, event="cancelled")
        raise
    finally:
        state["in_flight"] -= 1
    log(case=vars["id"], variant=variant, peak=peak, event="call", loop=id(asyncio.get_running_loop()))
    return vars["answer"]
'''


def eval_file(name="conc", target="calls:answer", cases=12, variants=("a", "b"), repeat=1, crash=(), wrong=(), sleep=0.0,
              sleeps=None):
    """An eval whose cases answer ``ok`` (``wrong`` ones answer ``nope``, ``crash`` ones raise)."""
    lines = [
        f"eval: {name}", "suites: [core]", 'prompts: {p: {template: "q {{id}}"}}', f"target: {target}",
        "variants: [" + ", ".join(f"{{name: {v}}}" for v in variants) + "]", f"repeat: {repeat}", "threshold: 0",
        "graders: [{type: equals, value: ok}]", "cases:",
    ]
    for i in range(cases):
        cid = f"c{i}"
        pause = (sleeps or {}).get(cid, sleep)
        extra = ", crash: true" if cid in crash else ""
        lines.append(f"  - {{id: {cid}, vars: {{id: {cid}, eval: {name}, answer: {'nope' if cid in wrong else 'ok'}, sleep: {pause}{extra}}}}}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def calls(pytester, monkeypatch):
    """Write the counting target; returns a function reading the calls made so far."""
    pytester.makepyfile(calls=CALLS)
    pytester.syspathinsert()
    monkeypatch.setenv("PROMPTGATE_TRACKING", "off")

    def read(event="call"):
        path = pytester.path / "calls.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [entry for entry in map(json.loads, lines) if entry["event"] == event]

    return read


def promptgate_threads():
    return [t.name for t in threading.enumerate() if t.name.startswith("promptgate")]


def test_calls_run_n_at_a_time_once_each_and_every_item_reports_on_its_own(pytester, calls, monkeypatch):
    monkeypatch.setenv("MEET", "4")
    pytester.makefile(".eval.yaml", conc=eval_file(repeat=2, crash={"c3"}, wrong={"c5"}, sleep=0.01))
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-concurrency", "4")
    # c5 fails and c3 errors, in both variants; every other item passes on its own.
    result.assert_outcomes(passed=20, failed=2, errors=2)
    result.stdout.fnmatch_lines(["*ERROR at setup of conc::a::c3*", "*RuntimeError: model unavailable*"])
    made = calls()
    counts = Counter((c["variant"], c["case"]) for c in made)
    # Each (variant, case, run) at most once: the 11 cases that do not crash twice each, c3 at most twice.
    assert {key: n for key, n in counts.items() if key[1] != "c3"} == {(v, f"c{i}"): 2 for v in "ab" for i in range(12) if i != 3}
    assert counts[("a", "c3")] in (1, 2) and counts[("b", "c3")] in (1, 2)
    # Four calls were under way at once (the barrier), never more, and none on pytest's own thread.
    assert max(c["peak"] for c in made) == 4
    assert {c["thread"].split("_")[0] for c in made} == {"promptgate-call"}
    assert promptgate_threads() == []


def test_concurrency_1_calls_each_target_in_its_items_turn(pytester, calls):
    pytester.makefile(".eval.yaml", conc=eval_file(repeat=2, wrong={"c5"}))
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-concurrency", "1")
    result.assert_outcomes(passed=22, failed=2)
    made = calls()
    assert len(made) == 48
    assert {c["thread"] for c in made} == {"MainThread"} and max(c["peak"] for c in made) == 1


def test_default_concurrency_is_8_and_the_ini_key_sets_it(pytester, calls, monkeypatch):
    pytester.makefile(".eval.yaml", conc=eval_file(cases=20, sleep=0.01))
    monkeypatch.setenv("MEET", "8")
    pytester.runpytest("--prompt-suite", "core").assert_outcomes(passed=40)
    assert max(c["peak"] for c in calls()) == 8
    (pytester.path / "calls.jsonl").unlink()
    pytester.makeini("[pytest]\npromptgate_concurrency = 3\n")
    monkeypatch.setenv("MEET", "3")
    pytester.runpytest("--prompt-suite", "core").assert_outcomes(passed=40)
    assert max(c["peak"] for c in calls()) == 3


@pytest.mark.parametrize("args, message", [
    (("--prompt-concurrency", "0"), "*--prompt-concurrency: expected a whole number of calls, 1 or more; got '0'*"),
    (("--prompt-concurrency", "eight"), "*--prompt-concurrency: expected a whole number of calls, 1 or more; got 'eight'*"),
    (("-o", "promptgate_concurrency=-2"), "*promptgate_concurrency: expected a whole number of calls, 1 or more; got '-2'*"),
])
def test_a_bad_concurrency_is_a_usage_error(pytester, calls, args, message):
    pytester.makefile(".eval.yaml", conc=eval_file(cases=2))
    result = pytester.runpytest("--prompt-suite", "core", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert calls() == []


def test_async_targets_share_one_loop_in_its_own_thread_and_run_at_once(pytester, calls, monkeypatch):
    """The loop is the runner's, in its own thread: a loop the tests of the session set as current (as
    pytest-asyncio does) is neither used nor disturbed, and a test using it runs before and after the evals."""
    monkeypatch.setenv("MEET", "4")
    pytester.makeconftest("""
        import asyncio
        import pytest

        @pytest.fixture(scope="session")
        def main_loop():
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            yield loop
            asyncio.set_event_loop(None)
            loop.close()
    """)
    pytester.makepyfile(test_a_first="""
        import asyncio
        def test_uses_main_loop(main_loop):
            assert main_loop.run_until_complete(asyncio.sleep(0, "ok")) == "ok"
    """, test_z_last="""
        import asyncio
        def test_main_loop_is_still_usable(main_loop):
            assert asyncio.get_event_loop() is main_loop
            assert main_loop.run_until_complete(asyncio.sleep(0, "ok")) == "ok"
    """)
    pytester.makefile(".eval.yaml", conc=eval_file(target="calls:async_answer", wrong={"c2"}))
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-concurrency", "4", "-p", "no:randomly")
    result.assert_outcomes(passed=24, failed=2)
    made = calls()
    assert Counter((c["variant"], c["case"]) for c in made) == {(v, f"c{i}"): 1 for v in "ab" for i in range(12)}
    assert len({c["loop"] for c in made}) == 1 and {c["thread"] for c in made} == {"promptgate-loop"}
    assert max(c["peak"] for c in made) == 4
    assert promptgate_threads() == []


def test_async_targets_and_pytest_asyncio_tests_in_one_session(pytester, calls, monkeypatch):
    """Real pytest-asyncio, its loop shared by every test of the session: async tests before and after the evals run
    on that loop, the evals' async calls on the plugin's own, and neither disturbs the other."""
    import pytest_asyncio  # noqa: F401  (in the [test] extra: this test must not be skipped)

    monkeypatch.setenv("MEET", "4")
    pytester.makeini("""
        [pytest]
        asyncio_mode = auto
        asyncio_default_fixture_loop_scope = session
        asyncio_default_test_loop_scope = session
    """)
    pytester.makepyfile(test_a_first="""
        import asyncio
        LOOPS = []

        async def test_before_the_evals():
            LOOPS.append(asyncio.get_running_loop())
            await asyncio.sleep(0)
    """, test_z_last="""
        import asyncio
        import threading
        from test_a_first import LOOPS

        async def test_after_the_evals_on_the_same_loop():
            assert asyncio.get_running_loop() is LOOPS[0]
            assert threading.current_thread() is threading.main_thread()
            await asyncio.sleep(0)
    """)
    pytester.makefile(".eval.yaml", conc=eval_file(target="calls:async_answer", wrong={"c2"}))
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-concurrency", "4", "-p", "no:randomly")
    result.assert_outcomes(passed=24, failed=2)
    made = calls()
    assert len(made) == 24 and {c["thread"] for c in made} == {"promptgate-loop"}
    assert max(c["peak"] for c in made) == 4
    assert promptgate_threads() == []


def test_fixture_targets_are_fetched_ahead_only_when_the_fixture_outlives_an_item(pytester, calls, monkeypatch):
    monkeypatch.setenv("MEET", "4")
    pytester.makeconftest("""
        import pytest
        import calls

        @pytest.fixture(scope="session")
        def shared():
            return calls.answer

        def made_for(request):
            def target(vars, variant):  # answers with the id of the item it was made for
                calls.log(case=vars["id"], variant=variant, event="call", made_for=request.node.name, peak=0)
                return "ok" if request.node.name == vars["id"] else "made for another item"
            return target

        @pytest.fixture
        def per_item(request):
            return made_for(request)

        @pytest.fixture(scope="class")
        def per_class(request):  # eval items have no class: pytest makes a value for each
            return made_for(request)
    """)
    pytester.makefile(".eval.yaml", conc=eval_file(target="fixture:shared", sleep=0.01))
    pytester.runpytest("--prompt-suite", "core", "--prompt-concurrency", "4").assert_outcomes(passed=24)
    assert max(c["peak"] for c in calls()) == 4  # fetched ahead: four under way at once
    (pytester.path / "calls.jsonl").unlink()

    monkeypatch.setenv("MEET", "0")
    for fixture in ("per_item", "per_class"):
        (pytester.path / "calls.jsonl").unlink(missing_ok=True)
        pytester.makefile(".eval.yaml", conc=eval_file(target=f"fixture:{fixture}"))
        pytester.runpytest("--prompt-suite", "core", "--prompt-concurrency", "4").assert_outcomes(passed=24)
        made = calls()
        assert len(made) == 24 and all(c["made_for"] == c["case"] for c in made), fixture


def test_an_item_waits_for_its_own_runs_before_its_fixture_ends(pytester, calls):
    """Run 1 fails at once while runs 2 and 3, started with it, are still under way: the item ends (and its
    function-scoped fixture is torn down) only after them."""
    pytester.makeconftest("""
        import time
        import pytest
        import calls

        @pytest.fixture
        def client():
            state = {"open": True, "n": 0}

            def target(vars, variant):
                state["n"] += 1
                if state["n"] == 1:
                    raise RuntimeError("first run fails")
                time.sleep(0.3)
                calls.log(case=vars["id"], variant=variant, event="call", open=state["open"], peak=0)
                return "ok"

            yield target
            state["open"] = False
    """)
    pytester.makefile(".eval.yaml", conc=eval_file(target="fixture:client", cases=1, variants=("a",), repeat=3))
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-concurrency", "4")
    result.assert_outcomes(errors=1)
    made = calls()
    assert made and all(c["open"] for c in made)


@pytest.mark.parametrize("raised", ["SystemExit(3)", "KeyboardInterrupt()"])
def test_an_async_target_raising_systemexit_or_ctrl_c_does_not_hang_the_session(pytester, calls, raised):
    pytester.makepyfile(stopper=f"""
        import asyncio

        async def target(vars):
            await asyncio.sleep(0)
            if vars["id"] == "c1":
                raise {raised}
            return "ok"
    """)
    pytester.makefile(".eval.yaml", conc=eval_file(target="stopper:target", cases=4, variants=("a",)))
    result = pytester.runpytest_subprocess("--prompt-suite", "core", "--prompt-concurrency", "4", timeout=120)
    if raised.startswith("SystemExit"):
        result.assert_outcomes(passed=3, errors=1)  # as a sync target's SystemExit: that case errors
        result.stdout.fnmatch_lines(["*SystemExit*"])
    else:
        assert result.ret == pytest.ExitCode.INTERRUPTED
        result.stdout.fnmatch_lines(["*KeyboardInterrupt*"])


def test_items_a_mark_may_skip_are_not_fetched_ahead(pytester, calls):
    pytester.makeconftest("""
        import pytest

        def pytest_collection_modifyitems(items):
            for item in items:
                if item.name == "c3":
                    item.add_marker(pytest.mark.skip(reason="not today"))
                if item.name == "c5":
                    item.add_marker(pytest.mark.skipif(True, reason="never"))
                if item.name == "c7":
                    item.add_marker(pytest.mark.xfail(run=False, reason="known"))
    """)
    pytester.makefile(".eval.yaml", conc=eval_file(cases=12, sleep=0.01))
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-concurrency", "4")
    result.assert_outcomes(passed=18, skipped=4, xfailed=2)
    assert sorted({c["case"] for c in calls()}) == sorted(f"c{i}" for i in range(12) if i not in (3, 5, 7))


@pytest.mark.parametrize("dist", ["load", "loadgroup", "loadscope", "loadfile", "worksteal"])
def test_under_n2_every_call_is_made_once(pytester, calls, dist):
    for name in ("one", "two"):  # two files, so that --dist loadfile has one for each worker
        pytester.makefile(".eval.yaml", **{name: eval_file(name, cases=30, variants=("a", "b", "c"), repeat=2,
                                                           wrong={"c7"}, sleep=0.005)})
    result = pytester.runpytest_subprocess("--prompt-suite", "core", "-n", "2", "--dist", dist, "-v")
    result.assert_outcomes(passed=174, failed=6)
    made = calls()
    counts = Counter((c["eval"], c["variant"], c["case"]) for c in made)
    assert counts == {(e, v, f"c{i}"): 2 for e in ("one", "two") for v in "abc" for i in range(30)}
    assert len({c["pid"] for c in made}) == 2
    # Workers that did not get whole eval variants fetched one item ahead, and the summary says what to do.
    # loadgroup groups only where xdist can append its group to node ids (not with pytest 9.2: pytest-xdist #1386).
    grouped = dist in ("loadscope", "loadfile") or (dist == "loadgroup" and "@one:a" in result.stdout.str())
    hint = "*under --dist * the workers did not get whole eval variants*--dist loadscope*"
    if grouped:
        result.stdout.no_fnmatch_line(hint)
    else:
        result.stdout.fnmatch_lines([hint])


def test_x_stops_the_calls_fetched_ahead(pytester, calls):
    # c0-c2 answer at once (c2 wrongly); the calls after them take 3 s (a margin for a loaded machine), so when
    # -x stops the session four of them (the pool's size) are under way and the rest of the 2 x 4 - 1 items
    # fetched ahead are queued.
    sleeps = {f"c{i}": 0 for i in range(3)}
    pytester.makefile(".eval.yaml", conc=eval_file(cases=40, variants=("a",), wrong={"c2"}, sleep=3, sleeps=sleeps))
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-concurrency", "4", "-x")
    result.assert_outcomes(passed=2, failed=1)
    made = calls()
    assert {"c0", "c1", "c2"} <= {c["case"] for c in made}, made
    assert len(made) <= 3 + 4, made  # the queued calls were cancelled, the four under way finished
    assert promptgate_threads() == []


@pytest.mark.parametrize("target", ["calls:answer", "calls:async_answer"])
def test_ctrl_c_cancels_what_is_under_way_and_leaves_no_thread(pytester, calls, target):
    pytester.makeconftest("""
        import pytest

        @pytest.fixture(autouse=True)
        def ctrl_c_at_c3(request):
            if request.node.name == "c3":
                raise KeyboardInterrupt
    """)
    # c0-c2 answer at once; the calls fetched ahead of them take long: an async one 60 s (it is cancelled), a
    # sync one 3 s (it cannot be: the session waits for it; 3 s is a margin for a loaded machine).
    slow = 60 if "async" in target else 3
    sleeps = {f"c{i}": 0 for i in range(3)}
    pytester.makefile(".eval.yaml", conc=eval_file(target=target, cases=40, variants=("a",), sleep=slow, sleeps=sleeps))
    recorder = pytester.inline_run("--prompt-suite", "core", "--prompt-concurrency", "4", no_reraise_ctrlc=True)
    assert recorder.ret == pytest.ExitCode.INTERRUPTED
    passed, skipped, failed = recorder.listoutcomes()
    assert (len(passed), failed) == (3, []), (passed, failed)
    made = calls()
    assert {c["case"] for c in made} >= {"c0", "c1", "c2"}, made
    assert len(made) <= 3 + 4, made  # the queued calls were cancelled; at most the pool's four were under way
    if "async" in target:
        # The async calls under way were cancelled, not waited for: none of the slow ones finished.
        assert {c["case"] for c in made} == {"c0", "c1", "c2"}
        assert calls("cancelled")
    assert promptgate_threads() == []
