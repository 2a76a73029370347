"""The rules between the rooms (DESIGN §10, docs/architecture.md) hold, and each one would catch its breach.

The contracts live in ``pyproject.toml`` and are checked by import-linter, whose
graph (grimp) includes imports made inside functions: a lazy import is still a
dependency. Each contract is also broken once, in a copy of the package, to
show that it fails when its rule does.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "pytest_promptgate"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` run at ``root`` (its pyproject.toml, its copy of the package first on the path)."""
    args = [str(LINT_IMPORTS), "--no-cache", "--no-logo", *(f"--contract={c}" for c in contracts)]
    return subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)})


def test_every_contract_is_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 broken" in result.stdout
    kept = [line for line in result.stdout.splitlines() if line.endswith(" KEPT")]
    assert len(kept) >= 6, result.stdout


def test_no_module_imports_itself_back():
    """No circle among single modules either (acyclic_siblings compares packages as wholes, so a package's
    ``__init__`` importing back from one of its own modules would escape it)."""
    graph = grimp.build_graph(PACKAGE, exclude_type_checking_imports=True)
    circles = [sorted(c) for c in _strongly_connected(graph, sorted(graph.modules)) if len(c) > 1]
    assert circles == []


def _strongly_connected(graph: grimp.ImportGraph, modules: list[str]) -> list[set[str]]:
    """Tarjan's algorithm over the direct imports of ``modules``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == module:
                    break
            components.append(component)

    for module in modules:
        if module not in index:
            visit(module)
    return components


# (contract id, module to change, line appended to it): each line breaks exactly that rule, from inside a
# function where the real code would do it lazily.
BREACHES = [
    ("acyclic", "results.py", "def _breach():\n    from . import verdicts\n"),
    ("mlflow", "collect.py", "def _breach():\n    import mlflow\n"),
    ("pure", "template.py", "def _breach():\n    import pytest\n"),
    ("top-floor", "promote.py", "def _breach():\n    from . import plugin\n"),
    ("workers", "graders/strings.py", "def _breach():\n    from .. import tracking\n"),
    ("faces", "session.py", "def _breach():\n    from .tracking.store import Tracker\n"),
]


@pytest.mark.parametrize(("contract", "module", "line"), BREACHES, ids=[b[0] for b in BREACHES])
def test_each_contract_fails_when_its_rule_is_broken(tmp_path, contract, module, line):
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copytree(ROOT / PACKAGE, tmp_path / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    assert lint_imports(tmp_path, contract).returncode == 0  # the copy keeps it, as the repository does
    target = tmp_path / PACKAGE / module
    target.write_text(target.read_text() + "\n\n" + line)
    result = lint_imports(tmp_path, contract)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Contracts: 0 kept, 1 broken." in result.stdout
