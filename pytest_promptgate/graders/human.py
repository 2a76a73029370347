"""``human``: people's labels as a grader (DESIGN §11), for teams that trust a person's verdict over the graders'.

Opt-in: only an eval that lists ``{type: human}`` among its graders is graded by its
labels. A label about the exact output being graded (its ``output_sha``, as
``--prompt-label-template`` writes it) decides: ``good`` passes, ``bad`` fails with
the person's feedback as the reason. An output nobody labelled passes by default
(``unlabelled: fail`` makes it fail): new outputs are the rule, labels the exception.
"""

from __future__ import annotations

from typing import Literal

from ..schema import output_sha
from . import base
from .base import BaseGrader, GradeContext, GradeResult


class Human(BaseGrader):
    """Passes or fails as people labelled this very output; ``unlabelled`` says what an unlabelled output does."""

    type = "human"

    class Options(base.Options):
        unlabelled: Literal["pass", "fail"] = "pass"

    def grade(self, ctx: GradeContext) -> GradeResult:
        sha = output_sha(ctx.output)
        found = [label for label in ctx.labels if label.output_sha == sha]
        if not found:
            passed = self.options.unlabelled == "pass"
            return GradeResult(passed, 1.0 if passed else 0.0, f"nobody labelled this output (unlabelled: "
                                                                f"{self.options.unlabelled})")
        bad = [label for label in found if label.rating == "bad"]
        label = bad[0] if bad else found[0]
        by = f" by {label.annotator}" if label.annotator else ""
        said = f": {label.feedback}" if label.feedback else ""
        return GradeResult(not bad, 0.0 if bad else 1.0, f"labelled {label.rating}{by} ({label.where}){said}")


GRADERS = [Human]
