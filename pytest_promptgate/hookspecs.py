"""The plugin's own hooks (pluggy specifications), added through ``pytest_addhooks``.

Implement them in a ``conftest.py`` or a plugin, like any pytest hook.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest


@pytest.hookspec
def pytest_promptgate_register_graders(config: pytest.Config) -> Mapping[str, Any] | None:
    """Add grader types: return ``{type name: grader}``.

    A grader is a :class:`pytest_promptgate.BaseGrader` subclass (its ``Options``
    model checks the keys an eval file gives it at collection) or a plain
    function called with the keyword arguments it declares among ``output``,
    ``expected``, ``vars``, ``result``, ``case_id``, ``variant``, ``options`` and
    ``context``, returning a bool, a score in [0, 1], ``(passed, reason)``, a
    mapping with ``pass``/``score``/``reason``, or a ``GradeResult``.

    Mark the implementation ``@pytest.hookimpl(optionalhook=True)`` so that the
    conftest still loads when the plugin is disabled (``-p no:promptgate``).

    Called once per process (under xdist, once per worker), when the first eval
    file is collected. Packages can
    publish grader types without a hook through the ``pytest_promptgate.graders``
    entry-point group (name = type name, value = the grader).
    """


@pytest.hookspec(firstresult=True)
def pytest_promptgate_propose_prompts(config: pytest.Config, evidence: Any, ask: Any) -> Any:
    """Propose candidate prompts for ``--prompt-optimize`` (docs/optimize.md): return a list of
    ``{"prompt": text, "hypothesis": one line}`` (or objects with those attributes), or None to let
    the next implementation answer.

    ``evidence`` is a :class:`pytest_promptgate.improve.Evidence`: the prompt to improve
    (``prompt``, its ``variables``), the ``goal``, how many candidates are wanted
    (``count``), the ``round``, the failing and flaky cases of the training split
    (``failures``: vars, output, expected, failed graders' reasons, failure modes,
    labels) and what earlier rounds ``tried``; ``evidence.as_json()`` is all of it as
    one JSON text. ``ask(text)`` sends ``text`` to the configured optimizer model and
    returns its answer; its cost counts toward ``--optimize-budget-usd``.

    The first result that is not None is used (``firstresult``); the built-in strategy, a
    meta-prompt, is registered ``trylast``. Called once per round on the controlling
    process after the session's items ran. Mark the implementation
    ``@pytest.hookimpl(optionalhook=True)``.
    """
