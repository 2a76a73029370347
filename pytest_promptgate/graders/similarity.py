"""Similarity of the output to a reference text, scored in [0, 1].

The metric libraries (rapidfuzz, sacrebleu, rouge-score) come with the
``graders`` extra and are imported only when a case is graded; ``cosine``'s
embedding model comes with the ``embeddings`` extra (:mod:`.embeddings`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from . import base, embeddings
from .base import BaseGrader, GradeContext, GradeResult

# metric -> (module that must be importable, distribution to install)
LIBRARIES = {
    "fuzzy": ("rapidfuzz", "rapidfuzz"),
    "levenshtein": ("rapidfuzz", "rapidfuzz"),
    "bleu": ("sacrebleu", "sacrebleu"),
    "rouge_l": ("rouge_score", "rouge-score"),
}


def fuzzy(output: str, reference: str) -> float:
    """rapidfuzz's ``fuzz.ratio`` (normalised Indel similarity) over characters."""
    from rapidfuzz import fuzz

    return fuzz.ratio(output, reference) / 100


def levenshtein(output: str, reference: str) -> float:
    """1 - Levenshtein distance / length of the longer text."""
    from rapidfuzz.distance import Levenshtein

    return Levenshtein.normalized_similarity(output, reference)


def bleu(output: str, reference: str) -> float:
    """Sentence BLEU (sacrebleu defaults: 13a tokens, exp smoothing, effective order) / 100."""
    import sacrebleu

    return sacrebleu.sentence_bleu(output, [reference]).score / 100


class TextSimilarity(BaseGrader):
    """Passes when the output is at least ``pass_threshold`` similar to ``reference``.

    Options: ``metric``: ``fuzzy`` (character edit ratio), ``levenshtein``
    (normalised edit distance), ``bleu`` (sentence BLEU) or ``rouge_l`` (ROUGE-L
    F-measure over lower-cased words) or ``cosine`` (cosine similarity of sentence
    embeddings from a local model, below 0 counted as 0); ``model`` (``cosine``
    only: ``wordllama``, the default, or a local model2vec / sentence-transformers
    model directory); ``reference`` (template, default ``"{{expected}}"``);
    ``pass_threshold`` in [0, 1] (default 0.8). Surrounding whitespace of both
    texts is ignored. Score: the similarity itself.
    """

    type = "text_similarity"

    class Options(base.Options):
        metric: Literal["fuzzy", "levenshtein", "bleu", "rouge_l", "cosine"]
        reference: str = "{{expected}}"
        pass_threshold: float = Field(default=0.8, ge=0, le=1)
        model: str | None = None

        @field_validator("metric")
        @classmethod
        def _installed(cls, value: str) -> str:
            if value in LIBRARIES:
                module, distribution = LIBRARIES[value]
                if importlib.util.find_spec(module) is None:
                    raise ValueError(f"metric {value!r} needs {distribution}: pip install 'pytest-promptgate[graders]'")
            return value

        @model_validator(mode="after")
        def _model(self) -> TextSimilarity.Options:
            if self.metric != "cosine":
                if self.model is not None:
                    raise ValueError(f"model applies to metric cosine only, not {self.metric}")
                return self
            problem = embeddings.missing(self.model)
            if problem is not None:  # located at the grader's entry: name its type too
                raise ValueError(f"{TextSimilarity.type} {problem}")
            return self

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self._rouge: Any = None

    def similarity(self) -> Callable[[str, str], float]:
        """The function scoring (output, reference) for this grader's metric."""
        metric = self.options.metric
        if metric == "cosine":
            return self.cosine
        return self.rouge_l if metric == "rouge_l" else {"fuzzy": fuzzy, "levenshtein": levenshtein, "bleu": bleu}[metric]

    def cosine(self, output: str, reference: str) -> float:
        """Cosine similarity of the two texts' embeddings; opposed meanings (below 0) count as 0."""
        return max(0.0, min(1.0, embeddings.similarity(self.options.model, output, reference)))

    def rouge_l(self, output: str, reference: str) -> float:
        """ROUGE-L F-measure (rouge-score, no stemming); the scorer is built once per grader."""
        if self._rouge is None:
            from rouge_score import rouge_scorer

            self._rouge = rouge_scorer.RougeScorer(["rougeL"])
        return self._rouge.score(reference, output)["rougeL"].fmeasure

    def grade(self, ctx: GradeContext) -> GradeResult:
        try:
            reference = ctx.render(self.options.reference)
        except KeyError as exc:
            # Only the default reference can get here: given options are checked at collection.
            return GradeResult(False, 0.0, f"no reference: the case has no {exc.args[0]}; give it one or set reference")
        score = self.similarity()(ctx.output.strip(), reference.strip())
        threshold = self.options.pass_threshold
        passed = score >= threshold
        said, bar = _shown_pair(score, threshold)
        return GradeResult(passed, score, f"{self.options.metric} {said} {'at or above' if passed else 'below'} {bar}")


def _shown_pair(score: float, threshold: float) -> tuple[str, str]:
    """Score and threshold with two decimals, or more where two would misstate them (0.795 is not "0.80 below 0.80")."""
    bar = f"{threshold:.2f}" if round(threshold, 2) == threshold else f"{threshold:g}"
    for digits in (2, 3, 4, 6):
        said = f"{score:.{digits}f}"
        if (float(said) >= threshold) == (score >= threshold):
            break
    return said, bar


GRADERS = (TextSimilarity,)
