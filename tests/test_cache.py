"""The response cache (``--prompt-cache``): target calls counted in every mode, entries read back from disk.

Targets append one line per call to ``calls.txt`` next to them, which counts calls
across pytester runs and across processes. ``PROMPTGATE_TEST_NO_CALLS`` makes them
raise, which proves a run made no call at all.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_promptgate.schema import Provider
from pytest_promptgate.targets import CallableTarget, EchoTarget, TargetRequest, TargetResult
from pytest_promptgate.targets.cache import ResponseCache, cache_key, digest
from pytest_promptgate.targets.provider import ProviderTarget

COUNTED = '''
import json, os, threading

HERE = os.path.dirname(os.path.abspath(__file__))
LOCK = threading.Lock()  # calls run on several threads (--prompt-concurrency)


def _count(what):
    """Record a call; return how many calls there have been (across runs and processes)."""
    if os.environ.get("PROMPTGATE_TEST_NO_CALLS"):
        raise RuntimeError("the target was called")
    with LOCK:
        with open(os.path.join(HERE, "calls.txt"), "a") as f:
            f.write(json.dumps(what) + "\\n")
        with open(os.path.join(HERE, "calls.txt")) as f:
            return sum(1 for _ in f)


def shout(prompt):
    n = _count(prompt)
    return {"output": prompt.upper(), "input_tokens": 100, "output_tokens": 10, "model": "gpt-4o-mini",
            "metadata": {"call": n}}


def numbered(prompt):
    return f"{prompt} #{_count(prompt)}"


def by_vars(prompt, vars):
    _count(prompt)
    return f"{prompt.upper()} ({vars['tone']})"


def judge(prompt):
    _count("judge")
    return '{"label": "polite"}'
'''

EVAL = """
eval: t
suites: [core]
prompts: {p: {template: "say {{w}}"}}
target: counted:shout
graders: [{type: contains, value: SAY}]
cases:
"""

NO_CALLS = "PROMPTGATE_TEST_NO_CALLS"
CACHE = Path(".promptgate", "cache")


@pytest.fixture
def counted(pytester: pytest.Pytester, project):
    """The ``counted`` target module; returns the number of target calls so far."""
    pytester.makepyfile(counted=COUNTED)
    calls = pytester.path / "calls.txt"
    return lambda: len(calls.read_text().splitlines()) if calls.exists() else 0


def cases(*words: str) -> str:
    return "".join(f"  - {{id: c{i}, vars: {{w: {w}}}}}\n" for i, w in enumerate(words))


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("--prompt-suite", "core", *args)


def entries(directory: Path) -> dict[Path, dict]:
    """Every entry file under ``directory``, parsed; each must be whole, stable JSON."""
    found = {}
    for path in sorted(directory.glob("*/*.json")):
        text = path.read_text(encoding="utf-8")
        entry = json.loads(text)
        assert text == json.dumps(entry, sort_keys=True, indent=2, ensure_ascii=False) + "\n", path
        assert path.name == digest(entry["key"]) + ".json" and path.parent.name == path.name[:2]
        found[path] = entry
    return found


def outputs(results: list[dict]) -> dict[str, list]:
    """Per case, each run's output, latency, tokens, cost and model."""
    return {
        r["case_id"]: [(run["output"], run["latency_ms"], run["input_tokens"], run["output_tokens"], run["cost_usd"],
                        run["model"]) for run in r["runs"]]
        for r in results
    }


# ----------------------------------------------------------------------------- modes


def test_off_calls_every_time_and_writes_nothing(counted, project, pytester):
    project("t.eval.yaml", EVAL + cases("hi", "yo"))
    run(pytester).assert_outcomes(passed=2)
    run(pytester, "--prompt-cache", "off").assert_outcomes(passed=2)
    assert counted() == 4
    assert not (pytester.path / ".promptgate").exists()


def test_record_calls_every_time_and_overwrites(counted, project, pytester):
    project("t.eval.yaml", EVAL + cases("hi", "yo"))
    run(pytester, "--prompt-cache", "record").assert_outcomes(passed=2)
    assert counted() == 2
    run(pytester, "--prompt-cache", "record").assert_outcomes(passed=2)
    assert counted() == 4
    recorded = entries(pytester.path / CACHE)
    assert len(recorded) == 2
    assert sorted(e["response"]["metadata"]["call"] for e in recorded.values()) == [3, 4]  # the second run's
    entry = next(e for e in recorded.values() if e["key"]["prompts"] == {"p": "say hi"})
    assert entry["key"] == {"format": 1, "target": "counted:shout", "prompts": {"p": "say hi"}, "params": {}, "run": 1}
    response = entry["response"]
    assert (response["output"], response["input_tokens"], response["output_tokens"], response["model"]) == (
        "SAY HI", 100, 10, "gpt-4o-mini")
    assert response["cost_usd"] is None  # the target reported none: priced by the table when read
    assert isinstance(response["latency_ms"], float)
    # Only leftovers of interrupted writes are ignored: the entries are meant to be committed.
    assert (pytester.path / CACHE / ".gitignore").read_text().splitlines()[-1] == ".*.tmp"


def test_use_calls_once_then_reports_the_recorded_responses(counted, project, pytester, recorded):
    project("t.eval.yaml", EVAL + cases("hi", "yo"))
    run(pytester, "--prompt-cache", "use").assert_outcomes(passed=2)
    assert counted() == 2
    first = outputs(recorded())
    run(pytester, "--prompt-cache", "use").assert_outcomes(passed=2)
    assert counted() == 2
    # The same outputs, tokens, model and cost (priced again: gpt-4o-mini 0.15/0.60 USD per 1M tokens),
    # and the original call's latency, not the time it took to read the entry.
    assert outputs(recorded()) == first
    assert first["c0"][0][4] == pytest.approx((100 * 0.15 + 10 * 0.60) / 1e6)


def test_replay_never_calls_the_target(counted, project, pytester, monkeypatch):
    project("t.eval.yaml", EVAL + cases("hi", "yo"))
    run(pytester, "--prompt-cache", "record").assert_outcomes(passed=2)
    monkeypatch.setenv(NO_CALLS, "1")
    result = run(pytester, "--prompt-cache", "replay")
    result.assert_outcomes(passed=2)
    assert result.ret == 0
    assert counted() == 2


def test_replay_makes_a_missing_entry_an_error_case_that_says_how_to_record_it(counted, project, pytester, monkeypatch):
    project("t.eval.yaml", "threshold: 0.5\n" + EVAL + cases("hi"))
    run(pytester, "--prompt-cache", "record").assert_outcomes(passed=1)
    project("t.eval.yaml", "threshold: 0.5\n" + EVAL + cases("hi", "new"))
    monkeypatch.setenv(NO_CALLS, "1")
    result = run(pytester, "--prompt-cache", "replay")
    result.assert_outcomes(passed=1, errors=1)
    missing = pytester.path / CACHE / digest({"format": 1, "target": "counted:shout", "prompts": {"p": "say new"},
                                              "params": {}, "run": 1})[:2]
    result.stdout.fnmatch_lines([
        "*ERROR at setup of t::default::c1*",
        "no recorded response for target counted:shout (--prompt-cache replay never calls the target)",
        f"  missing: .promptgate/cache/{missing.name}/*.json (key: the target, its params, the rendered prompts, run 1)",
        "  record it with: pytest --prompt-cache record ...",
    ])
    monkeypatch.delenv(NO_CALLS)
    run(pytester, "--prompt-cache", "use").assert_outcomes(passed=2)  # use records only what is missing
    assert counted() == 2


def test_repeats_are_separate_entries(counted, project, pytester, recorded):
    project("t.eval.yaml", EVAL.replace("counted:shout", "counted:numbered").replace("SAY", "say") + cases("hi")
            + "repeat: 3\n")
    run(pytester, "--prompt-cache", "use").assert_outcomes(passed=1)
    assert counted() == 3
    first = [r["output"] for r in recorded()[0]["runs"]]
    assert sorted(first) == ["say hi #1", "say hi #2", "say hi #3"]  # three independent samples (calls run at once)
    assert sorted(e["key"]["run"] for e in entries(pytester.path / CACHE).values()) == [1, 2, 3]
    run(pytester, "--prompt-cache", "use").assert_outcomes(passed=1)
    assert counted() == 3
    assert [r["output"] for r in recorded()[0]["runs"]] == first  # each run gets its own recorded sample back


def test_the_key_is_the_inputs_not_the_case(counted, project, pytester):
    """Cases with the same inputs share an entry; vars outside the prompt count only for a target that takes them."""
    project("t.eval.yaml", """
        eval: t
        suites: [core]
        prompts: {p: {template: "say {{w}}"}}
        target: counted:shout
        variants:
          - name: plain
          - {name: warm, params: {temperature: 0.7}}
          - {name: toned, target: "counted:by_vars"}
        graders: [{type: contains, value: SAY}]
        cases:
          - {id: a, vars: {w: hi, tone: calm}}
          - {id: b, vars: {w: hi, tone: angry}}
    """)
    run(pytester, "--prompt-cache", "use").assert_outcomes(passed=6)
    # plain: one entry for a and b; warm: its params make another; toned: its target sees vars, so two.
    assert counted() == 4
    keys = [e["key"] for e in entries(pytester.path / CACHE).values()]
    assert sorted((k["target"], json.dumps(k["params"]), k.get("vars", {}).get("tone")) for k in keys) == [
        ("counted:by_vars", "{}", "angry"), ("counted:by_vars", "{}", "calm"),
        ("counted:shout", '{"temperature": 0.7}', None), ("counted:shout", "{}", None),
    ]
    run(pytester, "--prompt-cache", "use").assert_outcomes(passed=6)
    assert counted() == 4


def test_judge_calls_are_cached_too(counted, project, pytester, monkeypatch):
    project("t.eval.yaml", EVAL.replace("graders: [{type: contains, value: SAY}]", "") + cases("hi") + """
graders:
  - type: label_model
    judge: "counted:judge"
    prompt: "Polite? {{output}}"
    labels: [polite, rude]
    passing_labels: [polite]
""")
    run(pytester, "--prompt-cache", "record").assert_outcomes(passed=1)
    assert counted() == 2  # the target and its judge
    assert [e["key"].get("run") for e in entries(pytester.path / CACHE).values()].count(None) == 1  # the judge's
    monkeypatch.setenv(NO_CALLS, "1")
    run(pytester, "--prompt-cache", "replay").assert_outcomes(passed=1)


# ----------------------------------------------------------------------------- damage and concurrency


def test_a_truncated_entry_is_a_miss_in_use_and_an_error_in_replay(counted, project, pytester, monkeypatch):
    project("t.eval.yaml", EVAL + cases("hi"))
    run(pytester, "--prompt-cache", "record").assert_outcomes(passed=1)
    (path,) = entries(pytester.path / CACHE)
    whole = path.read_text()
    path.write_text(whole[: len(whole) // 2])  # what a torn write would leave, were writes not atomic

    monkeypatch.setenv(NO_CALLS, "1")
    result = run(pytester, "--prompt-cache", "replay")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "unusable recorded response for target counted:shout (--prompt-cache replay never calls the target)",
        f"  {path.relative_to(pytester.path)} is not JSON (cut short by a crash or an edit?): *",
        "  record it again with: pytest --prompt-cache record ...",
    ])

    monkeypatch.delenv(NO_CALLS)
    run(pytester, "--prompt-cache", "use").assert_outcomes(passed=1)
    assert counted() == 2  # called again, and the entry written whole
    assert entries(pytester.path / CACHE)[path]["response"]["output"] == "SAY HI"


def test_an_entry_that_cannot_be_written_is_an_error_case(counted, project, pytester):
    project("t.eval.yaml", EVAL + cases("hi"))
    (pytester.path / "blocked").write_text("a file where the cache directory should be")
    result = run(pytester, "--prompt-cache", "record", "--prompt-cache-dir", "blocked")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["could not write the response cache entry blocked/*/*.json: *"])


BARRIER = """
import os, time

def pytest_collection_finish(session):
    # Both sessions get here before either calls a target, so their writes overlap.
    open(f"ready-{os.getpid()}", "w").close()
    deadline = time.monotonic() + 60
    while len([n for n in os.listdir(".") if n.startswith("ready-")]) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
"""


def test_two_sessions_writing_the_cache_at_once_leave_every_entry_whole(counted, project, pytester, monkeypatch):
    n = 150
    project("t.eval.yaml", EVAL + cases(*(f"w{i}" for i in range(n))))
    pytester.makeconftest(BARRIER)
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--prompt-suite", "core",
               "--prompt-cache", "record"]
    sessions = [pytester.popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                for _ in range(2)]
    for session in sessions:
        out, _ = session.communicate(timeout=300)
        assert session.returncode == 0, out.decode()
    assert counted() == 2 * n

    recorded = entries(pytester.path / CACHE)  # each one whole and parseable
    assert len(recorded) == n
    assert sorted(e["response"]["output"] for e in recorded.values()) == sorted(f"SAY W{i}" for i in range(n))
    assert not [p for p in (pytester.path / CACHE).rglob("*") if p.name.endswith(".tmp")]
    monkeypatch.setenv(NO_CALLS, "1")
    pytester.makeconftest("")
    run(pytester, "--prompt-cache", "replay").assert_outcomes(passed=n)


STATE = """
import json
from pytest_promptgate.state import get_state

def pytest_sessionfinish(session):
    if not hasattr(session.config, "workerinput"):
        with open("evals.json", "w") as f:
            json.dump(get_state(session.config).evals, f)
"""


def test_xdist_workers_share_entries_and_the_controller_knows_the_mode(counted, project, pytester, monkeypatch):
    pytest.importorskip("xdist")
    project("t.eval.yaml", EVAL + cases(*(f"w{i // 2}" for i in range(40))))  # every input twice
    pytester.makeconftest(STATE)
    result = pytester.runpytest_subprocess("--prompt-suite", "core", "--prompt-cache", "use", "-n", "2")
    result.assert_outcomes(passed=40)
    assert 20 <= counted() <= 40  # a pair may miss at once on both workers; never more than once per case
    assert len(entries(pytester.path / CACHE)) == 20
    monkeypatch.setenv(NO_CALLS, "1")
    result = pytester.runpytest_subprocess("--prompt-suite", "core", "--prompt-cache", "replay", "-n", "2")
    result.assert_outcomes(passed=40)
    assert json.loads((pytester.path / "evals.json").read_text())["t"]["cache"] == "replay"


# ----------------------------------------------------------------------------- a provider, without its key


SECRET = "sk-test-CACHE-SECRET-7"


def test_provider_recorded_then_replayed_without_the_key(project, pytester, recorded, openai_server, monkeypatch):
    monkeypatch.setenv("PROMPTGATE_TEST_KEY", SECRET)
    project("chat.eval.yaml", f"""
        eval: chat
        suites: [core]
        prompts:
          ask:
            messages:
              - {{role: system, content: "Repeat the user."}}
              - {{role: user, content: "{{{{message}}}}"}}
        target:
          provider: {{base_url: {openai_server.base_url}, model: gpt-4o-mini, api_key_env: PROMPTGATE_TEST_KEY,
                     params: {{temperature: 0}}, timeout: 2, retries: 0}}
        graders: [{{type: equals, value: "{{{{message}}}}"}}]
        cases:
          - {{id: a, vars: {{message: hello}}}}
          - {{id: b, vars: {{message: bonjour}}}}
    """)
    run(pytester, "--prompt-cache", "record").assert_outcomes(passed=2)
    assert openai_server.count == 2
    first = outputs(recorded())
    recorded_entries = entries(pytester.path / CACHE)
    assert {e["key"]["target"] for e in recorded_entries.values()} == {f"provider:{openai_server.base_url}#gpt-4o-mini"}
    assert {json.dumps(e["key"]["params"]) for e in recorded_entries.values()} == {'{"temperature": 0}'}
    text = "".join(p.read_text() for p in recorded_entries)
    assert SECRET not in text and "authorization" not in text.lower() and "PROMPTGATE_TEST_KEY" not in text

    monkeypatch.delenv("PROMPTGATE_TEST_KEY")  # CI without the key
    result = run(pytester, "--prompt-cache", "replay")
    result.assert_outcomes(passed=2)
    assert openai_server.count == 2
    assert outputs(recorded()) == first  # outputs, tokens, cost, model and latency as recorded


# ----------------------------------------------------------------------------- settings


def test_cache_dir_from_the_option_and_the_ini_and_mode_from_the_ini(counted, project, pytester, monkeypatch):
    project("t.eval.yaml", EVAL + cases("hi"))
    pytester.makeini("[pytest]\npromptgate_cache = use\npromptgate_cache_dir = responses\n")
    (pytester.path / "sub").mkdir()
    monkeypatch.chdir(pytester.path / "sub")
    pytester.runpytest("--prompt-suite", "core", str(pytester.path)).assert_outcomes(passed=1)
    assert len(entries(pytester.path / "responses")) == 1  # relative to the ini file
    pytester.runpytest("--prompt-suite", "core", str(pytester.path)).assert_outcomes(passed=1)
    assert counted() == 1
    pytester.runpytest("--prompt-suite", "core", "--prompt-cache-dir", "mine", str(pytester.path)).assert_outcomes(passed=1)
    assert len(entries(pytester.path / "sub" / "mine")) == 1  # relative to where pytest was started
    assert counted() == 2


def test_an_unknown_mode_is_a_usage_error(project, pytester):
    project("t.eval.yaml", EVAL + cases("hi"))
    result = run(pytester, "--prompt-cache", "sometimes")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*argument --prompt-cache: invalid choice: 'sometimes' (choose from 'off', 'use', 'record', 'replay')"])
    pytester.makeini("[pytest]\npromptgate_cache = sometimes\n")
    result = run(pytester)
    assert result.ret == 4
    result.stderr.fnmatch_lines(["ERROR: promptgate_cache: expected one of off, use, record, replay; got 'sometimes'"])


# ----------------------------------------------------------------------------- keys (no pytest run)


def make_request(prompts: dict, **fields) -> TargetRequest:
    values = {"prompt": None, "vars": {}, "params": {}, "variant": "default", **fields}
    return TargetRequest(prompts=prompts, **values)


def test_the_digest_of_a_key_does_not_change_between_releases():
    """Committed caches stay valid only while keys hash the same: this pins the canonical form."""
    key = {"format": 1, "target": "app:route", "prompts": {"router": "Classify: héllo"}, "params": {"temperature": 0},
           "run": 1}
    canonical = '{"format":1,"params":{"temperature":0},"prompts":{"router":"Classify: héllo"},"run":1,"target":"app:route"}'
    assert digest(key) == hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    assert digest(key) == "c3b6a26fa0132b9f83eb11ab71e0c2f2e983a38d4ed0442004f372a3f836195c"


def test_a_key_has_what_the_target_can_see():
    ask = make_request({"p": "hi"}, vars={"w": "hi", "tone": "calm"}, params={"temperature": 0}, variant="warm")

    def plain(prompt): ...
    def seeing(prompt, vars, variant): ...
    def everything(**kwargs): ...

    assert cache_key(CallableTarget(plain, "m:plain", ("p",)), ask, 2) == {
        "format": 1, "target": "m:plain", "prompts": {"p": "hi"}, "params": {"temperature": 0}, "run": 2}
    for fn in (seeing, everything):
        key = cache_key(CallableTarget(fn, "m:f", ("p",)), ask, 1)
        assert (key["vars"], key["variant"]) == ({"w": "hi", "tone": "calm"}, "warm")
    assert "run" not in cache_key(EchoTarget(), ask, None)  # a judge's call

    provider = ProviderTarget(Provider(base_url="http://127.0.0.1:1/v1", model="m", params={"top_p": 0.5},
                                       api_key_env="SOME_KEY"), {"temperature": 0, "model": "m2"})
    key = cache_key(provider, ask, 1)
    assert (key["target"], key["params"]) == ("provider:http://127.0.0.1:1/v1#m2", {"top_p": 0.5, "temperature": 0})
    assert "vars" not in key and "SOME_KEY" not in json.dumps(key)


def test_an_entry_for_another_key_is_a_miss(tmp_path):
    cache = ResponseCache(tmp_path, "use")
    target, ask = EchoTarget(), make_request({"p": "hi"})
    cache.write(target, ask, 1, TargetResult(output="hi", latency_ms=12.5))
    assert cache.read(target, ask, 1).latency_ms == 12.5
    other = make_request({"p": "other"})
    cache.path(cache_key(target, other, 1)).parent.mkdir(parents=True, exist_ok=True)
    cache.path(cache_key(target, ask, 1)).rename(cache.path(cache_key(target, other, 1)))  # a misplaced file
    assert cache.read(target, other, 1) is None
