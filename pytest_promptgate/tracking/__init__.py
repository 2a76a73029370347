"""The one door to MLflow: stores, runs, baselines, the prompt registry, the spool, history.

Runs on the controlling process only (DESIGN §6): xdist workers never import this
package (an import contract says so). It imports nothing heavy; MLflow is imported
inside the functions that talk to it, so a session without evals never pays for
it (§9). Other rooms import from here, never from the modules below (a contract
says that too):

- ``store``: tracking URIs, opening a store (:class:`Tracker`), failures, status;
- ``runs``: the layout of one eval run and logging it;
- ``baselines``: finding and reading the baseline run;
- ``registry``: the prompt registry, aliases and the audit trail;
- ``spooling``: runs kept on disk while MLflow is down, and sending them later;
- ``journal``: each finished case on disk as it finishes, so a killed session's runs reach the spool;
- ``history``: recent complete runs, for the trend and for the cases flaky across runs;
- ``context``: git and CI facts as tags;
- ``agent``: the child process that holds MLflow while the items run.

What the code keeps from the measured facts of DESIGN §6.1:
- :class:`MlflowClient <mlflow.tracking.MlflowClient>` only, never the fluent
  ``mlflow.start_run`` API, which would disturb the user's own active run.
- One ``log_batch`` per run for params, metrics and tags (about 21 ms on SQLite
  against about 220 ms for single calls); more only when MLflow's batch limits
  (100 params and tags, 1000 entries) force it.
- No pandas (``mlflow-skinny`` has none): the per-case results table is JSON in
  the shape ``MlflowClient.log_table`` writes (``{"columns": [...], "data": [...]}``)
  and is listed in the ``mlflow.loggedArtifacts`` tag, so the UI shows it as a table.
- Each experiment gets an explicit artifact location next to a SQLite store,
  since MLflow's default is ``./mlruns`` under whatever the current directory is.
- Keys are cut to the characters MLflow accepts, values to its length limits,
  and a cut is recorded in the ``promptgate.truncated`` tag rather than made silently.
- SQLAlchemy 2.1 deprecates the ``noload`` loader strategy that MLflow's SQL
  store configures when it is first opened; that one warning is ignored around
  calls into MLflow, so suites run with ``-W error`` still work.
- HTTP requests fail fast (no retries, a 10 s timeout) unless the user set
  MLflow's own variables, and MLflow prints no run links or progress bars.
"""

from __future__ import annotations

from .store import (
    Tracker, TrackingError, TrackingStatus, TrackingUnavailable, anchor_sqlite, display_uri, resolve_tracking_uri,
    same_store, sqlite_path, template_dir, tracking_failure,
)
from .runs import (
    MAX_PARAM_VALUE, MAX_TAG_VALUE, RESULTS_FILE, TrackedRun, log_eval_run, log_report, metric_key, prompt_versions,
    result_rows, results_json, summary_metrics,
)
from .context import ci_tags, git_tags
from .baselines import (
    Baseline, BaselineError, baseline_cases, baseline_outcomes, case_runs, find_baseline, pinned_baseline, run_cases,
)
from .registry import (
    RegistryError, alias_version, audit_history, record_audit, register_prompt_version, resolve_prompt, set_alias,
)
from .spooling import rejected_spool, send_spooled, spool, spool_dir, spooled
from .journal import Journal, journal_dir, record_id, recover, run_params
from .history import EvalHistory, TrendRun, eval_runs, newest_complete_run, recent_outcomes
from .agent import AgentBug, AgentGone, TrackingAgent, agent_mode

__all__ = [
    "AgentBug", "AgentGone", "Baseline", "BaselineError", "EvalHistory", "Journal", "MAX_PARAM_VALUE",
    "MAX_TAG_VALUE", "RESULTS_FILE", "RegistryError", "TrackedRun", "Tracker", "TrackingAgent", "TrackingError",
    "TrackingStatus", "TrackingUnavailable", "TrendRun", "agent_mode", "alias_version", "anchor_sqlite",
    "audit_history", "baseline_cases", "baseline_outcomes", "case_runs", "ci_tags", "display_uri", "eval_runs",
    "find_baseline", "git_tags", "journal_dir", "log_eval_run", "log_report", "metric_key", "newest_complete_run",
    "pinned_baseline", "prompt_versions", "recent_outcomes", "record_audit", "record_id", "recover",
    "register_prompt_version", "rejected_spool", "resolve_prompt", "resolve_tracking_uri", "result_rows",
    "results_json", "run_cases", "run_params", "same_store", "send_spooled", "set_alias", "spool", "spool_dir",
    "spooled", "sqlite_path",
    "summary_metrics", "template_dir", "tracking_failure",
]
