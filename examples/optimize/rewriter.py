"""A deterministic stand-in for the optimizer model of ``--prompt-optimize`` (docs/optimize.md).

It reads the meta-prompt promptgate sends (the evidence is JSON after ``Evidence:``) and
rewrites the prompt by rules a person would try first: offer the labels the failing
cases expected but the prompt does not list, one at a time and all together. Nothing
here calls a network; a real model reads the same text and answers in the same form.
"""

from __future__ import annotations

import json
import re


def propose(prompt: str) -> dict:
    """Answer the meta-prompt with candidates: a JSON list of ``{"prompt", "hypothesis"}``."""
    evidence = json.loads(prompt[prompt.index("Evidence:") + len("Evidence:"):])
    current = evidence["prompt"]
    offered = _labels(current)
    missing = sorted({f["expected"] for f in evidence["failures"] if f["expected"] not in offered})
    candidates = [
        {"prompt": _with_labels(current, offered, [label]), "hypothesis": f"offer the missing label {label}"}
        for label in missing
    ]
    if len(missing) > 1:
        candidates.append({"prompt": _with_labels(current, offered, missing),
                           "hypothesis": f"offer every missing label ({', '.join(missing)})"})
    candidates.reverse()  # the broadest rewrite first
    answer = json.dumps(candidates[: evidence["count"]], indent=1)
    return {"output": answer, "input_tokens": len(prompt) // 4, "output_tokens": len(answer) // 4, "model": "rewriter"}


def _labels(prompt: str) -> list[str]:
    match = re.search(r"Labels?:\s*([a-z ,]+)", prompt)
    return [label.strip() for label in match.group(1).split(",") if label.strip()] if match else []


def _with_labels(prompt: str, offered: list[str], extra: list[str]) -> str:
    labels = [label for label in offered if label != "other"] + extra + (["other"] if "other" in offered else [])
    return re.sub(r"Labels?:\s*[a-z ,]+", "Labels: " + ", ".join(labels), prompt, count=1)
