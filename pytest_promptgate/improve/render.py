"""The optimization as text and data: the terminal table, the JSON report's section, the Markdown section.

Built from the :class:`~.optimizer.Optimization` after its rounds; never writes anything itself.
"""

from __future__ import annotations

from typing import Any

#: Hypotheses are cut to this width in the tables (the JSON keeps them whole).
HYPOTHESIS_WIDTH = 60
_HEADERS = ["candidate", "hypothesis", "train", "held-out", "adjusted p", "cost (USD)", "result"]


def _rows(opt: Any) -> list[list[str]]:
    rows = [["current", "(the prompt to improve)", _rate(opt.current_train), _rate(opt.current_heldout), "-", "-", "-"]]
    for c in opt.candidates:
        hypothesis = c.hypothesis if len(c.hypothesis) <= HYPOTHESIS_WIDTH else c.hypothesis[:HYPOTHESIS_WIDTH - 1] + "…"
        rows.append([c.label, hypothesis, _rate(c.train_pass_rate), _rate(c.heldout_pass_rate),
                     "-" if c.p_adjusted is None else f"{c.p_adjusted:.3g}", f"{c.cost_usd:.4f}", c.status])
    return rows


def _conclusion(opt: Any) -> str:
    r, b = opt.request, opt.budget
    spent = (f"optimizer: {opt.optimizer_model or '-'}, {b.optimizer_calls} call(s), USD {b.optimizer_usd:.4f}; "
             f"candidate runs USD {b.evaluation_usd:.4f}"
             + (f"; budget USD {r.budget_usd:g}" if r.budget_usd is not None else ""))
    if opt.winner is not None:
        head = f"winner: {opt.winner.label} ({opt.winner.hypothesis})"
    else:
        head = opt.stop_reason or "no candidate won: nothing registered or written"
    if opt.winner is not None and opt.stop_reason:
        head += f"; {opt.stop_reason}"
    return f"{head}. {spent}"


def optimization_lines(opt: Any) -> list[str]:
    """The terminal section: settings, the candidates' table, the decision and the spend."""
    from tabulate import tabulate

    r = opt.request
    lines = [f"optimization {opt.id}: goal {r.goal}, {r.candidates} candidate(s) x {r.rounds} round(s), "
             f"held-out fraction {r.holdout:g}, alpha {r.alpha:g} (Holm over the candidates tried)"]
    if opt.current_prompt is not None:
        cells = _rows(opt)
        rule = ["-" * max(len(row[i]) for row in [_HEADERS, *cells]) for i in range(len(_HEADERS))]
        lines += tabulate([_HEADERS, rule, *cells], tablefmt="plain", disable_numparse=True).splitlines()
    lines.append(_conclusion(opt))
    return lines


def optimization_json(opt: Any) -> dict[str, Any]:
    """The ``optimization`` section of the JSON report (rates as fractions)."""
    r, b = opt.request, opt.budget
    return {
        "id": opt.id, "prompt": r.name, "goal": r.goal, "rounds": r.rounds, "candidates_per_round": r.candidates,
        "holdout": r.holdout, "alpha": r.alpha, "optimizer": opt.optimizer_model,
        "current": {"train_pass_rate": opt.current_train, "heldout_pass_rate": opt.current_heldout},
        "candidates": [{
            "label": c.label, "round": c.round, "hypothesis": c.hypothesis, "prompt": c.prompt, "refused": c.refused,
            "train_pass_rate": c.train_pass_rate, "heldout_pass_rate": c.heldout_pass_rate, "p_value": c.p_value,
            "p_adjusted": c.p_adjusted, "cost_usd": c.cost_usd, "status": c.status, "run_ids": c.run_ids,
        } for c in opt.candidates],
        "winner": opt.winner.label if opt.winner is not None else None,
        "handed_off": opt.handed_off,
        "stop_reason": opt.stop_reason,
        "spent": {"optimizer_usd": b.optimizer_usd, "optimizer_calls": b.optimizer_calls,
                  "evaluation_usd": b.evaluation_usd, "budget_usd": r.budget_usd},
    }


def optimization_markdown(opt: Any) -> str:
    """The Markdown section (appended to ``--prompt-report-md``)."""
    lines = [f"## Optimization of `{opt.request.name}`", ""]
    if opt.current_prompt is not None:
        lines += ["| " + " | ".join(_HEADERS) + " |", "|" + "---|" * len(_HEADERS)]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in _rows(opt)]
        lines.append("")
    lines += [_conclusion(opt), ""]
    return "\n".join(lines)


def optimization_html(opt: Any) -> str:
    """The HTML report's section (``--prompt-report-html``): the same table, in the page's own table style."""
    from html import escape

    parts = [f'<section id="optimization"><h2>Optimization of {escape(opt.request.name)}</h2>']
    if opt.current_prompt is not None:
        parts.append("<table><thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in _HEADERS) + "</tr></thead><tbody>")
        parts += ["<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in _rows(opt)]
        parts.append("</tbody></table>")
    parts.append(f"<p>{escape(_conclusion(opt))}</p></section>")
    return "".join(parts)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
