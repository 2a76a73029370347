"""benchmarks/run.py keeps working: a smoke run at tiny sizes (its figures mean nothing and are not checked).

The benchmark script is how speed is measured (DESIGN §9); a refactoring that breaks it would only be found by
the next person who wants figures. Tiny sizes, one run, and the document left alone.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_large_session_benchmark_runs_against_its_plain_pytest_floor():
    doc = ROOT / "docs" / "benchmarks.md"
    before = doc.read_bytes()
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke", "--runs", "1", "--only", "b6-large"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Every size ran both configurations, each checked by the script (exit code, passed count, the MLflow store).
    for cases in (10, 30, 60):
        assert f"eval: {cases} cases × 1 variant ({cases} items): median" in done.stdout
        assert f"floor: {cases} parametrized tests, same checks" in done.stdout
    assert "eval with `PROMPTGATE_FAST_EXIT=off`: 60 cases × 1 variant (60 items): median" in done.stdout
    assert "× the floor at 60 cases" in done.stdout
    assert "KiB per added case" in done.stdout
    assert doc.read_bytes() == before


def test_b1_measures_the_eval_session_also_as_plain_pytest_ends():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke", "--runs", "1", "--only", "b1-overhead"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Each configuration ran and was checked: the eval, its floor, and the eval ending as plain pytest does.
    for label in ("eval: 10 cases × 2 variants (20 items)", "floor: 20 parametrized tests, same checks (`-p no:promptgate`)",
                  "eval with `PROMPTGATE_FAST_EXIT=off`: 10 cases × 2 variants (20 items)"):
        assert f"    {label}: median" in done.stdout, label
