"""Operational limits: how long the target took, what it cost, how many tokens it used.

They read the :class:`~pytest_promptgate.targets.base.TargetResult` of the run,
not the output. Score: 1 within the limit, else ``limit / actual``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..targets.base import TargetResult
from . import base
from .base import BaseGrader, GradeContext, GradeResult


class _Limit(BaseGrader):
    """Compares one number the target reported with a maximum."""

    @property
    def limit(self) -> float:
        """The maximum allowed."""
        raise NotImplementedError

    def measure(self, result: TargetResult) -> float | None:
        """The number the target reported, or None when it reported none."""
        raise NotImplementedError

    def unreported(self, result: TargetResult) -> str:
        """The reason when the target reported nothing to compare."""
        raise NotImplementedError

    def show(self, amount: float) -> str:
        """An amount as a person reads it."""
        raise NotImplementedError

    def grade(self, ctx: GradeContext) -> GradeResult:
        actual = self.measure(ctx.result)
        if actual is None:
            return GradeResult(False, 0.0, self.unreported(ctx.result))
        if actual <= self.limit:
            return GradeResult(True, 1.0, f"{self.show(actual)}, within max {self.show(self.limit)}")
        return GradeResult(False, self.limit / actual, f"{self.show(actual)}, above max {self.show(self.limit)}")


class Latency(_Limit):
    """Passes when the target answered within ``max_ms`` milliseconds (wall time of the call)."""

    type = "latency"

    class Options(base.Options):
        max_ms: float = Field(gt=0)

    @property
    def limit(self) -> float:
        return self.options.max_ms

    def measure(self, result: TargetResult) -> float:
        return result.latency_ms

    def show(self, amount: float) -> str:
        return f"{amount:.0f} ms" if amount >= 10 else f"{amount:.3g} ms"


class Cost(_Limit):
    """Passes when the run cost at most ``max_usd`` US dollars.

    The target must report the cost (``cost_usd`` in its result); a run without
    one fails, since an unknown cost cannot be shown to be within the limit.
    """

    type = "cost"

    class Options(base.Options):
        max_usd: float = Field(ge=0)

    @property
    def limit(self) -> float:
        return self.options.max_usd

    def measure(self, result: TargetResult) -> float | None:
        return result.cost_usd

    def unreported(self, result: TargetResult) -> str:
        return (
            "the target reported no cost; return cost_usd in the target's result, or its model and token "
            "counts with a price for the model (eval file pricing or ini promptgate_pricing)"
        )

    def show(self, amount: float) -> str:
        return f"${amount:.4g}"


class Tokens(_Limit):
    """Passes when the run used at most ``max`` tokens.

    Options: ``max``; ``count``: ``total`` (default, input + output), ``input``
    or ``output``. The target must report the counts (``input_tokens`` /
    ``output_tokens`` in its result); a run without them fails.
    """

    type = "tokens"

    class Options(base.Options):
        max: int = Field(ge=0)
        count: Literal["total", "input", "output"] = "total"

    @property
    def limit(self) -> float:
        return self.options.max

    def measure(self, result: TargetResult) -> float | None:
        counts = {"input": result.input_tokens, "output": result.output_tokens}
        if self.options.count != "total":
            return counts[self.options.count]
        return None if None in counts.values() else sum(counts.values())  # type: ignore[arg-type]

    def unreported(self, result: TargetResult) -> str:
        wanted = ("input", "output") if self.options.count == "total" else (self.options.count,)
        missing = [w for w in wanted if getattr(result, f"{w}_tokens") is None]
        fields = " and ".join(f"{w}_tokens" for w in missing)
        return f"the target reported no {' or '.join(missing)} token count; return {fields} in the target's result to check it"

    def show(self, amount: float) -> str:
        return f"{amount:.0f} {self.options.count} tokens"


GRADERS = (Latency, Cost, Tokens)
