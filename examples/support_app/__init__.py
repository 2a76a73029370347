"""An offline support-desk app: routes tickets to an intent and drafts replies.

It stands in for a team's real LLM feature. Its "model" (``support_app.model``)
is deterministic and runs offline, but it reads the prompt it is given, so
prompt variants change its answers the way they would with a real model.
"""
