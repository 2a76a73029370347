"""The plugin loads in every pytest run of an environment: loading it must stay light."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("mlflow", "pydantic", "yaml", "openai", "httpx", "sqlalchemy", "numpy", "tabulate", "jsonschema", "rapidfuzz",
         "wordllama", "model2vec")


def imported_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"import sys; {code}; print('\\n'.join(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True,
    ).stdout
    return {name.split(".")[0] for name in out.split()}


def test_loading_the_plugin_imports_nothing_heavy():
    before = imported_after("import pytest")
    after = imported_after("import pytest, pytest_promptgate.plugin")
    assert not {name for name in after - before if name in HEAVY}


def test_public_names_load_on_first_use():
    assert "pydantic" not in imported_after("import pytest_promptgate")
    assert "pydantic" in imported_after("from pytest_promptgate import BaseGrader, GradeResult, TargetResult")


def test_a_plain_run_with_eval_files_present_imports_nothing_heavy(pytester):
    pytester.makefile(".eval.yaml", x="eval: x\ntarget: echo\ncases: [{id: a}]\n")
    pytester.makepyfile(test_plain="""
        import sys
        def test_light():
            loaded = {name.split(".")[0] for name in sys.modules}
            assert not loaded & {"mlflow", "pydantic", "yaml", "openai"}, loaded & {"mlflow", "pydantic", "yaml", "openai"}
    """)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
