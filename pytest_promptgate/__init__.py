"""pytest-promptgate: prompt evaluations as pytest items, gated like releases.

The names below are what conftest files and grader packages import. They are
loaded on first use: pytest imports this package in every run, evals or not.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .graders.base import BaseGrader, GradeContext, GradeResult, Options
    from .targets.base import TargetResult

__all__ = ["BaseGrader", "GradeContext", "GradeResult", "Options", "TargetResult"]

_HOMES = {
    "BaseGrader": ".graders.base",
    "GradeContext": ".graders.base",
    "GradeResult": ".graders.base",
    "Options": ".graders.base",
    "TargetResult": ".targets.base",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'pytest_promptgate' has no attribute {name!r}")
    return getattr(importlib.import_module(home, __name__), name)
