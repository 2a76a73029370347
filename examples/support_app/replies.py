"""Reply drafting: an async function, as a real app calling a model would have."""

from __future__ import annotations

import asyncio
import json

from . import model

OPENINGS = {"refund": "I have started your refund", "billing": "I have checked your invoice",
            "shipping": "I have looked up your package", "technical": "I have reset your session",
            "other": "I have passed your message on"}


async def draft_reply(prompt: str, vars: dict) -> dict:
    """Draft a JSON reply {intent, reply} for a customer message; the prompt's tone rules shape it."""
    await asyncio.sleep(0)  # a real app would await the model here
    completion = model.complete(prompt)
    intent = completion.output.strip().lower().rstrip(".").split()[-1]
    reply = f"Hi {vars['customer']}, {OPENINGS.get(intent, OPENINGS['other'])}."
    if "apologise" in prompt.lower():
        reply = f"Hi {vars['customer']}, sorry for the trouble! {OPENINGS.get(intent, OPENINGS['other'])}."
    if "sign off" in prompt.lower():
        reply += " Best regards, the Support Team"
    body = json.dumps({"intent": intent, "reply": reply})
    return {"output": body, "input_tokens": completion.input_tokens, "output_tokens": len(body.split()),
            "model": completion.model}
