"""The optimization on the record, and its winner handed to the gate (docs/optimize.md).

One MLflow run per candidate evaluation and eval, apart from the eval's own experiment so
that it never becomes a baseline; the winner registered at alias ``candidate`` with its
lineage, or written back to the file or inline template its prompt came from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..places import write_prompt
from ..results import summarize
from ..state import get_state
from ..template import prompt_digest

if TYPE_CHECKING:
    from .optimizer import Candidate, Optimization, Slot

#: Where candidate evaluations are logged: experiment ``{prefix}{EXPERIMENT_SUFFIX}/{eval}``.
EXPERIMENT_SUFFIX = "-optimize"


def log_candidates(opt: Optimization, evals: Any) -> None:
    """One MLflow run per candidate evaluation (per eval), tagged with the optimization's id; never a baseline."""
    from ..tracking import TrackedRun, log_eval_run, summary_metrics, tracking_failure

    measured = [c for c in opt.candidates if c.train or c.heldout]
    if not measured or not evals.settings.enabled:
        return
    tracker = evals._open()
    if tracker is None:
        opt.handoff.append((f"promptgate: the candidates' runs are not logged: {evals._down}", {"yellow": True}))
        return
    prefix = evals.settings.experiment_prefix + EXPERIMENT_SUFFIX
    for candidate in measured:
        for summary in summarize(candidate.train + candidate.heldout):
            cases = [r.to_dict() for r in candidate.train + candidate.heldout if r.eval == summary.eval]
            tags = {**candidate_tags(opt, candidate), "promptgate.optimize.train_cases": str(
                sum(r.eval == summary.eval for r in candidate.train)),
                "promptgate.optimize.heldout_cases": str(sum(r.eval == summary.eval for r in candidate.heldout))}
            record = TrackedRun(
                eval=summary.eval, variant=summary.variant, suite="optimize", session=evals.session_id,
                params={f"prompt.{opt.request.name}": prompt_digest(candidate.prompt)},
                metrics=summary_metrics(summary), tags=tags, cases=cases,
                prompts={opt.request.name: candidate.prompt}, complete=False, experiment_prefix=prefix,
            )
            try:
                candidate.run_ids.append(log_eval_run(tracker, record))
            except Exception as exc:  # a TrackingError; anything else in its words
                opt.handoff.append((f"promptgate: run of candidate {candidate.label} not logged: "
                                    f"{tracking_failure(exc, tracker.uri)}", {"yellow": True}))


def candidate_tags(opt: Optimization, candidate: Candidate) -> dict[str, str]:
    """The tags of a candidate's runs, and (for the winner) of its registry version."""
    tags = {
        "promptgate.optimization_id": opt.id, "promptgate.optimize.prompt": opt.request.name,
        "promptgate.optimize.round": str(candidate.round), "promptgate.optimize.candidate": candidate.label,
        "promptgate.optimize.hypothesis": candidate.hypothesis, "promptgate.optimize.goal": opt.request.goal,
        "promptgate.optimize.status": candidate.status, "promptgate.optimize.optimizer": opt.optimizer_model or "",
    }
    if candidate.p_adjusted is not None:
        tags["promptgate.optimize.p_value"] = f"{candidate.p_value:.6g}"
        tags["promptgate.optimize.p_adjusted"] = f"{candidate.p_adjusted:.6g}"
    return tags


def hand_off(opt: Optimization, evals: Any, slot: Slot) -> None:
    """Register the winner at alias ``candidate`` (a registry prompt), or write it back (a file or inline prompt)."""
    winner = opt.winner
    assert winner is not None
    prompt = slot.variant.prompts[slot.key]
    if prompt.registry_name:
        _register(opt, evals, winner, prompt.registry_name, prompt.version)
        return
    source = ((get_state(opt.config).evals.get(slot.eval) or {}).get("prompt_sources") or {}).get(slot.key, {})
    if source.get("kind") not in ("file", "inline"):
        opt.handoff.append((f"promptgate: prompt {opt.request.name!r} of {slot.eval} cannot be written back",
                            {"red": True}))
        return
    lines, ok = write_prompt(source, winner.prompt, opt.request.dry_run, owner=slot.eval, name=slot.key,
                             held=f"candidate {winner.label}", wrote=f"the winning candidate {winner.label}")
    opt.handoff += lines
    opt.handed_off = ok


def _register(opt: Optimization, evals: Any, winner: Candidate, registry_name: str, parent: int | None) -> None:
    from ..tracking import register_prompt_version, tracking_failure

    if opt.request.dry_run:
        opt.handoff.append((f"promptgate: --prompt-dry-run: {registry_name} not registered; the winner is "
                            f"candidate {winner.label}", {"yellow": True}))
        opt.handed_off = True
        return
    tracker = evals._open()
    if tracker is None:
        opt.handoff.append((f"promptgate: cannot register {registry_name}: {evals._down}", {"red": True}))
        return
    evidence = [c.run_id for c in evals.checks if c.run_id] + [i for c in opt.candidates for i in c.run_ids]
    tags = {**candidate_tags(opt, winner), "promptgate.optimize.parent_version": str(parent or ""),
            "promptgate.optimize.parent_digest": prompt_digest(opt.current_prompt or ""),
            "promptgate.optimize.evidence_runs": ",".join(evidence)}
    try:
        version = register_prompt_version(
            tracker, registry_name, winner.prompt, alias="candidate", tags=tags,
            message=f"optimizer candidate {winner.label}: {winner.hypothesis} (pytest-promptgate)",
        )
    except Exception as exc:  # a TrackingError; anything else in its words
        opt.handoff.append((f"promptgate: cannot register {registry_name}: {tracking_failure(exc, tracker.uri)}",
                            {"red": True}))
        return
    opt.handed_off = True
    opt.handoff.append((f"promptgate: registered {registry_name} version {version} (alias 'candidate') from "
                        f"candidate {winner.label}; promote it with pytest --promote {registry_name}", {"green": True}))
