"""--prompt-compare RUN_A [RUN_B]: two recorded runs compared without running tests (issue 14, DESIGN §8)."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
from scipy.stats import binomtest

APP = '''
from pathlib import Path

def reply(vars):
    n = int(vars["n"])
    mode = Path("mode.txt").read_text().strip()
    if mode == "good":
        return "yes" if n != 9 else "no"
    return "no <b>thanks</b>" if n < 6 else "yes"
'''

EVAL = """
eval: answers
suites: [core]
prompts: {p: {template: "{{n}}"}}
target: answerapp:reply
variants: [{name: a}, {name: b}]
threshold: 0.1
graders: [{type: equals, value: "yes"}]
cases:
"""


@pytest.fixture
def runs(project, pytester, tracking_on):
    """Runs a session in a mode ("good": c9 fails; "bad": c0-c5 fail, c9 passes); returns its run ids by variant."""
    pytester.makepyfile(answerapp=APP)
    project("answers.eval.yaml", EVAL + "".join(f"  - {{id: c{n}, vars: {{n: {n}}}}}\n" for n in range(10)))

    def session(mode: str) -> dict[str, str]:
        (pytester.path / "mode.txt").write_text(mode)
        result = pytester.runpytest("--prompt-suite", "core", "--prompt-report", "session.json")
        assert result.ret in (0, 1), result.stdout.str()
        report = json.loads((pytester.path / "session.json").read_text())
        return {entry["variant"]: entry["run_id"] for entry in report["evals"]}

    return session


def lit(pattern: str) -> str:
    """``pattern`` for fnmatch_lines with its ``[`` taken literally (``*`` and ``?`` still match)."""
    return pattern.replace("[", "[[]")


def compare(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("--prompt-compare", *args)


class ComparePage(HTMLParser):
    """The fields of the compare page, and the flipped cases in page order."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.fields: list[tuple[str, str]] = []
        self.flips: list[tuple[str, str]] = []
        self.tags: list[str] = []
        self._field: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        if "data-field" in a:
            self._field = a["data-field"]
            self.fields.append((self._field, ""))
        if tag == "div" and "data-case" in a:
            self.flips.append((a["data-case"], a["class"]))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("span", "td"):
            self._field = None

    def handle_data(self, data: str) -> None:
        if self._field is not None:
            name, text = self.fields[-1]
            self.fields[-1] = (name, text + data)


def test_compare_with_the_newest_complete_run_by_default(runs, pytester):
    good = runs("good")
    bad = runs("bad")
    result = compare(pytester, good["a"], "--prompt-report", "cmp.json", "--prompt-report-html", "cmp.html")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    assert "collected" not in result.stdout.str()  # runs no tests
    expected_p = binomtest(1, 7, 0.5).pvalue  # McNemar exact: 6 newly failing, 1 newly passing
    result.stdout.fnmatch_lines([lit(line) for line in [
        "promptgate compare: answers [a] (MLflow at sqlite:///*mlflow.db)",
        "*",
        "*run*started*prompts*passed*pass rate [95% CI]",
        f"before*{good['a']}*UTC*p=*9/10*90.0% [60%-98%]",
        f"after*{bad['a']}*UTC*p=*4/10*40.0% [17%-69%]",
        "",
        f"delta (after - before): -50.0 pp, p={expected_p:.3f} (McNemar exact, 10 shared cases)",
        "newly failing: 6, newly passing: 1",
        "",
        "case*before -> after*reason",
        "*",
        "c0*passed -> failed*equals: FAIL (0.00) expected 'yes', got 'no <b>thanks</b>'*",
        *[f"c{n}*passed -> failed*" for n in range(1, 6)],
        "c9*failed -> passed*equals: FAIL (0.00) expected 'yes', got 'no'*",
    ]])
    data = json.loads((pytester.path / "cmp.json").read_text())
    assert data["p_value"] == pytest.approx(expected_p)
    assert (data["before"]["run_id"], data["after"]["run_id"]) == (good["a"], bad["a"])
    assert (data["flipped_cases"]["newly_failing"], data["flipped_cases"]["newly_passing"]) == (6, 1)
    page = ComparePage((pytester.path / "cmp.html").read_text())
    rates = [float(text.rstrip("%")) / 100 for name, text in page.fields if name == "pass_rate"]
    assert rates == pytest.approx([data["before"]["pass_rate"], data["after"]["pass_rate"]], abs=5e-4)
    [delta] = [text for name, text in page.fields if name == "delta"]
    assert float(delta.removesuffix(" pp")) / 100 == pytest.approx(data["delta"], abs=5e-4)
    [p] = [text for name, text in page.fields if name == "p_value"]
    assert p.startswith(f"p={expected_p:.3f} (McNemar exact")
    assert page.flips == [*((f"c{n}", "flip newly-failing") for n in range(6)), ("c9", "flip newly-passing")]
    assert "b" not in page.tags  # the output's <b> is text
    assert dict(page.fields)["newly_failing"] == "6"


def test_the_order_of_the_run_ids_says_which_is_before(runs, pytester):
    good = runs("good")
    bad = runs("bad")
    result = compare(pytester, bad["b"], good["b"])
    assert result.ret == 0
    result.stdout.fnmatch_lines([f"before*{bad['b']}*40.0%*", f"after*{good['b']}*90.0%*",
                                 "delta (after - before): +50.0 pp, *", "newly failing: 1, newly passing: 6"])


def test_unpaired_runs_fall_back_to_fishers_test(runs, pytester, tracking_on):
    from mlflow.tracking import MlflowClient
    from scipy.stats import fisher_exact

    good = runs("good")
    bad = runs("bad")
    client = MlflowClient(tracking_on)
    client.delete_tag(bad["a"], "mlflow.loggedArtifacts")
    artifacts = client.get_run(bad["a"]).info.artifact_uri.removeprefix("file://")
    (pytester.path / artifacts.removeprefix(str(pytester.path) + "/") / "promptgate_results.json").unlink()
    result = compare(pytester, good["a"], bad["a"])
    assert result.ret == 0, result.stderr.str()
    p = fisher_exact([[4, 6], [9, 1]]).pvalue
    result.stdout.fnmatch_lines([f"delta (after - before): -50.0 pp, p={p:.3f} (Fisher exact, 0 shared cases)",
                                 f"flipped cases unavailable: run {bad['a']} has no results table (promptgate_results.json)"])


@pytest.mark.parametrize("problem", ["unknown", "foreign", "evals", "variants", "alone", "three", "unreachable"])
def test_clear_usage_errors(runs, pytester, tracking_on, problem):
    from mlflow.tracking import MlflowClient

    good = runs("good")
    args, message = {
        "unknown": (["0" * 32], f"run '{'0' * 32}' does not exist in sqlite:///*mlflow.db"),
        "evals": None,
        "variants": ([good["a"], good["b"]], f"run {good['a']} is of answers [a] and run {good['b']} of answers [b]: "
                     "compare runs of one eval and variant"),
        "alone": ([good["a"]], f"no other complete run of answers [a] to compare run {good['a']} with: "
                  "name the second run (--prompt-compare RUN_A RUN_B)"),
        "three": ([good["a"], good["a"], good["a"]], "give one or two run ids (before, after), not 3"),
        "unreachable": ([good["a"], "--prompt-tracking-uri", "http://127.0.0.1:9"],
                        "MLflow tracking at http://127.0.0.1:9 is unavailable*"),
        "foreign": None,
    }[problem] or (None, None)
    client = MlflowClient(tracking_on)
    if problem == "foreign":
        run = client.create_run(client.create_experiment("mine", artifact_location=str(pytester.path / "art")))
        args, message = [run.info.run_id], (f"run '{run.info.run_id}' is not a pytest-promptgate run "
                                            "(it has no promptgate.eval tag)")
    if problem == "evals":
        run = client.create_run(client.create_experiment("promptgate/other", artifact_location=str(pytester.path / "a")),
                                tags={"promptgate.eval": "other", "promptgate.variant": "a"})
        args, message = [good["a"], run.info.run_id], (f"run {good['a']} is of answers [a] and run {run.info.run_id} "
                                                       "of other [a]: compare runs of one eval and variant")
    result = compare(pytester, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([lit(f"ERROR: promptgate: --prompt-compare: {message}")])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_compare_is_a_command_of_its_own(pytester):
    result = pytester.runpytest("--prompt-trend", "--prompt-compare", "abc")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: promptgate: --prompt-trend and --prompt-compare are separate commands; "
                                 "run one at a time"])
