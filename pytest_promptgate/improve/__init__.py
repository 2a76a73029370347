"""The improve loop (DESIGN §11): labels measured against judges, datasets exported
and imported, and the optimizer that proposes prompts the gate then proves.

Controller-only: workers never import it (the ``workers`` contract). Reading a
labels file is part of reading an eval, so it lives in ``schema/``; what this room
does with labels (agreement, templates, export) happens after the items ran.
Other rooms import what they need from this face, not from its modules.
"""

from __future__ import annotations

from .importing import Imported, ImportFailure, import_command, import_evals

__all__ = ["ImportFailure", "Imported", "import_command", "import_evals"]
