"""The HTML report at 10 000 cases: how big the page is, and how long a real headless Chromium takes to open and filter it.

    python benchmarks/html_report.py [--cases N] [--keep DIR]

Runs one real pytest session (tracking off) of an eval with two variants and
N / 2 cases each, whose target answers at once with a 200-character output (a
tenth of the cases fail, with a grader's reason), writing ``--prompt-report-html``.
Then opens the page from disk in the Chromium of tests/chromium.py and reads the
page's own navigation timing (DOM ready, load), and times in the page one filter
by text and one by outcome over every row. Prints the figures; needs Debian's
``chromium`` and ``chromium-driver``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from chromium import chromium  # noqa: E402  (tests/chromium.py: the same browser the tests drive)

TARGET = '''
def answer(vars):
    n = int(vars["n"])
    return ("wrong " if n % 10 == 0 else "right ") + "lorem ipsum dolor sit amet " * 7 + str(n)
'''

#: Time to filter every row once, measured in the page (the script's own work, then the layout it causes).
FILTER = """
var control = document.getElementById(arguments[0]), start = performance.now();
control.value = arguments[1];
control.dispatchEvent(new Event('input'));
var shown = document.getElementById('shown').textContent;
document.body.offsetHeight;
return [performance.now() - start, shown];
"""


def write_project(root: Path, cases: int) -> None:
    lines = ["eval: big", "suites: [bench]", "prompts: {p: {template: '{{n}}'}}", "target: target:answer",
             "variants: [{name: a}, {name: b}]", "threshold: 0.5",
             "graders: [{type: contains, value: right, failure_mode: wrong}]", "cases:"]
    lines += [f"  - {{id: c{n}, vars: {{n: '{n}'}}}}" for n in range(cases // 2)]
    (root / "big.eval.yaml").write_text("\n".join(lines) + "\n")
    (root / "target.py").write_text(TARGET)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--keep", type=Path, help="keep the project, the page and a screenshot here")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="promptgate-html-"))
    root.mkdir(parents=True, exist_ok=True)
    write_project(root, args.cases)
    page = root / "report.html"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--prompt-no-tracking",
                    "--prompt-suite", "bench", "--prompt-report-html", str(page)], cwd=root, check=True,
                   stdout=subprocess.DEVNULL)
    print(f"session of {args.cases} cases with --prompt-report-html: {time.perf_counter() - started:.1f} s")
    print(f"page: {page.stat().st_size / 1e6:.2f} MB ({page.stat().st_size / args.cases:.0f} bytes a case)")
    with chromium(root) as browser:
        started = time.perf_counter()
        browser.open(page)
        opened = time.perf_counter() - started
        ready, load = browser.run("var t = performance.getEntriesByType('navigation')[0];"
                                  " return [t.domContentLoadedEventEnd, t.loadEventEnd];")
        print(f"Chromium: DOM ready {ready:.0f} ms, load {load:.0f} ms (WebDriver open returned after {opened:.2f} s)")
        for control, value in (("filter-text", "c4999"), ("filter-text", ""), ("filter-outcome", "failed")):
            took, shown = browser.run(FILTER, control, value)
            print(f"filter {control}={value!r}: {shown} rows shown, {took:.0f} ms")
        browser.screenshot(root / "report.png")
    print(f"page and screenshot in {root}")


if __name__ == "__main__":
    main()
