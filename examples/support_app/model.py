"""A deterministic stand-in for a chat model: it follows the instructions it can find in the prompt."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Words that point at each intent; the model only picks intents the prompt offers.
SIGNALS = {
    "refund": ("refund", "money back", "reimburse", "return"),
    "billing": ("charged", "invoice", "bill", "payment", "card"),
    "shipping": ("delivery", "package", "shipped", "tracking", "arrive"),
    "technical": ("error", "crash", "login", "password", "bug", "app"),
}


@dataclass
class Completion:
    """What the model returns, with token usage like a real endpoint reports it."""

    output: str
    input_tokens: int
    output_tokens: int
    model: str = "gpt-4o-mini"


def complete(prompt: str) -> Completion:
    """Classify the message in the prompt into one of the labels the prompt lists."""
    labels = _offered_labels(prompt)
    message = prompt.rsplit("Message:", 1)[-1].lower()
    scores = {label: sum(word in message for word in SIGNALS.get(label, ())) for label in labels}
    best = max(scores, key=lambda label: (scores[label], -labels.index(label)), default="other")
    answer = best if scores.get(best) else "other"
    if "one word" not in prompt.lower():
        answer = f"The intent is {answer}."
    return Completion(answer, _tokens(prompt), _tokens(answer))


def _offered_labels(prompt: str) -> list[str]:
    match = re.search(r"Labels?:\s*([a-z ,]+)", prompt)
    return [label.strip() for label in match.group(1).split(",") if label.strip()] if match else []


def _tokens(text: str) -> int:
    return max(1, round(len(text.split()) * 1.3))
