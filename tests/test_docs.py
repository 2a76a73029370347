"""The plugin output the docs show is what the plugin prints now (``docs/regen.py``, issue 14 item 6).

Runs the documented commands on a fresh copy of ``examples/``, as a reader would,
and compares every marked block of the docs with what pytest printed, after
normalising what changes from run to run (durations, latencies, run ids).
``python docs/regen.py`` rewrites the blocks that differ.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_regen():
    if "docs_regen" not in sys.modules:  # its dataclasses look their module up by name
        spec = importlib.util.spec_from_file_location("docs_regen", ROOT / "docs" / "regen.py")
        sys.modules["docs_regen"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules["docs_regen"])
    return sys.modules["docs_regen"]


def test_every_marked_doc_block_is_what_the_plugin_prints(tmp_path):
    regen = load_regen()
    demo = tmp_path / "demo"
    demo.mkdir()
    outputs = regen.run_story(demo)
    problems = regen.regenerate(outputs, check=True)
    assert problems == [], "run `python docs/regen.py` to update the docs:\n" + "\n".join(problems)
    used = {name for doc in regen.docs() for name, _ in regen.marked(doc)}
    assert used == set(regen.BLOCKS)  # every block the script knows is shown somewhere


def test_normalising_keeps_what_matters():
    regen = load_regen()
    row = "intent-routing  control         9           0/0/0   100.0% [70%-100%]        80%  PASS  1.000  0.000057     0.2"
    assert regen.normalise(row) == regen.normalise(row.replace("0.2", "1.4"))
    assert regen.normalise(row) != regen.normalise(row.replace("100.0% [70%", "90.0% [60%"))
    assert regen.normalise("==== 1 failed, 27 passed in 6.08s ====") == regen.normalise("=== 1 failed, 27 passed in 4.12s ===")
