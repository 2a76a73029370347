"""Finding and reading the baseline run of an (eval, variant)."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .runs import RESULTS_FILE, prompt_versions
from .store import NEWEST_FIRST, Tracker, TrackingError, display_uri, filter_literal

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient



class BaselineError(TrackingError):
    """A pinned baseline run (``--prompt-baseline RUN_ID``) does not exist or is not a run of that eval."""


@dataclass(frozen=True)
class Baseline:
    """The run a current (eval, variant) is compared with (DESIGN §5, §6)."""

    run_id: str
    eval: str
    variant: str
    #: Milliseconds since the epoch, as MLflow keeps it.
    start_time: int
    status: str
    complete: bool
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    _tracker: Tracker | None = field(default=None, repr=False, compare=False)

    @property
    def prompt_versions(self) -> dict[str, str]:
        """``{prompt name: version}`` from the ``prompt.{name}`` params."""
        return prompt_versions(self.params)

    @property
    def session(self) -> str | None:
        """The session that logged the run."""
        return self.tags.get("promptgate.session")

    @property
    def branch(self) -> str | None:
        """The git branch the run was made on, when known."""
        return self.tags.get("git.branch")

    def case_outcomes(self) -> dict[str, bool]:
        """``{case_id: passed}`` from the run's results table, for the paired (McNemar) test (:func:`baseline_outcomes`)."""
        if self._tracker is None:
            raise TrackingError("this baseline was not read from a tracker")
        return baseline_outcomes(self._tracker, self.run_id)


def baseline_outcomes(tracker: Tracker, run_id: str) -> dict[str, bool]:
    """``{case_id: passed}`` of run ``run_id``, from its results table.

    Downloads :data:`RESULTS_FILE`; {} when the run has none (it was not
    logged by this plugin, or its upload failed).
    """
    table = _results_table(tracker, run_id)
    return outcomes_from_table(table) if table is not None else {}


def run_cases(tracker: Tracker, run_id: str) -> list[dict[str, Any]] | None:
    """Every case of run ``run_id`` as a row of its results table (``{column: cell}``, :func:`result_rows`' shape).

    For the flipped cases, which need what the run's cases said, not only whether they
    passed. None when the run has no results table; a table that is not one raises
    :class:`TrackingError` (the run's other figures still count).
    """
    table = _results_table(tracker, run_id)
    if table is None:
        return None
    columns = table.get("columns") if isinstance(table, dict) else None
    rows = table.get("data") if isinstance(table, dict) else None
    if not isinstance(columns, list) or "case_id" not in columns or not isinstance(rows, list):
        raise TrackingError(f"the results table {RESULTS_FILE} of run {run_id} is not a promptgate results table")
    return [dict(zip(columns, row)) for row in rows if isinstance(row, list)]


def baseline_cases(tracker: Tracker, run_id: str) -> dict[str, tuple[bool, int, int]]:
    """``{case_id: (passed, runs passed, runs)}`` of run ``run_id``, from its results table, for paired repeats
    (:func:`case_runs`); {} when the run has none."""
    return case_runs(run_cases(tracker, run_id) or ())


def case_runs(rows: Sequence[Mapping[str, Any]]) -> dict[str, tuple[bool, int, int]]:
    """``{case_id: (passed, runs passed, runs)}`` of results-table rows (:func:`run_cases`).

    An errored case counts as none of its runs passing (as it counts against the
    pass rate); a table without run counts counts each case as one run.
    """
    cases = {}
    for row in rows:
        passed = bool(row.get("passed"))
        if row.get("runs") is None or row.get("runs_passed") is None:
            cases[str(row["case_id"])] = (passed, int(passed), 1)
            continue
        total = max(int(row["runs"] or 0), 1)
        passed_runs = 0 if row.get("outcome") == "error" else min(int(row["runs_passed"] or 0), total)
        cases[str(row["case_id"])] = (passed, passed_runs, total)
    return cases


def _results_table(tracker: Tracker, run_id: str) -> Any:
    """The parsed :data:`RESULTS_FILE` of run ``run_id``; None when the run has none."""
    client = tracker.client
    what = f"reading the results of run {run_id}"
    with tempfile.TemporaryDirectory(prefix="promptgate-") as tmp, tracker._calling(what):
        names = {item.path for item in client.list_artifacts(run_id)}
        if RESULTS_FILE not in names:
            return None
        path = client.download_artifacts(run_id, RESULTS_FILE, tmp)
        with open(path, encoding="utf-8") as f:
            return json.load(f)


def outcomes_from_table(table: Mapping[str, Any]) -> dict[str, bool]:
    """``{case_id: passed}`` from a results table (:func:`results_json`); {} for a table without those columns."""
    columns = list(table.get("columns") or [])
    if "case_id" not in columns or "passed" not in columns:
        return {}
    case, passed = columns.index("case_id"), columns.index("passed")
    return {str(row[case]): bool(row[passed]) for row in table.get("data") or []}


def find_baseline(
    tracker: Tracker,
    eval_name: str,
    variant: str,
    *,
    branch: str | None = None,
    run_id: str | None = None,
    exclude_session: str | None = None,
    exclude_verdicts: Sequence[str] = ("REGRESSION",),
) -> Baseline | None:
    """The baseline of (eval, variant), or None when there is none yet.

    The most recent (by start time) run in the eval's experiment that FINISHED,
    is tagged ``promptgate.complete = true`` and ``promptgate.variant = variant``,
    and whose ``promptgate.verdict`` is not one of ``exclude_verdicts`` (REGRESSION
    by default; the session passes the verdicts that fail it, ``--prompt-fail-on``):
    a run that failed the bar cannot be the bar, so running the same change again
    is measured against the last good run, not against itself,
    and, with ``branch``, ``git.branch = branch``; runs of ``exclude_session``
    (the current session) never count. With ``run_id`` (``--prompt-baseline``)
    that run is the baseline whatever its variant, status or completeness; a run
    that does not exist, is deleted, or is not a run of this eval raises
    :class:`BaselineError`.

    Two searches of one run each, however many runs the experiment holds (DESIGN §12); more
    only when a value holds both quote kinds (:func:`_newest_run`).
    """
    if run_id is not None:
        return pinned_baseline(tracker, run_id, eval_name)
    experiment_id = tracker.find_experiment(eval_name, deleted_is_error=True)
    if experiment_id is None:
        return None
    conditions = [("promptgate.variant", variant, True)]
    if branch is not None:
        conditions.append(("git.branch", branch, True))
    if exclude_session is not None:
        conditions.append(("promptgate.session", exclude_session, False))
    base = ["attributes.status = 'FINISHED'", "tags.\"promptgate.complete\" = 'true'"]
    # MLflow's != leaves out runs without the tag, and runs logged without a verdict (no baseline
    # then, or an older plugin) have none: one search for runs with an acceptable verdict, one for
    # runs without a verdict, and the newer of the two wins. Filtering the verdict on this side
    # instead paged through every run that failed the bar (30-40 s with 20 000 of them).
    searches = [[*conditions, *(("promptgate.verdict", verdict, False) for verdict in exclude_verdicts)]]
    if exclude_verdicts:
        searches.append([*conditions, ("promptgate.verdict", None, True)])
    client = tracker.client
    with tracker._calling(f"searching the baseline of {eval_name}/{variant}"):
        found = [_newest_run(client, experiment_id, base, search) for search in searches]
    candidates = [run for run in found if run is not None]
    if not candidates:
        return None
    return _baseline(min(candidates, key=_recency), tracker)


def _recency(run: Run) -> tuple[int, int, str]:
    # MLflow's SQL stores order by the given keys, then by run id (sqlalchemy_store._get_orderby_clauses).
    return -run.info.start_time, -(run.info.end_time or 0), run.info.run_id


def _newest_run(
    client: MlflowClient, experiment_id: str, base: Sequence[str], conditions: Sequence[tuple[str, str | None, bool]]
) -> Run | None:
    """The newest run matching ``base`` clauses and tag ``conditions`` ``(key, value, equal)``; value None: no such tag.

    One search, unless a value no MLflow string literal can hold (both quote kinds)
    leaves a condition to be checked here: the filter then narrows the search as far
    as it can and pages through what it lets pass.
    """
    clauses, local = list(base), []
    for key, value, equal in conditions:
        clause, exact = _tag_clause(key, value, equal)
        if clause is not None:
            clauses.append(clause)
        if not exact:
            local.append((key, value, equal))
    page_token = None
    while True:
        runs = client.search_runs(
            [experiment_id], filter_string=" and ".join(clauses), max_results=50 if local else 1,
            order_by=NEWEST_FIRST, page_token=page_token,
        )
        for run in runs:
            if all((run.data.tags.get(key) == value) == equal for key, value, equal in local):
                return run
        page_token = runs.token
        if not page_token:
            return None


_LIKE_ANY_CHAR = re.compile(r"['\"\\%_]")


def _tag_clause(key: str, value: str | None, equal: bool) -> tuple[str | None, bool]:
    """The filter clause of one tag condition (None: MLflow cannot express it), and whether it is exact.

    A value holding both quote kinds becomes a LIKE pattern that lets it pass (each
    quote, backslash or wildcard matches any one character), to be checked exactly
    on the runs found.
    """
    if value is None:
        return f'tags."{key}" {"IS NULL" if equal else "IS NOT NULL"}', True
    literal = filter_literal(value)
    if literal is not None:
        return f'tags."{key}" {"=" if equal else "!="} {literal}', True
    if not equal:
        return None, False
    return f"tags.\"{key}\" LIKE '{_LIKE_ANY_CHAR.sub('_', value)}'", False


def pinned_baseline(tracker: Tracker, run_id: str, eval_name: str | None = None, *, role: str = "baseline run") -> Baseline:
    """The run ``run_id`` as a baseline (``--prompt-baseline``), whatever its variant, status or completeness.

    Raises :class:`BaselineError` when the run does not exist, is deleted, was not
    logged by this plugin, or (with ``eval_name``) is a run of another eval; its
    message names the run as ``role`` (``--prompt-compare`` reads its runs here too).
    """
    client = tracker.client
    with tracker._calling(f"reading {role} {run_id}"):
        from mlflow.exceptions import MlflowException

        try:
            run = client.get_run(run_id)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
                raise BaselineError(f"{role} {run_id!r} does not exist in {display_uri(tracker.uri)}") from None
            raise
    if run.info.lifecycle_stage != "active":
        raise BaselineError(f"{role} {run_id!r} is deleted in {display_uri(tracker.uri)}")
    owner = run.data.tags.get("promptgate.eval")
    if owner is None:
        raise BaselineError(f"{role} {run_id!r} is not a pytest-promptgate run (it has no promptgate.eval tag)")
    if eval_name is not None and owner != eval_name:
        raise BaselineError(f"{role} {run_id!r} is a run of eval {owner!r}, not of {eval_name!r}")
    return _baseline(run, tracker)


def _baseline(run: Run, tracker: Tracker) -> Baseline:
    tags = dict(run.data.tags)
    return Baseline(
        run_id=run.info.run_id,
        eval=tags.get("promptgate.eval", ""),
        variant=tags.get("promptgate.variant", ""),
        start_time=run.info.start_time,
        status=run.info.status,
        complete=tags.get("promptgate.complete") == "true",
        # Numbers only: a store whose values are not (a damaged or foreign one) must not break the comparison.
        metrics={k: float(v) for k, v in run.data.metrics.items() if isinstance(v, (int, float))},
        params=dict(run.data.params),
        tags=tags,
        _tracker=tracker,
    )
