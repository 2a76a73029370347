"""Regenerate, or check, the plugin output the docs show: ``python docs/regen.py [--check]``.

A doc marks each block of output this script owns with a comment on the line
before its fence, naming a block below (:data:`BLOCKS`)::

    <!-- output: quickstart-first-run -->
    ```
    $ pytest examples --prompt-suite core
    ...
    ```

The script copies ``examples/`` to a fresh ``demo`` directory, runs the
documented commands there in order (the second run has the first as its
baseline, as it does for a reader), and puts what pytest printed into each
marked block, with the demo directory shown as ``/tmp/demo``. ``--check``
rewrites nothing: it says which blocks differ from what the plugin prints now,
after :func:`normalise` (durations, latencies, run ids and the platform lines
change from run to run), and exits 1 when one does; ``tests/test_docs.py`` runs it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Where the docs say the demo project is.
SHOWN_DIR = "/tmp/demo"
#: Plugins of the development environment that a user of the docs does not have (their header lines, warnings).
_OTHER_PLUGINS = ("asyncio", "hypothesispytest")
_MARK = re.compile(r"^<!-- output: (?P<name>[\w-]+) -->\n```[\w]*\n(?P<body>.*?)^```$", re.M | re.S)


@dataclass(frozen=True)
class Run:
    """One command of the story, as a reader types it in the demo directory."""

    args: tuple[str, ...]

    @property
    def prompt(self) -> str:
        return "$ pytest " + shlex.join(self.args)


#: The commands, in the order a reader of the quick start runs them.
RUNS = {
    "no-suite": Run(("examples",)),
    "first": Run(("examples", "--prompt-suite", "core")),
    "second": Run(("examples", "--prompt-suite", "core")),
    "collect-tone": Run(("examples", "--prompt-suite", "core", "--co", "-q", "-k", "tone")),
    "partial": Run(("examples", "--prompt-suite", "core", "-q", "-k", "terse and not tone")),
    "last-failed": Run(("examples", "--prompt-suite", "core", "--lf")),
    "fail-on-pass": Run(("examples", "--prompt-suite", "routing", "-q", "--prompt-fail-on", "pass")),
    "bad-ini": Run(("examples", "--prompt-suite", "routing", "-q", "-o", "promptgate_fail_on=bogus")),
    "no-such-suite": Run(("examples", "--prompt-suite", "nosuch")),
    # a partial run of the routing suite, compared with the complete run of fail-on-pass
    "routing-partial": Run(("examples", "--prompt-suite", "routing", "-q", "-k", "technical or shipping")),
}


def _from(pattern: str) -> Callable[[list[str]], list[str]]:
    """The lines from the first that starts with ``pattern`` on."""
    return lambda lines: lines[next(i for i, line in enumerate(lines) if line.startswith(pattern)):]


def _whole(lines: list[str]) -> list[str]:
    return lines


def _head(count: int) -> Callable[[list[str]], list[str]]:
    """The first ``count`` lines, then ``...`` for the rest."""
    return lambda lines: [*lines[:count], "..."]


def _partial(lines: list[str]) -> list[str]:
    """The progress line, then the promptgate summary down to its conclusion."""
    start = next(i for i, line in enumerate(lines) if line.startswith("=" * 34 + " promptgate"))
    end = next(i for i, line in enumerate(lines) if line.startswith("promptgate: session "))
    return [*lines[:2], "...", *lines[start:end + 1], "..."]


def _rerun(lines: list[str]) -> list[str]:
    """From ``collected`` to the progress line, then the promptgate summary down to its conclusion."""
    start = next(i for i, line in enumerate(lines) if line.startswith("collected"))
    progress = next(i for i, line in enumerate(lines) if line.startswith("examples/evals/"))
    return [*lines[start:progress + 1], *_partial(lines)[2:]]


def _table_and_first_note(lines: list[str]) -> list[str]:
    """The summary table with its footnote, the first note under it, and the conclusion."""
    head = next(i for i, line in enumerate(lines) if line.startswith("eval "))
    blank = lines.index("", head)
    end = next(i for i, line in enumerate(lines) if line.startswith("promptgate: session "))
    return [*lines[head:blank + 2], "...", lines[end], "..."]


def _without_summary_info(lines: list[str]) -> list[str]:
    """The lines after collection, without pytest's short test summary (its FAILED lines repeat the failures)."""
    start = next(i for i, line in enumerate(lines) if line.startswith("examples/evals/"))
    end = next(i for i, line in enumerate(lines) if "short test summary info" in line)
    last = next(i for i in range(len(lines) - 1, -1, -1) if lines[i].startswith("=" * 5))
    return lines[start:end] + [lines[last]]


def _apologetic(lines: list[str]) -> list[str]:
    """The summary table's head, the apologetic variant's row and its failure modes, the rest elided."""
    head = next(i for i, line in enumerate(lines) if line.startswith("eval "))
    row = next(line for line in lines if line.startswith("reply-drafting  apologetic"))
    modes = next(line for line in lines if line.startswith("failure modes of reply-drafting [apologetic]"))
    return [lines[head], lines[head + 1], "...", row, "", "...", modes]


@dataclass(frozen=True)
class Block:
    """A marked doc block: which run it shows, which of its lines, and how it opens and ends."""

    run: str
    select: Callable[[list[str]], list[str]]
    #: Show the command (``$ pytest ...``) as the first line, with this comment after it.
    comment: str | None = ""
    #: Lines between the command and the selected output (``...`` for lines left out).
    elided: bool = False
    #: End with ``$ echo $?`` and the exit status.
    status: bool = False


BLOCKS = {
    "quickstart-no-suite": Block("no-suite", _from("collected"), elided=True),
    "quickstart-first-run": Block("first", _whole, status=True),
    "quickstart-second-run": Block("second", _from("=" * 34 + " promptgate"), elided=True),
    "readme-second-run": Block("second", _without_summary_info, comment="   # the second run: each row is compared "
                               "with the first", status=True),
    "graders-failure-modes": Block("first", _apologetic, comment=None),
    "quickstart-collect-tone": Block("collect-tone", _whole),
    "quickstart-partial": Block("partial", _partial),
    "quickstart-last-failed": Block("last-failed", _rerun, elided=True, status=True),
    "options-fail-on-pass": Block("fail-on-pass", _head(2)),
    "options-bad-ini": Block("bad-ini", _whole),
    "options-no-such-suite": Block("no-such-suite", _from("collected"), elided=True),
    "mlflow-partial": Block("routing-partial", _table_and_first_note, elided=True),
}


def run_story(demo: Path) -> dict[str, tuple[list[str], int]]:
    """Run :data:`RUNS` in a fresh copy of ``examples/`` at ``demo``; {run name: (output lines, exit status)}."""
    shutil.copytree(ROOT / "examples", demo / "examples", ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PROMPTGATE_", "MLFLOW_", "PYTEST_", "GITHUB_")) and key not in ("COLUMNS", "LINES", "CI")}
    env["PYTEST_ADDOPTS"] = " ".join(f"-p no:{name}" for name in _OTHER_PLUGINS)
    pytest = shutil.which("pytest", path=str(Path(sys.executable).parent))
    command = [pytest] if pytest else [sys.executable, "-m", "pytest"]
    outputs = {}
    for name, run in RUNS.items():
        done = subprocess.run([*command, *run.args], cwd=demo, env=env, text=True, capture_output=True, timeout=600)
        text = (done.stdout + done.stderr).replace(str(demo), SHOWN_DIR)  # a usage error is on stderr
        outputs[name] = (text.rstrip("\n").splitlines(), done.returncode)
    return outputs


def render(block: Block, output: tuple[list[str], int]) -> str:
    """The text of a block: the command, the lines it shows, the exit status."""
    lines, status = output
    shown = []
    if block.comment is not None:
        shown.append(RUNS[block.run].prompt + block.comment)
    if block.elided:
        shown.append("...")
    shown += block.select(lines)
    if block.status:
        shown += ["$ echo $?", str(status)]
    return "\n".join(shown) + "\n"


def normalise(text: str) -> str:
    """What may change from one run to the next, made the same: durations, latencies, run ids, platform lines."""
    text = re.sub(r"\bin \d+\.\d+s\b", "in N.NNs", text)
    text = re.sub(r"^(platform|plugins|rootdir|cachedir): .*$", r"\1: ...", text, flags=re.M)
    text = re.sub(r" +\d+\.\d$", " N.N", text, flags=re.M)  # the p95 ms column, last in the summary table
    text = re.sub(r"=+ (\d+ failed, \d+ passed|no tests ran) in N.NNs =+", r"== \1 ==", text)
    return re.sub(r"\b[0-9a-f]{32}\b", "RUN_ID", text)


def marked(doc: Path) -> list[tuple[str, str]]:
    """The (block name, text) of each marked block of ``doc``."""
    return [(m["name"], m["body"]) for m in _MARK.finditer(doc.read_text(encoding="utf-8"))]


def docs() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def regenerate(outputs: dict[str, tuple[list[str], int]], check: bool) -> list[str]:
    """Rewrite (or, with ``check``, compare) every marked block; the differences found, one line each."""
    problems = []
    for doc in docs():
        text = doc.read_text(encoding="utf-8")

        def fill(m: re.Match[str], doc: Path = doc) -> str:
            name = m["name"]
            if name not in BLOCKS:
                problems.append(f"{doc.relative_to(ROOT)}: no block named {name!r} in docs/regen.py")
                return m[0]
            fresh = render(BLOCKS[name], outputs[BLOCKS[name].run])
            if normalise(fresh) == normalise(m["body"]):
                return m[0]  # the same but for timings: left as it is, so the docs do not churn
            problems.append(f"{doc.relative_to(ROOT)}: block {name!r} differs from what the plugin prints:\n"
                            + _diff(m["body"], fresh))
            return m[0].replace(m["body"], fresh, 1)

        new = _MARK.sub(fill, text)
        if not check and new != text:
            doc.write_text(new, encoding="utf-8")
    return problems


def _diff(old: str, new: str) -> str:
    import difflib

    return "".join(difflib.unified_diff(normalise(old).splitlines(True), normalise(new).splitlines(True),
                                        "in the doc", "printed now", n=1))


def main(argv: Sequence[str]) -> int:
    check = "--check" in argv
    with tempfile.TemporaryDirectory(prefix="promptgate-docs-") as tmp:
        demo = Path(tmp, "demo")
        demo.mkdir()
        problems = regenerate(run_story(demo), check)
    for problem in problems:
        print(problem)
    if check:
        return 1 if problems else 0
    print(f"docs/regen.py: {len(problems)} block(s) rewritten" if problems else "docs/regen.py: every block is current")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
