"""Keeping the best variant: --prompt-register-best and --prompt-apply-best after an A/B session (real SQLite store)."""

from __future__ import annotations

import pytest

APP = '''
def answer(prompts):
    return prompts["hello"] + " / " + prompts["other"]
'''


def ab_eval(cases: int, warm_wins: int) -> str:
    """Variant warm says "hello" in both prompts; base in neither. ``warm_wins`` cases need "hello" (the rest pass anyway)."""
    rows = "".join(
        f"  - {{id: c{i}, vars: {{name: n{i}}}, graders: [{{type: icontains, value: {'hello' if i < warm_wins else 'n'}}}]}}\n"
        for i in range(cases)
    )
    return (
        "eval: greet\nsuites: [core]\nprompts:\n"
        '  hello: {template: "Say hi to {{name}}"}\n'
        "  other: {file: prompt.txt}\n"
        "target: app:answer\nthreshold: 0\nvariants:\n  - name: base\n  - name: warm\n    prompts:\n"
        '      hello: {template: "Hello, dear {{name}}!"}\n'
        '      other: {template: "Hello again {{name}}"}\n'
        "cases:\n" + rows
    )


@pytest.fixture
def ab(pytester, project, tracking_on):
    """An A/B project: writes the eval with ``warm_wins`` decisive cases of 10; returns the store's client."""
    from mlflow.tracking import MlflowClient

    project("app.py", APP)
    project("prompt.txt", "Say hi to {{name}}\n")

    def write(warm_wins: int) -> MlflowClient:
        project("greet.eval.yaml", ab_eval(10, warm_wins))
        return MlflowClient(tracking_uri=tracking_on)

    return write


def test_register_best_registers_a_significant_winner_as_the_candidate(ab, pytester):
    client = ab(10)  # warm passes 10 cases base fails: McNemar p = 2 / 2**10
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-register-best")
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "best variant of greet: warm, leads base on pass rate (p=0.002, significant at 0.05)",
        "promptgate: registered greet.hello version 1 (alias 'candidate') from the best variant warm of greet;*",
        "promptgate: registered greet.other version 1 (alias 'candidate')*",
    ])
    version = client.get_prompt_version_by_alias("greet.hello", "candidate")
    assert version.template == "Hello, dear {{name}}!"
    tags = version.tags
    assert (tags["promptgate.best.eval"], tags["promptgate.best.variant"], tags["promptgate.best.significant"]) == (
        "greet", "warm", "true")
    experiment = client.get_experiment_by_name("promptgate/greet")
    runs = {r.info.run_id for r in client.search_runs([experiment.experiment_id])}
    assert set(tags["promptgate.best.runs"].split(",")) == runs  # the evidence: both variants' runs


def test_a_lead_that_is_not_significant_needs_force(ab, pytester):
    client = ab(2)  # warm wins 2 cases of 10: p = 0.5
    refused = pytester.runpytest("--prompt-suite", "core", "--prompt-register-best")
    assert refused.ret == 1
    refused.stdout.fnmatch_lines(["best variant of greet: warm: its lead over base is not significant (decided by pass rate, p=0.500);*"])
    assert not [p for p in client.search_prompts() if p.name.startswith("greet.")]  # nothing registered
    forced = pytester.runpytest("--prompt-suite", "core", "--prompt-register-best", "--promote-force")
    assert forced.ret == 0
    assert client.get_prompt_version_by_alias("greet.hello", "candidate").tags["promptgate.best.forced"] == "true"


def test_apply_best_shows_the_diff_then_writes_the_prompt_back(ab, pytester):
    ab(10)
    eval_file, prompt_file = pytester.path / "greet.eval.yaml", pytester.path / "prompt.txt"
    before = eval_file.read_text(), prompt_file.read_text()
    dry = pytester.runpytest("--prompt-suite", "core", "--prompt-apply-best", "--prompt-dry-run")
    assert dry.ret == 0
    dry.stdout.fnmatch_lines([
        "--- a/greet.eval.yaml", "+++ b/greet.eval.yaml", "@@ *", "*",
        '-  hello: {template: "Say hi to {{name}}"}',
        '+  hello: {template: "Hello, dear {{name}}!"}',
    ])
    dry.stdout.fnmatch_lines(["-Say hi to {{name}}", "+Hello again {{name}}", "promptgate: --prompt-dry-run: *prompt.txt left as it is"])
    assert (eval_file.read_text(), prompt_file.read_text()) == before
    applied = pytester.runpytest("--prompt-suite", "core", "--prompt-apply-best")
    assert applied.ret == 0
    assert prompt_file.read_text() == "Hello again {{name}}"
    assert '  hello: {template: "Hello, dear {{name}}!"}\n' in eval_file.read_text()
    after = pytester.runpytest("--prompt-suite", "core")  # both variants now hold the same prompts: all pass
    after.assert_outcomes(passed=20)


def test_register_best_without_several_variants_says_so(pytester, project, tracking_on):
    project("app.py", "def answer(prompt):\n    return prompt\n")
    project("one.eval.yaml", 'eval: one\nsuites: [core]\nprompts: {p: {template: "x"}}\ntarget: app:answer\n'
                             "cases: [{id: a}]\n")
    result = pytester.runpytest("--prompt-suite", "core", "--prompt-register-best")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["promptgate: no eval ran several variants: no best variant to act on"])
