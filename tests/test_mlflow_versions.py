"""One MLflow version range everywhere: no extra may pull ``mlflow-skinny`` to another version than the core install.

The full ``mlflow`` package pins ``mlflow-skinny`` to its own version. When the core
dependencies allow a newer ``mlflow-skinny`` than an extra's ``mlflow`` can be installed
at, installing the extra after the plain install downgrades ``mlflow-skinny`` under the
store the first session created, and MLflow then refuses that store (issue 12, defect 2).
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
MLFLOW = {"mlflow", "mlflow-skinny"}


def mlflow_requirements() -> list[tuple[str, str, str]]:
    """``(where, distribution, specifier)`` of every mlflow/mlflow-skinny requirement in pyproject.toml."""
    from packaging.requirements import Requirement

    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    lists = {"dependencies": project["dependencies"]}
    lists.update({f"[{name}]": value for name, value in project["optional-dependencies"].items()})
    found = []
    for where, requirements in lists.items():
        for text in requirements:
            requirement = Requirement(text)
            if requirement.name.lower() in MLFLOW:
                found.append((where, requirement.name.lower(), str(requirement.specifier)))
    return found


def test_every_mlflow_requirement_has_the_same_bounded_range():
    found = mlflow_requirements()
    places = {where for where, _, _ in found}
    assert {"dependencies", "[ui]", "[test]"} <= places, found  # the core install and both extras that add MLflow
    assert {name for _, name, _ in found} == MLFLOW, found
    assert len({specifier for _, _, specifier in found}) == 1, found
    specifier = found[0][2]
    assert re.fullmatch(r"<\d+(\.\d+)*,>=\d+(\.\d+)*", specifier), f"{specifier!r}: want a lower and an upper bound"


def test_the_installed_mlflow_is_one_version_inside_the_range():
    from packaging.specifiers import SpecifierSet

    [specifier] = {specifier for _, _, specifier in mlflow_requirements()}
    skinny = metadata.version("mlflow-skinny")
    assert skinny in SpecifierSet(specifier)
    assert metadata.version("mlflow") == skinny  # the test extra's full package matches the core's skinny one
