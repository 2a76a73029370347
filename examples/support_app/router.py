"""Ticket routing: the function the intent-routing eval targets."""

from __future__ import annotations

from . import model


class Router:
    """Routes a ticket to an intent label. Made once per session by the ``router`` fixture.

    promptgate calls it from several threads at once (``--prompt-concurrency``), so it keeps no
    per-call state.
    """

    def __init__(self, default_label: str = "other") -> None:
        self.default_label = default_label

    def __call__(self, prompt: str) -> dict:
        """Called by promptgate with the rendered prompt; returns the label and token usage."""
        completion = model.complete(prompt)
        label = completion.output.strip().lower().rstrip(".").split()[-1] or self.default_label
        return {
            "output": label,
            "input_tokens": completion.input_tokens,
            "output_tokens": completion.output_tokens,
            "model": completion.model,
        }


def route(prompt: str) -> dict:
    """The same routing as a plain function, for evals (like ticket-triage) whose target is ``module:callable``."""
    return Router()(prompt)
