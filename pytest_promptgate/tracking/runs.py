"""The layout of one eval run in MLflow: params, metrics, tags, the results table; logging it."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import posixpath
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from ..results import label_text, labelled_modes
from ..template import prompt_digest
from ..verdicts import format_p
from .store import Tracker, path_part

if TYPE_CHECKING:

    from ..results import EvalSummary


#: The per-case results table artifact of every run.
RESULTS_FILE = "promptgate_results.json"


#: Rendered prompt templates are logged as ``prompts/{name}.txt``.
PROMPTS_DIR = "prompts"


# MLflow's limits (mlflow.utils.validation): longer values are cut silently by
# MLflow, or refused; we cut them ourselves and say so in TRUNCATED_TAG.
MAX_PARAM_VALUE = 6000


MAX_TAG_VALUE = 8000


MAX_KEY = 250


_MAX_PARAMS_TAGS_PER_BATCH = 100


_MAX_ENTRIES_PER_BATCH = 1000


TRUNCATED_TAG = "promptgate.truncated"


# Tags set when the run is created, so that even a run whose batch never arrived
# can be recognised (and closed) when its spooled record is sent again.
_IDENTITY_TAGS = ("promptgate.record", "promptgate.session", "promptgate.eval", "promptgate.variant")


RECORD_FORMAT = 1


_UNSAFE_KEY = re.compile(r"[^A-Za-z0-9_ .:/-]" if os.name != "nt" else r"[^A-Za-z0-9_ ./-]")


@dataclass
class TrackedRun:
    """Everything one MLflow run of one (eval, variant) holds, as plain data.

    Built on the controller at the end of a session; logged by :func:`log_eval_run`,
    or written to disk by :func:`spool` when tracking is down and sent later
    with everything it had (git state and times included).

    ``params`` are the run's params besides ``eval``, ``variant`` and ``suite``
    (``dataset_hash``, ``repeat``, ``target``, model params, ``prompt.{name}``);
    a prompt of ``prompts`` without a ``prompt.{name}`` param gets its digest
    (:func:`prompt_digest`). ``metrics`` usually come from :func:`summary_metrics`;
    ``tags`` from :func:`git_tags` and :func:`ci_tags` plus any others. ``cases``
    are :meth:`CaseResult.to_dict <pytest_promptgate.results.CaseResult.to_dict>`
    dicts; ``prompts`` the rendered prompt texts by name. ``complete`` is true
    only when every case of the dataset ran and none errored: only complete runs
    become baselines.
    """

    eval: str
    variant: str
    suite: str
    session: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    cases: list[dict[str, Any]] = field(default_factory=list)
    prompts: dict[str, str] = field(default_factory=dict)
    complete: bool = False
    verdict: str | None = None
    baseline_run_id: str | None = None
    #: Milliseconds since the epoch; the run's times in MLflow, also when it is sent later.
    start_time_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    end_time_ms: int | None = None
    #: Identifies the record across retries, so a spooled run is never logged twice.
    record_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: The store the run was meant for (:func:`display_uri`) and its experiment prefix: a spooled
    #: run is sent there, not to whatever store a later session uses. None: any store, the tracker's prefix.
    tracking_uri: str | None = None
    experiment_prefix: str | None = None
    #: Registry prompt versions the run used, ``[{"name": ..., "version": "3"}]``: tagged
    #: ``mlflow.linkedPrompts`` as MlflowClient.link_prompt_version_to_run does, in the same batch.
    linked_prompts: list[dict[str, str]] = field(default_factory=list)
    #: What the run's name and Markdown description (MLflow's note) show besides the metrics: the verdict's
    #: reason, the eval's threshold, the 95% interval of the pass rate, and the comparison with the baseline.
    verdict_reason: str | None = None
    threshold: float | None = None
    pass_rate_ci: list[float] | None = None
    baseline_pass_rate: float | None = None
    delta: float | None = None
    p_value: float | None = None
    #: Shared cases that flipped against the baseline: passed then failed (``broke``), failed then passed (``fixed``).
    broke: int | None = None
    fixed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (the spool file's content)."""
        return {"format": RECORD_FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrackedRun:
        """The inverse of :meth:`to_dict`; raises :class:`ValueError` on data it cannot read."""
        if data.get("format") != RECORD_FORMAT:
            raise ValueError(f"unknown spool format {data.get('format')!r} (expected {RECORD_FORMAT})")
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except TypeError as exc:
            raise ValueError(f"not a run record: {exc}") from None


def prompt_versions(params: Mapping[str, Any]) -> dict[str, str]:
    """``{prompt name: version}`` of a run, from its ``prompt.{name}`` params (as :func:`log_eval_run` logs them)."""
    return {key[len("prompt."):]: str(value) for key, value in params.items() if key.startswith("prompt.")}


def metric_key(name: str) -> str:
    """``name`` as a key MLflow accepts for metrics, params and tags.

    Characters outside ``[A-Za-z0-9_ .:/-]`` become ``_`` (no ``:`` on Windows,
    where MLflow refuses it), and a name MLflow would read as a path that is not
    its own normal form (``a//b``, ``/a``, ``a/``, ``..``) loses its slashes;
    cut to 250 characters.
    """
    key = _UNSAFE_KEY.sub("_", name)[:MAX_KEY] or "_"
    if posixpath.normpath(key) != key or key.startswith(("/", "..")) or key == ".":
        key = key.replace("/", "_")
        if key in (".", "..") or key.startswith(".."):
            key = "_" + key[1:]
    return key


def summary_metrics(summary: EvalSummary) -> dict[str, float]:
    """The metrics of one (eval, variant) as MLflow run metrics (DESIGN §6); unknown (None) values are left out.

    The gate metric names (``verdicts.GATE_METRICS``) are the summary's field names;
    case counts are ``total_cases``, ``passed_cases``, ``failed_cases``,
    ``error_cases`` and ``flaky_cases``; ``judge_calls`` when a model-graded grader
    asked its judge; each grader adds ``grader.{name}.pass_rate`` (and
    ``grader.{name}.unstable_judgments`` when its judge disagreed with itself), and each
    failure mode ``failure_mode.{code}.count`` (names through :func:`metric_key`).
    """
    values: dict[str, float | int | None] = {
        "pass_rate": summary.pass_rate,
        "average_score": summary.average_score,
        "error_rate": summary.error_rate,
        "total_cases": summary.cases,
        "passed_cases": summary.passed,
        "failed_cases": summary.failed,
        "error_cases": summary.errors,
        "flaky_cases": summary.flaky,
        "latency_ms_avg": summary.latency_ms_avg,
        "latency_ms_p50": summary.latency_ms_p50,
        "latency_ms_p95": summary.latency_ms_p95,
        "latency_ms_p99": summary.latency_ms_p99,
        "input_tokens": summary.input_tokens,
        "output_tokens": summary.output_tokens,
        "cost_usd_total": summary.cost_usd_total,
        "cost_usd_per_case": summary.cost_usd_per_case,
        "judge_calls": summary.judge_calls or None,
        "judge_input_tokens": summary.judge_input_tokens,
        "judge_output_tokens": summary.judge_output_tokens,
        "judge_cost_usd_total": summary.judge_cost_usd_total,
        "judge_latency_ms_p95": summary.judge_latency_ms_p95,
    }
    for name, rate in summary.grader_pass_rates.items():
        values[metric_key(f"grader.{name}.pass_rate")] = rate
    for code, count in summary.failure_modes.items():
        values[metric_key(f"failure_mode.{code}.count")] = count
    for name, count in summary.unstable_judgments.items():
        values[metric_key(f"grader.{name}.unstable_judgments")] = count
    return {name: float(value) for name, value in values.items() if value is not None}


def log_report(tracker: Tracker, path: str, run_ids: Sequence[str]) -> int:
    """Upload the report at ``path`` (the session's HTML page) as an artifact of each run in ``run_ids``; how many.

    The runs are FINISHED already; MLflow adds artifacts to finished runs, so the page
    sits next to the results table of each (eval, variant) the session logged.
    """
    client = tracker.client
    for run_id in run_ids:
        with tracker._calling(f"logging the report {path} with run {run_id}"):
            client.log_artifact(run_id, path)
    return len(run_ids)


def log_eval_run(tracker: Tracker, record: TrackedRun, results: str | None = None) -> str:
    """Log one (eval, variant) as one MLflow run and return its run id.

    ``results`` is the results table's text (:func:`results_json`) when the caller has
    made it already, in which case ``record.cases`` is not read: the session sends its
    tracking agent a few megabytes of text rather than the cases as objects.

    In order: the run is created in the eval's experiment (named by :func:`run_name`,
    with the record's start time and identity tags); params, metrics and
    tags go in one ``log_batch``; the results table (:data:`RESULTS_FILE`) and
    the prompt texts (``prompts/{name}.txt``) are uploaded; the run is set
    FINISHED. Only a FINISHED run can become a baseline, so a run whose logging
    fails half way never does: it is ended FAILED (:func:`_end_failed`), so that
    the store never holds a run that looks in progress, and its record can be
    spooled and sent again (:func:`send_spooled` closes any half-logged run of the
    same record first).
    """
    experiment_id = tracker.experiment_for(record.eval, record.experiment_prefix)
    client = tracker.client
    what = f"logging run {record.eval}/{record.variant}"
    end_time = record.end_time_ms if record.end_time_ms is not None else int(time.time() * 1000)
    with tracker._calling(what):
        from mlflow.entities import Metric, Param, RunTag

        params, tags, truncated = _run_params_and_tags(record)
        values: dict[str, float] = {}
        for key, value in record.metrics.items():
            values[_unique_key(metric_key(key), values)] = float(value)
        metrics = [Metric(key, value, end_time, 0) for key, value in values.items()]
        identity = {k: tags.pop(k) for k in _IDENTITY_TAGS}
        if truncated:
            tags[TRUNCATED_TAG] = cut_value(",".join(truncated), MAX_TAG_VALUE)[0]
        run = client.create_run(experiment_id, start_time=record.start_time_ms, tags=identity, run_name=run_name(record))
    run_id = run.info.run_id
    try:
        with tracker._calling(what):
            param_list = [Param(k, v) for k, v in params.items()]
            for batch in _batches(metrics, param_list, [RunTag(k, v) for k, v in tags.items()]):
                client.log_batch(run_id, *batch)
            with tempfile.TemporaryDirectory(prefix="promptgate-") as tmp:
                _write_artifacts(Path(tmp), record, results)
                client.log_artifacts(run_id, tmp)
            client.set_terminated(run_id, "FINISHED", end_time=end_time)
    except BaseException:
        _end_failed(tracker, run_id, end_time)
        raise
    return run_id


def _end_failed(tracker: Tracker, run_id: str, end_time: int) -> None:
    """End the half-logged run ``run_id`` FAILED; best effort, never raises.

    A full disk refuses that too, and what the run's artifacts took of the disk is why:
    their half-written files are worth nothing (the record is kept and sent again as a
    new run), so when the first try fails and they lie under :attr:`Tracker.artifact_root`,
    they are removed and the run is ended again.
    """
    client = tracker.client
    for attempt in (1, 2):
        try:
            with tracker._calling(f"ending run {run_id} FAILED"):
                client.set_terminated(run_id, "FAILED", end_time=end_time)
            return
        except Exception:
            if attempt == 2 or not _drop_local_artifacts(tracker, run_id):
                return


def _drop_local_artifacts(tracker: Tracker, run_id: str) -> bool:
    """Remove the artifacts of run ``run_id`` when they lie under the tracker's own artifact directory; whether it did."""
    root = tracker.artifact_root
    if root is None:
        return False
    try:
        with tracker._calling(f"reading run {run_id}"):
            uri = tracker.client.get_run(run_id).info.artifact_uri
        parts = urlsplit(uri)
        if parts.scheme not in ("", "file"):
            return False
        directory = Path(unquote(parts.path)).resolve()
        if directory.parent.name != run_id or not directory.is_relative_to(root.resolve()):
            return False
        shutil.rmtree(directory.parent)  # the run's directory: RUN_ID/artifacts
    except Exception:
        return False
    return True


def _run_params_and_tags(record: TrackedRun) -> tuple[dict[str, str], dict[str, str], list[str]]:
    truncated: list[str] = []
    params: dict[str, str] = {}

    def put(target: dict[str, str], kind: str, key: str, value: Any, limit: int) -> None:
        safe = _unique_key(metric_key(key), target)
        text, cut = cut_value(value_text(value), limit)
        if cut:
            truncated.append(f"{kind}:{safe}")
        target[safe] = text

    for key, value in {"eval": record.eval, "variant": record.variant, "suite": record.suite, **record.params}.items():
        put(params, "param", key, value, MAX_PARAM_VALUE)
    for name, text in record.prompts.items():
        if metric_key(f"prompt.{name}") not in params:
            put(params, "param", f"prompt.{name}", prompt_digest(text), MAX_PARAM_VALUE)

    tags: dict[str, str] = {}
    given = dict(record.tags)
    if "git.commit" in given:
        given.setdefault("mlflow.source.git.commit", given["git.commit"])
    if "git.branch" in given:
        given.setdefault("mlflow.source.git.branch", given["git.branch"])
    ours = {
        "promptgate.record": record.record_id,
        "promptgate.session": record.session,
        "promptgate.suite": record.suite,
        "promptgate.eval": record.eval,
        "promptgate.variant": record.variant,
        "promptgate.complete": "true" if record.complete else "false",
        "mlflow.source.name": "pytest-promptgate",
        "mlflow.source.type": "LOCAL",
        # Lets the MLflow UI show the results file as a table (what MlflowClient.log_table records).
        "mlflow.loggedArtifacts": json.dumps([{"path": RESULTS_FILE, "type": "table"}]),
    }
    if record.linked_prompts:
        # MlflowClient.link_prompt_version_to_run looks the run up in the default tracking
        # store, not the client's (MLflow 3.17); the tag it writes is set here instead.
        ours["mlflow.linkedPrompts"] = json.dumps(
            [{"name": p["name"], "version": str(p["version"])} for p in record.linked_prompts]
        )
    # MLflow's UI shows this tag as the run's Markdown description.
    ours["mlflow.note.content"] = run_note(record)
    if record.verdict is not None:
        ours["promptgate.verdict"] = record.verdict
    if record.baseline_run_id is not None:
        ours["promptgate.baseline_run_id"] = record.baseline_run_id
    for key, value in {**given, **ours}.items():
        put(tags, "tag", key, value, MAX_TAG_VALUE)
    return params, tags, truncated


#: How much of ``eval/variant`` a run name keeps, so that the verdict and pass rate after it stay in sight.
MAX_RUN_NAME_LABEL = 80


def run_name(record: TrackedRun) -> str:
    """The run's name in MLflow's run list: ``intent-routing/terse PASS 88.9%`` (no configured columns needed)."""
    label = f"{record.eval}/{record.variant}"
    if len(label) > MAX_RUN_NAME_LABEL:
        label = label[:MAX_RUN_NAME_LABEL - 1] + "…"
    words = [label, record.verdict or "", _rate(record.metrics.get("pass_rate"))]
    return " ".join(word for word in words if word)


def run_note(record: TrackedRun) -> str:
    """The run's Markdown description (tag ``mlflow.note.content``): verdict, pass rate, baseline, flipped cases."""
    m = record.metrics
    headline = f"**{record.verdict or 'no verdict'}**: pass rate **{_rate(m.get('pass_rate')) or '?'}**"
    if record.pass_rate_ci:
        headline += f" (95% interval {_rate(record.pass_rate_ci[0])} to {_rate(record.pass_rate_ci[1])})"
    if record.threshold is not None:
        headline += f", threshold {_rate(record.threshold)}"
    lines = [headline, ""]
    if record.verdict_reason:
        lines.append(f"- verdict: {record.verdict_reason}")
    if "total_cases" in m:
        lines.append(f"- cases: {m['total_cases']:.0f} ({m.get('passed_cases', 0):.0f} passed, "
                     f"{m.get('failed_cases', 0):.0f} failed, {m.get('error_cases', 0):.0f} errors)"
                     + ("" if record.complete else "; a partial or incomplete run: never a baseline"))
    lines += _baseline_lines(record)
    lines.append(f"- eval `{record.eval}`, variant `{record.variant}`; every case: the table `{RESULTS_FILE}`")
    return "\n".join(lines) + "\n"


def _baseline_lines(record: TrackedRun) -> list[str]:
    """The note's lines on the baseline: which run, its pass rate, the delta, and the cases that flipped."""
    if record.baseline_run_id is None:
        return ["- baseline: none (a first run, or no baseline could be read)"]
    line = f"- baseline: run `{record.baseline_run_id}`"
    if record.baseline_pass_rate is not None:
        line += f" at {_rate(record.baseline_pass_rate)}"
    if record.delta is not None:
        line += f", delta {record.delta * 100:+.1f} pp"
        if record.p_value is not None:
            line += f" ({format_p(record.p_value)})"
    lines = [line]
    if record.broke is not None and record.fixed is not None:
        lines.append(f"- flipped against the baseline: {record.broke + record.fixed} case(s), "
                     f"{record.broke} newly failing, {record.fixed} newly passing")
    return lines


def _rate(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def _unique_key(key: str, taken: Mapping[str, Any]) -> str:
    # Two names that sanitise alike must not overwrite each other (nor make log_batch refuse duplicates).
    if key not in taken:
        return key
    n = 2
    while f"{key}_{n}" in taken:
        n += 1
    return f"{key}_{n}"


def value_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return str(value)


def cut_value(text: str, limit: int) -> tuple[str, bool]:
    if len(text) <= limit:
        return text, False
    marker = f"… [cut from {len(text)} chars]"
    keep = max(0, limit - len(marker))
    return (text[:keep] + marker)[:limit], True


def _batches(
    metrics: Sequence[Any], params: Sequence[Any], tags: Sequence[Any]
) -> Iterator[tuple[list[Any], list[Any], list[Any]]]:
    """``(metrics, params, tags)`` chunks within MLflow's ``log_batch`` limits; one chunk in the usual case."""
    metrics, params, tags = list(metrics), list(params), list(tags)
    while True:
        p = params[:_MAX_PARAMS_TAGS_PER_BATCH]
        t = tags[: _MAX_PARAMS_TAGS_PER_BATCH - len(p)]
        m = metrics[: _MAX_ENTRIES_PER_BATCH - len(p) - len(t)]
        yield m, p, t
        params, tags, metrics = params[len(p):], tags[len(t):], metrics[len(m):]
        if not (params or tags or metrics):
            return


#: Columns of the results table, one row per case.
RESULT_COLUMNS = (
    "case_id", "outcome", "passed", "score", "flaky", "runs", "runs_passed", "latency_ms",
    "input_tokens", "output_tokens", "cost_usd", "model", "output", "graders", "failure_modes",
    "error", "vars", "expected", "tags", "labels",
)


def _row(case: Mapping[str, Any]) -> list[Any]:
    """One case's cells, in :data:`RESULT_COLUMNS` order (one pass over its runs: one call per case of the session)."""
    runs = case.get("runs") or ()
    error = case.get("error")
    several = len(runs) > 1
    grader_lines = []
    modes = set()
    latencies = []
    totals: list[Any] = [None, None, None]  # input tokens, output tokens, cost: None unless some run knows it
    runs_passed, model = 0, None
    for i, run in enumerate(runs, 1):
        runs_passed += bool(run.get("passed"))
        if run.get("latency_ms") is not None:
            latencies.append(run["latency_ms"])
        for k, key in enumerate(("input_tokens", "output_tokens", "cost_usd")):
            value = run.get(key)
            if value is not None:
                totals[k] = value if totals[k] is None else totals[k] + value
        model = model or run.get("model") or None
        for g in run.get("graders") or ():
            passed = g["passed"]
            line = f"{g['name']}: {'pass' if passed else 'FAIL'} ({_number(g.get('score'))})"
            if not passed:
                if g.get("reason"):
                    line += f" {g['reason']}"
                if g.get("failure_mode"):
                    modes.add(g["failure_mode"])
            grader_lines.append(f"run {i}: {line}" if several else line)
    if several:
        output = "\n".join(f"--- run {i} ---\n{r.get('output', '')}" for i, r in enumerate(runs, 1))
    else:
        output = str(runs[0].get("output", "")) if runs else None
    passed = bool(case.get("passed"))
    return [
        case.get("case_id"),
        "error" if error is not None else ("passed" if passed else "failed"),
        passed and error is None,
        _cell(case.get("score")),
        bool(case.get("flaky")),
        len(runs),
        runs_passed,
        _cell(sum(latencies) / len(latencies)) if latencies else None,
        _cell(totals[0]),
        _cell(totals[1]),
        _cell(totals[2]),
        None if model is None else str(model),  # a target's own value: text in the table, whatever it was
        output,
        "\n".join(grader_lines),
        ", ".join(sorted(modes | labelled_modes(case.get("labels") or (), {r.get("output_sha") for r in runs},
                                                error is None and not passed))),
        error,
        json.dumps(case.get("vars") or {}, ensure_ascii=False, default=str),
        _json_text(case.get("expected")),
        ", ".join(case.get("tags") or ()),
        "\n".join(label_text(label) for label in case.get("labels") or ()),
    ]


def result_rows(cases: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The cases as rows of the results table (``{column: cell}``), as :func:`run_cases` reads a logged run's back."""
    return [dict(zip(RESULT_COLUMNS, _row(case))) for case in cases]


def _json_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _number(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "-"


def _cell(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def results_json(cases: Sequence[Mapping[str, Any]]) -> str:
    """The per-case results as the JSON text of an MLflow table (:data:`RESULTS_FILE`).

    ``{"columns": [...], "data": [[...], ...]}``: the shape ``MlflowClient.log_table``
    writes (pandas' ``orient="split"``), which the MLflow UI renders and ``load_table``
    reads, built without pandas. ``cases`` are :meth:`CaseResult.to_dict` dicts; every
    cell is JSON (no NaN). Encoded a row at a time with the C encoder: ``json.dump``
    of the whole table to a file would hold every row at once and encode in Python.
    """
    encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
    rows = ", ".join(encode(_row(case)) for case in cases)
    return '{"columns": ' + json.dumps(list(RESULT_COLUMNS)) + ', "data": [' + rows + "]}"


def _write_artifacts(directory: Path, record: TrackedRun, results: str | None = None) -> None:
    (directory / RESULTS_FILE).write_text(results_json(record.cases) if results is None else results, encoding="utf-8")
    if record.prompts:
        prompts = directory / PROMPTS_DIR
        prompts.mkdir()
        taken: set[str] = set()
        for name, text in record.prompts.items():
            stem = path_part(name, "prompt")
            while stem in taken:
                stem += "_"
            taken.add(stem)
            (prompts / f"{stem}.txt").write_text(text, encoding="utf-8")
