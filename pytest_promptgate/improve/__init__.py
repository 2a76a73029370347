"""The improve loop (DESIGN §11): labels measured against judges, datasets exported
and imported, and the optimizer that proposes prompts the gate then proves.

Controller-only: workers never import it (the ``workers`` contract). Reading a
labels file is part of reading an eval, so it lives in ``schema/``; what this room
does with labels (agreement, templates, export) happens after the items ran.
Other rooms import what they need from this face, not from its modules.
"""

from __future__ import annotations

from .agreement import JUDGE_TYPES, Agreement, Kappa, agreement_lines, cohens_kappa, judge_agreement
from .findings import Findings, LabelCount, label_findings
from .export import EXPORT_VERSION, export_rows, write_export
from .labelling import template_rows, write_label_templates

__all__ = [
    "EXPORT_VERSION", "JUDGE_TYPES", "Agreement", "Kappa", "agreement_lines", "cohens_kappa", "export_rows",
    "Findings", "LabelCount", "judge_agreement", "label_findings", "template_rows", "write_export", "write_label_templates",
]
