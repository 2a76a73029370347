"""The pytest plugin: options, ini keys, collection and wiring.

This module is loaded in every pytest run of an environment that has the plugin
installed, evals or not, so it imports nothing heavy: pydantic, YAML, graders
and targets are imported inside the hooks that need them, and only once an eval
file is actually collected.
"""

from __future__ import annotations

import atexit
import gc
import os
from collections.abc import Generator
from typing import Any

import pytest

from .state import (
    DEFAULT_CONCURRENCY, DIST_KEY, NEXT_ITEM, PINNED_KEY, REPORT_ATTR, STATE_KEY, WORKEROUTPUT_KEY, State,
    budget_option, candidates_option, concurrency, concurrency_option, correction_option, fail_on_option, get_state,
    quarantine, rounds_option, significance_option, switched_off, trend_limit_option,
)
from .quarantine import flaky_history_option

#: ``PROMPTGATE_FAST_EXIT``: ``off`` (``false``, ``0``, ``no``) keeps the interpreter's last garbage collection.
FAST_EXIT_ENV = "PROMPTGATE_FAST_EXIT"

#: Eval file arguments that are symbolic links to nothing (a loop, a missing file), kept out of pytest's argument list.
_UNREADABLE_ARGS = pytest.StashKey["list[str]"]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Add ``pytest_promptgate_register_graders`` (see :mod:`pytest_promptgate.hookspecs`)."""
    from . import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Options and ini keys; see docs/options.md."""
    group = parser.getgroup("promptgate", "prompt evals (pytest-promptgate)")
    group.addoption(
        "--prompt-suite",
        action="append",
        default=[],
        metavar="NAME",
        help="run the evals of suite NAME (repeat the option or separate names with commas); "
        "'all' or 'full' runs every eval. Default: ini promptgate_suite, else evals are not collected.",
    )
    group.addoption(
        "--prompt-strict",
        action="store_true",
        default=False,
        help="fail the session on any failed or errored case, not only when an eval falls below its threshold. "
        "Default: off.",
    )
    group.addoption(
        "--prompt-concurrency",
        metavar="N",
        type=concurrency_option,
        default=None,
        help="target calls under way at once in each process: the outputs of upcoming items are fetched while "
        "earlier ones are graded and reported; 1 calls each target in its item's turn. Default: ini "
        "promptgate_concurrency, else 8.",
    )
    group.addoption(
        "--prompt-cache",
        choices=("off", "use", "record", "replay"),
        default=None,
        help="response cache of target calls (docs/cache.md): off; use (recorded responses, calling and recording "
        "what is missing); record (call every target, record every response); replay (recorded responses only, "
        "never call a target; a missing one is an error case). Default: ini promptgate_cache, else off.",
    )
    group.addoption(
        "--prompt-cache-dir",
        metavar="DIR",
        default=None,
        help="where the response cache is (relative to where pytest was started). "
        "Default: ini promptgate_cache_dir, else .promptgate/cache under the rootdir.",
    )
    group.addoption(
        "--prompt-report",
        metavar="PATH",
        default=None,
        help="write the session's eval results as JSON to PATH (summary per eval and variant, every case). Default: none.",
    )
    group.addoption(
        "--prompt-report-md",
        metavar="PATH",
        default=None,
        help="write the summary as Markdown to PATH, and append it to $GITHUB_STEP_SUMMARY when that is set. Default: none.",
    )
    group.addoption(
        "--prompt-report-html",
        metavar="PATH",
        default=None,
        help="write one self-contained HTML page to PATH (verdict cards, pass-rate chart, failure modes, every case "
        "in a table that filters; docs/html-report.md). Default: ini promptgate_report_html, else none.",
    )
    group.addoption(
        "--prompt-label-template",
        metavar="DIR",
        default=None,
        help="write the session's failed and flaky outputs, ready to label, to DIR/EVAL.labels.jsonl (new rows "
        "appended; people's ratings kept; docs/labels.md). Default: none.",
    )
    group.addoption(
        "--prompt-export",
        metavar="PATH",
        default=None,
        help="write the session's annotated dataset to PATH as JSON lines, one per output: inputs, output, expected, "
        "grader results, failure modes, labels (docs/datasets.md). Default: none.",
    )
    group.addoption(
        "--prompt-tracking-uri",
        metavar="URI",
        default=None,
        help="MLflow tracking URI for eval runs and baselines. "
        "Default: ini promptgate_tracking_uri, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the current directory.",
    )
    group.addoption(
        "--prompt-no-tracking",
        action="store_true",
        default=False,
        help="log nothing to MLflow and compare with no baseline (also: ini promptgate_tracking = false, "
        "or PROMPTGATE_TRACKING=off). Default: tracking on.",
    )
    group.addoption(
        "--prompt-require-tracking",
        action="store_true",
        default=False,
        help="fail the session when MLflow tracking cannot be reached (checked before any eval runs). "
        "Default: off (runs are kept under .promptgate/ and sent later).",
    )
    group.addoption(
        "--prompt-sync",
        action="store_true",
        default=False,
        help="send the runs kept under .promptgate/ while tracking was down, then exit without running tests.",
    )
    group.addoption(
        "--prompt-trend",
        action="store_true",
        default=False,
        help="print each eval's pass-rate history from MLflow (latest pass rate, direction, one row per run, newest last), "
        "then exit without running tests. Filter with --prompt-suite and --prompt-trend-eval.",
    )
    group.addoption(
        "--prompt-compare",
        nargs="+",
        metavar="RUN_ID",
        default=None,
        help="compare two recorded runs of one eval and variant, RUN_A (before) and RUN_B (after; default: the newest "
        "other complete run of that eval and variant): pass rates, delta, paired p-value, the cases that flipped; "
        "with --prompt-report-html and --prompt-report also as HTML and JSON; then exit without running tests. "
        "Default: off.",
    )
    group.addoption(
        "--prompt-trend-limit",
        metavar="N",
        type=trend_limit_option,
        default=10,
        help="--prompt-trend shows the N most recent runs of each eval. Default: 10.",
    )
    group.addoption(
        "--prompt-trend-format",
        choices=("table", "json"),
        default="table",
        help="--prompt-trend prints a table or JSON. Default: table.",
    )
    group.addoption(
        "--prompt-trend-eval",
        action="append",
        default=[],
        metavar="NAME",
        help="--prompt-trend shows eval NAME (repeat the option or separate names with commas). Default: every eval.",
    )
    group.addoption(
        "--prompt-baseline-branch",
        metavar="BRANCH",
        default=None,
        help="compare only with baseline runs made on git branch BRANCH. Default: ini promptgate_baseline_branch, else any branch.",
    )
    group.addoption(
        "--prompt-baseline",
        action="append",
        default=[],
        metavar="RUN_ID",
        help="compare the eval of MLflow run RUN_ID (every variant of it) with that run (repeat for several evals). "
        "Default: the latest complete run of each eval and variant.",
    )
    group.addoption(
        "--prompt-significance",
        metavar="ALPHA",
        type=significance_option,
        default=None,
        help="WARNING and IMPROVED need p < ALPHA (for example 0.05). Default: ini promptgate_significance, else none.",
    )
    group.addoption(
        "--prompt-correction",
        metavar="METHOD",
        type=correction_option,
        default=None,
        help="adjust the p-values of the session's comparisons together: holm (Holm-Bonferroni), bh "
        "(Benjamini-Hochberg) or none; --prompt-significance decides on the adjusted ones. "
        "Default: ini promptgate_correction, else holm.",
    )
    group.addoption(
        "--prompt-fail-on",
        metavar="VERDICTS",
        type=fail_on_option,
        default=None,
        help="verdicts that fail the session, separated by commas: regression, warning, improved, or none. "
        "Default: ini promptgate_fail_on, else regression.",
    )
    group.addoption(
        "--prompt-flaky-history",
        metavar="K/M",
        type=flaky_history_option,
        default=None,
        help="name the cases whose outcome flipped at least K times in the last M complete runs of their eval and "
        "variant (this one included; M up to 20), or off. Default: ini promptgate_flaky_history, else 3/5.",
    )
    group.addoption(
        "--prompt-junit-tolerated",
        choices=("fail", "skip"),
        default=None,
        help="how the JUnit XML (--junitxml) shows the failed cases that their eval's threshold tolerates: "
        "fail, or skip with the reason (a CI dashboard then turns green exactly when pytest exits 0). "
        "Default: ini promptgate_junit_tolerated, else fail.",
    )
    group.addoption(
        "--promote",
        metavar="NAME",
        default=None,
        help="run the evals that use registry prompt NAME with the candidate version pinned, and move the alias "
        "when every one of them is allowed (exit 0 promoted, 1 blocked). Runs no other tests.",
    )
    group.addoption("--promote-from", metavar="ALIAS", default="candidate",
                    help="--promote takes the candidate from this alias. Default: candidate.")
    group.addoption("--promote-version", metavar="N", type=int, default=None,
                    help="--promote takes version N as the candidate instead of --promote-from. Default: none.")
    group.addoption("--promote-to", metavar="ALIAS", default="production",
                    help="the alias --promote moves. Default: production.")
    group.addoption("--promote-actor", metavar="WHO", default=None,
                    help="who promotes or rolls back, for the audit record. Default: the CI's actor, else the local user.")
    group.addoption("--promote-force", action="store_true", default=False,
                    help="promote even when blocked; the audit record says audit.forced=true. Default: off.")
    group.addoption(
        "--rollback",
        metavar="NAME",
        default=None,
        help="move the alias of registry prompt NAME back to the version before its last promotion, then exit "
        "without running tests; needs --rollback-reason.",
    )
    group.addoption("--rollback-reason", metavar="TEXT", default=None, help="why --rollback: recorded with it. Required.")
    group.addoption("--rollback-alias", metavar="ALIAS", default="production",
                    help="the alias --rollback moves. Default: production.")
    group.addoption("--prompt-register-best", action="store_true", default=False,
                    help="after the session, register the best variant's prompt as a new registry version with alias "
                    "candidate (a lead that is not significant needs --promote-force). Default: off.")
    group.addoption("--prompt-apply-best", action="store_true", default=False,
                    help="after the session, write the best variant's prompt into the eval's prompt file or inline "
                    "template, showing the diff (a lead that is not significant needs --promote-force). Default: off.")
    group.addoption("--prompt-dry-run", action="store_true", default=False,
                    help="with --prompt-apply-best or --prompt-optimize: show the diff, change no file and register "
                    "nothing. Default: off.")
    group.addoption("--prompt-import", metavar="SRC", default=None,
                    help="write *.eval.yaml files from SRC (an openai/evals registry file, a promptfoo config or OpenAI "
                    "grader configs) into --prompt-import-to, then exit without running tests. Default: off.")
    group.addoption("--prompt-import-to", metavar="DIR", default=None,
                    help="--prompt-import writes its eval files into DIR (created if missing; no file is replaced). "
                    "Default: none (required with --prompt-import).")
    group.addoption("--prompt-optimize", metavar="NAME", default=None,
                    help="after the evals that use prompt NAME ran, propose candidates with the optimizer model, "
                    "measure them on a training split, prove the best on a held-out split, and register the winner "
                    "at alias candidate or write it back (docs/optimize.md; exit 0 winner, 1 none). Default: none.")
    group.addoption("--optimize-candidates", metavar="N", type=candidates_option, default=4,
                    help="--prompt-optimize asks for N candidates per round. Default: 4.")
    group.addoption("--optimize-rounds", metavar="R", type=rounds_option, default=1,
                    help="--prompt-optimize runs R rounds, each fed with the failures the last one left. Default: 1.")
    group.addoption("--optimize-goal", choices=("accuracy", "cost", "latency", "conciseness"), default="accuracy",
                    help="what --prompt-optimize improves. Default: accuracy.")
    group.addoption("--optimize-budget-usd", metavar="USD", type=budget_option, default=None,
                    help="--prompt-optimize stops before its next call once the optimizer model's and the candidates' "
                    "calls cost this much. Default: no limit.")
    group.addoption("--optimize-holdout", metavar="FRACTION", type=significance_option, default=0.3,
                    help="the share of cases --prompt-optimize holds out of the optimizer's sight to prove a winner "
                    "on. Default: 0.3.")
    parser.addini("promptgate_suite", "suites to run when --prompt-suite is not given (default: none)", type="args", default=[])
    parser.addini(
        "promptgate_files", "glob patterns of eval files (default: *.eval.yaml *.eval.yml)", type="args",
        default=["*.eval.yaml", "*.eval.yml"],
    )
    parser.addini(
        "promptgate_pricing",
        "token prices overriding the built-in table: one 'MODEL INPUT_USD OUTPUT_USD' per line, USD per million tokens",
        type="linelist",
        default=[],
    )
    parser.addini("promptgate_tracking", "log eval runs to MLflow and compare with baselines (default: true)", type="bool",
                  default=True)
    parser.addini("promptgate_tracking_uri", "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    parser.addini("promptgate_experiment_prefix", "MLflow experiment of an eval: PREFIX/EVAL (default: promptgate)",
                  default="promptgate")
    parser.addini("promptgate_baseline_branch", "compare only with baseline runs of this git branch (default: any)")
    parser.addini("promptgate_significance", "WARNING and IMPROVED need p below this (default: none)")
    parser.addini("promptgate_correction", "adjust the session's p-values together: holm, bh or none (default: holm)",
                  default="holm")
    parser.addini("promptgate_fail_on", "verdicts that fail the session (default: regression)", default="regression")
    parser.addini("promptgate_flaky_history", "flaky across runs: K flips in the last M runs, K/M or off (default: 3/5)")
    parser.addini("promptgate_quarantine", "cases kept running but out of pass rates, gates and verdicts until a date: "
                  "one 'EVAL/CASE YYYY-MM-DD REASON' per line, fnmatch globs in EVAL and CASE (default: none)",
                  type="linelist", default=[])
    parser.addini("promptgate_junit_tolerated", "tolerated failed cases in the JUnit XML: fail or skip (default: fail)",
                  default="fail")
    parser.addini("promptgate_concurrency", "target calls under way at once in each process (default: 8)",
                  default=str(DEFAULT_CONCURRENCY))
    parser.addini("promptgate_cache", "response cache mode: off, use, record or replay (default: off)", default="off")
    parser.addini("promptgate_cache_dir", "response cache directory, relative to the ini file "
                  "(default: .promptgate/cache under the rootdir)")
    parser.addini("promptgate_report_html", "HTML report path, relative to the ini file (default: none)")
    parser.addini("promptgate_optimizer", "the optimizer model of --prompt-optimize: a target such as "
                  "mypkg.llm:call (an eval file's optimizer: wins) (default: none)")
    parser.addini("promptgate_labels", "directory of the labels files (EVAL.labels.jsonl), relative to the ini file "
                  "(default: each beside its eval file, NAME.labels.jsonl)")
    parser.addini("promptgate_allowed_paths", "directories besides the rootdir that eval files may read included "
                  "case files and prompt files from, relative to the ini file (default: none)", type="paths", default=[])


def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """``--prompt-sync``: send the runs kept while tracking was down; ``--prompt-trend``: print the pass-rate
    history (:func:`pytest_promptgate.promote.trend`); ``--prompt-import``: write eval files from another tool's
    (:func:`pytest_promptgate.improve.import_command`); ``--prompt-compare``: compare two recorded runs
    (:func:`pytest_promptgate.compare.compare`). None runs tests."""
    commands = [name for name, given in (
        ("--promote", config.getoption("promote")), ("--rollback", config.getoption("rollback")),
        ("--prompt-trend", config.getoption("prompt_trend")), ("--prompt-sync", config.getoption("prompt_sync")),
        ("--prompt-import", config.getoption("prompt_import")), ("--prompt-compare", config.getoption("prompt_compare")),
    ) if given]
    if len(commands) > 1:
        raise pytest.UsageError(f"promptgate: {' and '.join(commands)} are separate commands; run one at a time")
    if config.getoption("rollback"):
        from .promote import rollback

        return rollback(config)
    if config.getoption("prompt_trend"):
        from .promote import trend

        return trend(config)
    if config.getoption("prompt_import"):
        from .improve import import_command

        return import_command(config)
    if config.getoption("prompt_compare"):
        from .compare import compare

        return compare(config)
    if not config.getoption("prompt_sync"):
        return None
    from .session import sync_spool

    return sync_spool(config)


def pytest_configure(config: pytest.Config) -> None:
    """Set up state; when evals are selected, register the hooks that run and aggregate them.

    A run without evals gets none of the per-item hooks: it pays for this function
    and a file-name check per collected file, nothing per test.
    """
    suites = config.getoption("prompt_suite") or config.getini("promptgate_suite")
    if (config.getoption("promote") or config.getoption("prompt_optimize")) and not config.getoption("prompt_suite"):
        suites = ["all"]  # --promote/--prompt-optimize NAME run every eval that uses NAME unless --prompt-suite narrows it
    names = frozenset(name.strip() for value in suites for name in value.split(",") if name.strip())
    state = State(suites=names, patterns=tuple(config.getini("promptgate_files")), strict=config.getoption("prompt_strict"))
    config.stash[STATE_KEY] = state
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        state.pinned = dict(workerinput.get(PINNED_KEY) or {})
    if config.pluginmanager.hasplugin("xdist") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(WorkerOutput(state), "promptgate-xdist")
    if not names:
        return
    state.prices(config)  # a malformed promptgate_pricing is a usage error now, not per file
    state.quarantine = quarantine(config)  # and so is a malformed promptgate_quarantine
    state.concurrency = concurrency(config)
    from .targets.cache import from_config

    from_config(config)  # and so is a bad promptgate_cache
    config.pluginmanager.register(EvalHooks(), "promptgate-items")
    if not hasattr(config, "workerinput"):  # the controller, or a run without xdist
        from .session import EvalSession

        config.pluginmanager.register(EvalSession(config, state), "promptgate-session")
        if config.getoption("promote"):
            from .promote import PromoteRequest, Promotion

            request = PromoteRequest.from_config(config)
            assert request is not None
            config.pluginmanager.register(Promotion(config, request), "promptgate-promote")
        if config.getoption("prompt_register_best") or config.getoption("prompt_apply_best"):
            from .promote import BestVariantActions

            config.pluginmanager.register(BestVariantActions(config), "promptgate-best")
        if config.getoption("prompt_optimize"):
            _register_optimization(config)


def _register_optimization(config: pytest.Config) -> None:
    """``--prompt-optimize NAME``: runs candidates in this process after the items, so not beside xdist workers."""
    if config.getoption("promote"):
        raise pytest.UsageError("promptgate: --prompt-optimize and --promote are separate commands; optimize first, "
                                "then promote the registered candidate")
    if config.getoption("numprocesses", None):
        raise pytest.UsageError("promptgate: --prompt-optimize runs its candidates in pytest's own process after the "
                                "items: run it without xdist workers (-n 0)")
    from .improve import Optimization

    config.pluginmanager.register(Optimization(config), "promptgate-optimize")


def pytest_collect_file(file_path: Any, parent: pytest.Collector) -> pytest.Collector | None:
    """Eval files become :class:`~pytest_promptgate.collect.EvalFile` nodes when evals are selected."""
    state = get_state(parent.config)
    if not state.is_eval_file(file_path.name):
        return None
    state.found += 1
    if not state.suites:
        return None
    from .collect import EvalFile

    return EvalFile.from_parent(parent, path=file_path)


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> None:
    """Eval file arguments that are symbolic links to nothing (a loop, a missing file) are set aside.

    pytest refuses such an argument before collecting anything ("file or directory not
    found", exit 4), which would stop the other files too; set aside, it is collected as a
    file of its own in :func:`pytest_make_collect_report`, where loading it reports why it
    cannot be read.
    """
    config = session.config
    state = get_state(config)
    if not state.suites:
        return
    unreadable = [arg for arg in config.args if _is_broken_link(config, arg, state)]
    if unreadable:
        config.stash[_UNREADABLE_ARGS] = unreadable
        config.args[:] = [arg for arg in config.args if arg not in unreadable]


def _is_broken_link(config: pytest.Config, arg: str, state: State) -> bool:
    path = os.path.join(config.invocation_params.dir, arg.split("::", 1)[0])
    return state.is_eval_file(os.path.basename(path)) and os.path.lexists(path) and not os.path.exists(path)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """Eval files that pytest's walk of a directory passes over are collected too, so that they fail visibly.

    ``_pytest.main.Dir.collect`` offers ``pytest_collect_file`` only the entries that are
    regular files (``os.DirEntry.is_file``): an eval file that is a FIFO, or a symbolic link
    in a loop or to nothing, would silently not run. Offered here, it becomes a collection
    error naming the file; so do the arguments :func:`pytest_collection` set aside.
    """
    report = yield
    config = collector.config
    if not get_state(config).suites or not report.passed:
        return report
    if isinstance(collector, pytest.Session):
        paths = [config.invocation_params.dir / arg.split("::", 1)[0] for arg in config.stash.get(_UNREADABLE_ARGS, [])]
    elif isinstance(collector, pytest.Directory):
        paths = _passed_over(collector)
    else:
        return report
    for path in paths:
        report.result.extend(collector.ihook.pytest_collect_file(file_path=path, parent=collector))
    return report


def _passed_over(directory: pytest.Directory) -> list[Any]:
    """The eval files of ``directory`` that are neither regular files nor directories, unless ignored."""
    from pathlib import Path

    state = get_state(directory.config)
    try:
        entries = sorted(os.scandir(directory.path), key=lambda entry: entry.name)
    except OSError:
        return []
    return [
        Path(entry.path) for entry in entries
        if state.is_eval_file(entry.name) and _neither_file_nor_directory(entry)
        and not directory.ihook.pytest_ignore_collect(collection_path=Path(entry.path), config=directory.config)
    ]


def _neither_file_nor_directory(entry: os.DirEntry[str]) -> bool:
    try:
        return not entry.is_file() and not entry.is_dir()
    except OSError:  # a symbolic link loop, on some systems
        return True


def pytest_report_collectionfinish(config: pytest.Config) -> list[str]:
    """The header: how many eval files were found, and what was selected or how to run them."""
    return header_lines(get_state(config))


def header_lines(state: State) -> list[str]:
    """What collection found of evals, in one line."""
    if not state.found:
        return []
    if not state.suites:
        return [f"promptgate: {state.found} eval file(s) found, not run (evals call models and cost money); "
                "run them with --prompt-suite NAME, or --prompt-suite all"]
    line = f"promptgate: suite {', '.join(sorted(state.suites))}: {len(state.evals)} eval(s) selected of {state.found} eval file(s)"
    if not state.evals and state.suites_seen:
        line += f"; the eval files that could be read list the suites: {', '.join(sorted(state.suites_seen))}"
    return [line]


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On an xdist worker, hand what collection found to the controller (``workeroutput``, as syrupy does)."""
    config = session.config
    if hasattr(config, "workeroutput"):
        state = get_state(config)
        config.workeroutput[WORKEROUTPUT_KEY] = {
            "found": state.found, "suites_seen": sorted(state.suites_seen), "evals": state.evals,
            "lookahead": state.schedule.mode if state.schedule is not None else None,
        }


class WorkerOutput:
    """On an xdist controller: learn from the workers what they collected. Registered only with xdist."""

    def __init__(self, state: State) -> None:
        self.state = state

    def pytest_configure_node(self, node: Any) -> None:
        """Hand each worker the registry prompts pinned for the session (it never calls MLflow), and the
        ``--dist`` mode, which decides which items a worker may fetch ahead (``collect.Schedule``)."""
        node.workerinput[PINNED_KEY] = self.state.pinned
        node.workerinput[DIST_KEY] = node.config.getoption("dist", None)

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        output = getattr(node, "workeroutput", {}).get(WORKEROUTPUT_KEY)
        if output is None:  # the worker crashed
            return
        state = self.state
        state.from_workers = True
        state.found = max(state.found, output["found"])  # every worker collects every file
        state.suites_seen.update(output["suites_seen"])
        state.evals.update(output["evals"])
        if output["lookahead"] is not None:
            state.worker_lookahead.add(output["lookahead"])

    @pytest.hookimpl(tryfirst=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """The header line the controller could not print before collection, printed at the end (before the summary)."""
        if self.state.from_workers:
            for line in header_lines(self.state):
                terminalreporter.write_line(line)
            if "next" in self.state.worker_lookahead:
                dist = terminalreporter.config.getoption("dist", None)
                terminalreporter.write_line(
                    f"promptgate: under --dist {dist} the workers did not get whole eval variants, so each fetched one "
                    f"item ahead; --dist loadscope keeps each eval variant on one worker and lets "
                    f"{self.state.concurrency} target calls run at once (docs/options.md)"
                )


class EvalHooks:
    """Hooks of every process that runs eval items; registered only when evals are selected."""

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """A grader registration that failed stops the session as a usage error (exit 4)."""
        error = get_state(session.config).registry_error
        if error is not None and not hasattr(session.config, "workerinput"):  # workers report it per file
            raise pytest.UsageError(error)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        """``--promote NAME`` runs only the evals that use NAME: every other item is deselected."""
        name = config.getoption("promote")
        if name:
            from .promote import deselect_for_promotion

            deselect_for_promotion(config, items, name)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        """Attach the item's result to its report, so it reaches the controller (also under xdist).

        A quarantined case that failed is reported as xfailed, as pytest's own
        ``skipping`` plugin reports an ``xfail`` mark (``rep.outcome = "skipped"``,
        ``rep.wasxfail``): its failure is known, shown, and fails nothing.
        """
        report = yield
        result_for_report = getattr(item, "result_for_report", None)
        if result_for_report is not None:
            result = result_for_report(call.when, call.excinfo)
            if result is not None:
                setattr(report, REPORT_ATTR, result.to_dict())
                held = get_state(item.config).quarantined(result.eval, result.case_id)
                if held is not None and report.failed:
                    report.outcome = "skipped"
                    report.wasxfail = f"quarantined until {held.until}: {held.reason}"
        return report

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        """Remember the item pytest runs next: all a worker of ``--dist load`` knows of what comes."""
        item.stash[NEXT_ITEM] = nextitem

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Stop the target calls still under way or queued (``-x``, Ctrl-C), before anything is logged."""
        state = get_state(session.config)
        if state._runner is not None:
            state._runner.stop()

    def pytest_report_teststatus(self, report: pytest.TestReport, config: pytest.Config) -> Any:
        """Flaky cases keep their outcome but say they are flaky."""
        data = getattr(report, REPORT_ATTR, None)
        if data and data.get("flaky") and report.when == "call" and not hasattr(report, "wasxfail"):
            word = "PASSED (flaky)" if report.passed else "FAILED (flaky)"
            return report.outcome, "." if report.passed else "F", (word, {"yellow": True})
        return None


def pytest_unconfigure(config: pytest.Config) -> None:
    """Close the runner (event loop, clients); after a session with evals, exit without a last collection."""
    state = config.stash.get(STATE_KEY, None)
    if state is None:
        return
    if state._runner is not None:
        state._runner.close()
    if state.evals and not switched_off(FAST_EXIT_ENV):
        skip_last_collection()


def skip_last_collection() -> None:
    """When the interpreter exits, leave the objects it still holds to the operating system.

    At exit, Python runs its cyclic garbage collector over every object still alive:
    pytest's items, reports and fixtures, which all hold each other. With
    10 000 items that walk takes longer (1.5 s here) than pytest's whole summary,
    and frees only memory the process is about to give back (docs/benchmarks.md).
    ``gc.freeze()`` in an ``atexit`` handler moves them out of the collector's reach
    -- the handler runs only once the interpreter is exiting, so a program that
    runs ``pytest.main()`` and goes on is not touched. Objects still freed at exit
    are freed as before (module globals, everything not in a reference cycle);
    what is skipped is ``__del__`` of objects in cycles, which Python does not
    promise to run at exit anyway. ``PROMPTGATE_FAST_EXIT=off`` keeps the collection.
    """
    atexit.unregister(gc.freeze)  # once per process, however many sessions ran in it
    atexit.register(gc.freeze)
