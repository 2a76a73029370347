"""The improve loop (DESIGN §11): labels measured against judges, datasets exported
and imported, and the optimizer that proposes prompts the gate then proves.

Controller-only: workers never import it (the ``workers`` contract). Reading a
labels file is part of reading an eval, so it lives in ``schema/``; what this room
does with labels (agreement, templates, export) happens after the items ran.
Other rooms import what they need from this face, not from its modules.

- ``evidence``: the training/held-out split, what the optimizer is shown, which candidates are refused;
- ``decide``: ranking by the goal and the held-out test (pure);
- ``metaprompt``: the built-in proposal strategy;
- ``optimizer``: ``--prompt-optimize`` and its rounds;
- ``handoff``: the candidates' MLflow runs, and the winner registered or written back;
- ``render``: the optimization as terminal lines, JSON and Markdown;
- ``importing``: ``--prompt-import``, other tools' eval definitions written as eval files.
"""

from __future__ import annotations

from .agreement import (
    JUDGE_TYPES,
    Agreement,
    Kappa,
    agreement_lines,
    cohens_kappa,
    judge_agreement,
)
from .decide import adjusted, beats, sign_test_greater, wins_losses
from .evidence import (
    GOALS,
    Evidence,
    FailingCase,
    Proposal,
    Tried,
    build_evidence,
    refusal,
    split_of,
)
from .export import EXPORT_VERSION, export_rows, write_export
from .findings import Findings, LabelCount, label_findings
from .importing import Imported, ImportFailure, import_command, import_evals
from .labelling import template_rows, write_label_templates
from .metaprompt import META_PROMPT, meta_prompt, parse_candidates
from .optimizer import EXIT_NO_WINNER, EXIT_WINNER, Optimization
from .render import (
    optimization_html,
    optimization_json,
    optimization_lines,
    optimization_markdown,
)

__all__ = [
    "EXIT_NO_WINNER",
    "EXIT_WINNER",
    "EXPORT_VERSION",
    "GOALS",
    "JUDGE_TYPES",
    "META_PROMPT",
    "Agreement",
    "Evidence",
    "FailingCase",
    "Findings",
    "ImportFailure",
    "Imported",
    "Kappa",
    "LabelCount",
    "Optimization",
    "Proposal",
    "Tried",
    "adjusted",
    "agreement_lines",
    "beats",
    "build_evidence",
    "cohens_kappa",
    "export_rows",
    "import_command",
    "import_evals",
    "judge_agreement",
    "label_findings",
    "meta_prompt",
    "optimization_html",
    "optimization_json",
    "optimization_lines",
    "optimization_markdown",
    "parse_candidates",
    "refusal",
    "sign_test_greater",
    "split_of",
    "template_rows",
    "wins_losses",
    "write_export",
    "write_label_templates",
]
