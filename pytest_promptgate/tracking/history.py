"""Recent complete runs of an eval: for the trend, and for the cases that flip across runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .baselines import baseline_outcomes
from .runs import prompt_versions
from .store import NEWEST_FIRST, Tracker, filter_literal, sqlite_path

if TYPE_CHECKING:
    from mlflow.entities import Run



@dataclass(frozen=True)
class TrendRun:
    """One FINISHED run of an (eval, variant), as ``--prompt-trend`` shows it: plain data, no MLflow objects."""

    run_id: str
    eval: str
    variant: str
    #: Milliseconds since the epoch: when the session that made the run started.
    start_time: int
    #: ``promptgate.complete``: every case of the dataset ran and none errored.
    complete: bool
    pass_rate: float | None
    average_score: float | None
    #: The cases that ran (fewer than the dataset's in a partial run).
    total_cases: int | None
    verdict: str | None
    #: The selected suites the eval's run was made for (``promptgate.suite``).
    suites: tuple[str, ...]
    #: ``{prompt name: version}`` from the ``prompt.{name}`` params.
    prompt_versions: dict[str, str]


@dataclass(frozen=True)
class EvalHistory:
    """The runs of one eval that ``--prompt-trend`` needs, read with a few bounded searches."""

    eval: str
    experiment: str
    #: The newest runs of the eval (every variant), up to the limit, oldest first.
    runs: tuple[TrendRun, ...]
    #: Per variant seen in ``runs``: its newest complete runs, oldest first, however far back they are.
    complete: dict[str, tuple[TrendRun, ...]]
    #: Per variant seen in ``runs``: its run just before its oldest one in ``runs``, when the limit left that out.
    earlier: dict[str, TrendRun]


def eval_runs(
    tracker: Tracker,
    eval_names: Sequence[str] | None = None,
    suites: Sequence[str] = (),
    *,
    limit: int = 10,
    complete_runs: int = 3,
) -> dict[str, EvalHistory]:
    """``{eval: EvalHistory}`` of the evals with FINISHED runs in experiments ``{prefix}/{eval}``, by eval name.

    Only the evals named in ``eval_names`` when given; only runs whose
    ``promptgate.suite`` tag lists one of ``suites`` when given. Per eval: its
    ``limit`` newest runs, and per variant among them its ``complete_runs``
    newest complete runs and the run before its oldest shown one (for what
    changed). Each is one ``search_runs`` ordered newest first with
    ``max_results``: the store is never read through. Runs that are not
    FINISHED (a logging that failed half way and was sent again later, a session
    still logging) and deleted runs and experiments are left out. A SQLite store
    that does not exist yet has no runs; it is not created.
    """
    if limit < 1 or complete_runs < 1:
        raise ValueError("limit and complete_runs must be at least 1")
    database = sqlite_path(tracker.uri)
    if database is not None and not database.exists():
        return {}
    histories = (
        _history(tracker, eval_name, experiment_id, frozenset(suites), limit, complete_runs)
        for eval_name, experiment_id in sorted(_eval_experiments(tracker, eval_names).items())
    )
    return {history.eval: history for history in histories if history.runs}


def newest_complete_run(tracker: Tracker, eval_name: str, variant: str, other_than: str) -> TrendRun | None:
    """The newest complete FINISHED run of (eval, variant) other than run ``other_than``; None when there is none.

    What ``--prompt-compare RUN_A`` compares RUN_A with. One search of two runs.
    """
    experiment_id = tracker.find_experiment(eval_name)
    if experiment_id is None:
        return None
    tags = {"promptgate.eval": eval_name, "promptgate.variant": variant, "promptgate.complete": "true"}
    runs = _newest_runs(tracker, experiment_id, 2, frozenset(), tags)
    return next((run for run in runs if run.run_id != other_than), None)


def _history(
    tracker: Tracker, eval_name: str, experiment_id: str, suites: frozenset[str], limit: int, complete_runs: int
) -> EvalHistory:
    def newest(count: int, tags: Mapping[str, str], before: int | None = None) -> list[TrendRun]:
        return _newest_runs(tracker, experiment_id, count, suites, {"promptgate.eval": eval_name, **tags}, before)

    runs = newest(limit, {})[::-1]
    complete: dict[str, tuple[TrendRun, ...]] = {}
    earlier: dict[str, TrendRun] = {}
    for variant in dict.fromkeys(run.variant for run in runs):
        of_variant = {"promptgate.variant": variant}
        complete[variant] = tuple(newest(complete_runs, {**of_variant, "promptgate.complete": "true"})[::-1])
        if len(runs) == limit:  # with fewer, every run of the eval is shown already
            oldest = next(run for run in runs if run.variant == variant)
            before = newest(1, of_variant, before=oldest.start_time)
            if before:
                earlier[variant] = before[0]
    return EvalHistory(eval_name, tracker.experiment_name(eval_name), tuple(runs), complete, earlier)


def recent_outcomes(
    tracker: Tracker, eval_name: str, variant: str, runs: int, known: Mapping[str, dict[str, bool]] | None = None
) -> list[dict[str, bool]]:
    """``{case_id: passed}`` of each of the ``runs`` newest complete runs of (eval, variant), oldest first.

    For the cases flaky across runs (``--prompt-flaky-history``): one search of
    ``runs`` runs, then one results table read per run (about 0.1 s each on a
    local SQLite store) except the runs in ``known`` (run id -> outcomes the
    caller read already: the baseline's), so the work is bounded by ``runs``
    however long the history. [] when the eval has no experiment yet.
    """
    experiment_id = tracker.find_experiment(eval_name)
    if experiment_id is None:
        return []
    tags = {"promptgate.eval": eval_name, "promptgate.variant": variant, "promptgate.complete": "true"}
    found = _newest_runs(tracker, experiment_id, runs, frozenset(), tags)
    known = known or {}
    return [known[run.run_id] if run.run_id in known else baseline_outcomes(tracker, run.run_id)
            for run in reversed(found)]


def _eval_experiments(tracker: Tracker, eval_names: Sequence[str] | None) -> dict[str, str]:
    """``{eval: experiment id}`` of the active experiments ``{prefix}/{eval}``; only ``eval_names`` when given."""
    if eval_names is not None:
        found = {name: tracker.find_experiment(name) for name in eval_names}
        return {name: experiment_id for name, experiment_id in found.items() if experiment_id is not None}
    prefix = tracker.experiment_name("")
    # LIKE narrows the search; its wildcards (_ and %) may match more, so the prefix is checked again below.
    literal = filter_literal(prefix + "%")
    experiments: dict[str, str] = {}
    client = tracker.client
    page_token = None
    with tracker._calling("listing the eval experiments"):
        while True:
            page = client.search_experiments(
                filter_string=f"name LIKE {literal}" if literal else None, page_token=page_token,
            )
            for experiment in page:
                name = experiment.name[len(prefix):]
                if experiment.name.startswith(prefix) and name and "/" not in name:  # eval names have no "/"
                    experiments[name] = experiment.experiment_id
            page_token = page.token
            if not page_token:
                return experiments


def _newest_runs(
    tracker: Tracker, experiment_id: str, count: int, suites: frozenset[str], tags: Mapping[str, str],
    before: int | None = None,
) -> list[TrendRun]:
    """The ``count`` newest FINISHED runs with these tag values, listing one of ``suites`` (any when empty),
    started before ``before`` (ms), newest first.

    One search when the filter says it all; more pages only while runs are dropped
    here (several suites, which an MLflow filter cannot OR, or a value no filter literal can hold).
    """
    clauses = ["attributes.status = 'FINISHED'"]
    local = dict(tags)
    for key, value in tags.items():
        literal = filter_literal(value)
        if literal is not None:
            clauses.append(f'tags."{key}" = {literal}')
            del local[key]
    if before is not None:
        clauses.append(f"attributes.start_time < {int(before)}")
    found: list[TrendRun] = []
    client = tracker.client
    page_token = None
    with tracker._calling(f"searching the runs of experiment {experiment_id}"):
        while len(found) < count:
            page = client.search_runs(
                [experiment_id], filter_string=" and ".join(clauses), max_results=count, order_by=NEWEST_FIRST,
                page_token=page_token,
            )
            for run in page:
                trend_run = _trend_run(run)
                if all(run.data.tags.get(k) == v for k, v in local.items()) and (
                    not suites or suites.intersection(trend_run.suites)
                ):
                    found.append(trend_run)
            page_token = page.token
            if not page_token:
                break
    return found[:count]


def _trend_run(run: Run) -> TrendRun:
    tags, metrics = run.data.tags, run.data.metrics
    total = metrics.get("total_cases")
    return TrendRun(
        run_id=run.info.run_id,
        eval=tags.get("promptgate.eval", ""),
        variant=tags.get("promptgate.variant", ""),
        start_time=run.info.start_time,
        complete=tags.get("promptgate.complete") == "true",
        pass_rate=metrics.get("pass_rate"),
        average_score=metrics.get("average_score"),
        total_cases=int(total) if total is not None else None,
        verdict=tags.get("promptgate.verdict"),
        # The suites the eval lists (promptgate.eval_suites); older runs have only the session's selection.
        suites=tuple(name for name in tags.get("promptgate.eval_suites", tags.get("promptgate.suite", "")).split(",") if name),
        prompt_versions=prompt_versions(run.data.params),
    )
