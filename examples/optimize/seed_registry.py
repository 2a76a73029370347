"""Register the ticket-triage eval's first prompt, ``triage``, at alias production (docs/optimize.md).

Run from where you run pytest (the repository root): ``python examples/optimize/seed_registry.py``.
It writes to the same store the plugin uses by default, ``sqlite:///mlflow.db`` there.
"""

from mlflow import MlflowClient

FIRST = """You route customer support tickets.
Labels: refund, billing, other
Answer with one word: the label that fits best.
Message: {{message}}"""

client = MlflowClient(tracking_uri="sqlite:///mlflow.db")
version = client.register_prompt("triage", FIRST, commit_message="first version: too few labels")
client.set_prompt_alias("triage", "production", int(version.version))
print(f"registered triage version {version.version} at alias production")
