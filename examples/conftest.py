"""The example project's conftest: the app fixture the evals target, and a custom grader."""

import pytest

from support_app.router import Router

# optimize/ is a project of its own (its pytest.ini; its prompt lives in the registry): run it as `pytest examples/optimize`.
collect_ignore = ["optimize"]


@pytest.fixture(scope="session")
def router():
    """The app is set up once per session; the eval calls it through `target: fixture:router`."""
    return Router()


def polite(output, options):
    """A team-specific check: replies greet the customer and sign off."""
    import json

    reply = json.loads(output).get("reply", "")
    sign_off = options.get("sign_off", "Best regards")
    if not reply.startswith("Hi "):
        return False, "reply does not greet the customer"
    if sign_off not in reply:
        return False, f"reply does not sign off with {sign_off!r}"
    return True, "greets and signs off"


@pytest.hookimpl(optionalhook=True)  # so `pytest -p no:promptgate` still works
def pytest_promptgate_register_graders(config):
    """Make `type: polite` available in eval files."""
    return {"polite": polite}
