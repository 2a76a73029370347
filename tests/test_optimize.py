"""``--prompt-optimize`` (issue 17): a real SQLite store, a real OpenAI-compatible server as the optimizer model.

The target is a small rule-based "model": it lower-cases the message when the prompt asks
for lowercase, and it answers from ``Known: X => y`` lines in the prompt (which is how
an overfitting candidate memorises the training cases it was shown). Half the cases
are upper-case messages whose expected answer is lower-case, so the current prompt
``Repeat: {{message}}`` passes half of them.

The scripted optimizer reads the evidence out of the meta-prompt it receives. Round 1
proposes an overfit candidate (the training failures as ``Known:`` lines) and one that
renames ``{{message}}``; round 2 proposes the real improvement.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from scipy.stats import binomtest

from pytest_promptgate.improve import (
    Evidence,
    adjusted,
    beats,
    build_evidence,
    parse_candidates,
    refusal,
    sign_test_greater,
    split_of,
    wins_losses,
)
from pytest_promptgate.results import CaseResult, GraderRecord, RunRecord

APP = '''
def answer(prompt, vars):
    message = vars["message"]
    for line in prompt.splitlines():
        if line.startswith("Known: ") and "=>" in line:
            asked, said = line[len("Known: "):].split("=>", 1)
            if asked.strip() == message:
                return said.strip()
    return message.lower() if "lowercase" in prompt else message
'''

WORDS = [f"word{i}" for i in range(40)]
CASES = "".join(
    f"  - {{id: c{i}, vars: {{message: {w.upper() if i % 2 else w}}}, expected: {w}}}\n" for i, w in enumerate(WORDS)
)


def eval_file(optimizer: str, prompt: str = "{registry: shout@production}") -> str:
    return (
        "eval: shouting\nsuites: [core]\n"
        f"prompts: {{shout: {prompt}}}\n"
        "target: shout_app:answer\nthreshold: 0.5\n"
        "graders: [{type: equals, value: '{{expected}}'}]\n"
        f"optimizer: {optimizer}\n"
        "cases:\n" + CASES
    )


INLINE = '{template: "Repeat: {{message}}"}'
BROKEN = "Repeat in lowercase: {{msg}}"
REAL = "Repeat in lowercase: {{message}}"


def scripted(request: dict) -> str:
    """The optimizer model: candidates by round, built from the evidence in the meta-prompt."""
    text = request["messages"][-1]["content"]
    evidence = json.loads(text[text.index("Evidence:\n") + len("Evidence:\n"):])
    if evidence["round"] == 1:
        known = "".join(f"\nKnown: {f['vars']['message']} => {f['expected']}" for f in evidence["failures"])
        candidates = [
            {"prompt": "Repeat: {{message}}" + known, "hypothesis": "memorise the failing answers"},
            {"prompt": BROKEN, "hypothesis": "rename the variable"},
        ]
    else:
        candidates = [{"prompt": REAL, "hypothesis": "ask for lowercase"}]
    return "Here you are:\n```json\n" + json.dumps(candidates) + "\n```"


def provider(server, model: str = "optimizer-model") -> str:
    return f'{{provider: {{base_url: "{server.base_url}", model: {model}, retries: 0}}}}'


@pytest.fixture
def shout(pytester, project, tracking_on):
    """The store's MlflowClient, prompt ``shout`` v1 at production; the app written."""
    from mlflow.tracking import MlflowClient

    project("shout_app.py", APP)
    client = MlflowClient(tracking_uri=tracking_on)
    client.register_prompt("shout", "Repeat: {{message}}")
    client.set_prompt_alias("shout", "production", 1)
    return client


def test_overfit_rejected_broken_refused_real_registered_then_promoted(shout, pytester, openai_server):
    openai_server.reply_with(scripted)
    pytester.makefile(".eval.yaml", shouting=eval_file(provider(openai_server)))
    result = pytester.runpytest("--prompt-optimize", "shout", "--optimize-rounds", "2", "--optimize-candidates", "3",
                                "--prompt-report", "report.json", "--prompt-report-md", "report.md")
    result.stdout.fnmatch_lines([
        "*= optimize shout =*",
        "optimization *: goal accuracy, 3 candidate(s) x 2 round(s), held-out fraction 0.3, alpha 0.05*",
        "candidate*hypothesis*train*held-out*adjusted p*cost (USD)*result",
        "current*(the prompt to improve)*50.0%*",
        "r1c1*memorise the failing answers*100.0%*no better on held-out*",
        "r1c2*rename the variable*refused: uses {{msg}}, which the current prompt does not; drops {{message}}",
        "r2c1*ask for lowercase*100.0%*100.0%*won (*",
        "winner: r2c1 (ask for lowercase)*optimizer: optimizer-model, 2 call(s)*",
        "promptgate: registered shout version 2 (alias 'candidate') from candidate r2c1; promote it with "
        "pytest --promote shout",
    ])
    assert result.ret == 0
    # The optimizer saw only training cases: none of the held-out ones is in either meta-prompt.
    shown = " ".join(r.json["messages"][-1]["content"] for r in openai_server.requests)
    heldout = [f"c{i}" for i in range(40) if split_of("shouting", f"c{i}", 0.3) == "heldout"]
    assert heldout and not any(f'"case_id": "{cid}"' in shown for cid in heldout)
    assert len(openai_server.requests) == 2
    # The winner, at alias candidate with its lineage; production untouched.
    version = shout.get_prompt_version_by_alias("shout", "candidate")
    assert (int(version.version), version.template) == (2, REAL)
    tags = version.tags
    assert tags["promptgate.optimize.parent_version"] == "1"
    assert tags["promptgate.optimize.hypothesis"] == "ask for lowercase"
    assert tags["promptgate.optimize.optimizer"] == "optimizer-model"
    assert (tags["promptgate.optimize.goal"], tags["promptgate.optimize.round"]) == ("accuracy", "2")
    evidence_runs = tags["promptgate.optimize.evidence_runs"].split(",")
    assert int(shout.get_prompt_version_by_alias("shout", "production").version) == 1
    # One MLflow run per candidate evaluation (two measured candidates), tagged with the optimization's id.
    experiment = shout.get_experiment_by_name("promptgate-optimize/shouting")
    runs = shout.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["promptgate.optimize.candidate"] for r in runs) == ["r1c1", "r2c1"]
    assert {r.data.tags["promptgate.optimization_id"] for r in runs} == {tags["promptgate.optimization_id"]}
    assert {r.info.run_id for r in runs} <= set(evidence_runs)
    report = json.loads((pytester.path / "report.json").read_text())["optimization"]
    assert [(c["label"], c["status"].split(" ")[0]) for c in report["candidates"]] == [
        ("r1c1", "no"), ("r1c2", "refused:"), ("r2c1", "won")]
    assert report["winner"] == "r2c1" and report["handed_off"] is True
    assert "| r2c1 | ask for lowercase |" in (pytester.path / "report.md").read_text()
    # The gate then moves production, on the evidence of its own run.
    promoted = pytester.runpytest("--promote", "shout", "--promote-actor", "alice")
    assert promoted.ret == 0, promoted.stdout.str()
    assert int(shout.get_prompt_version_by_alias("shout", "production").version) == 2


def test_no_winner_registers_nothing_and_exits_1(shout, pytester, openai_server):
    openai_server.reply_with(scripted)  # round 1 only: the overfit candidate loses, the broken one is refused
    pytester.makefile(".eval.yaml", shouting=eval_file(provider(openai_server)))
    result = pytester.runpytest("--prompt-optimize", "shout")
    result.stdout.fnmatch_lines(["r1c1*no better on held-out*", "no candidate won: nothing registered or written.*"])
    assert result.ret == 1
    assert [int(v.version) for v in shout.search_prompt_versions("shout")] == [1]


def test_budget_exhausted_mid_round_stops_cleanly_keeping_what_was_measured(shout, pytester, openai_server):
    """Each optimizer call costs USD 0.01 (10 000 tokens at USD 1 per million): with a budget of 0.015 both
    rounds propose (each call is allowed while less than the budget is spent), then round 2 stops before
    its candidate's first case; round 1's measurements stay in the table."""
    openai_server.reply_with(lambda request: _priced(scripted(request)))
    pytester.makeini("[pytest]\npromptgate_pricing = optimizer-model 1 1\n")
    pytester.makefile(".eval.yaml", shouting=eval_file(provider(openai_server)))
    result = pytester.runpytest("--prompt-optimize", "shout", "--optimize-rounds", "2", "--optimize-budget-usd", "0.015")
    result.stdout.fnmatch_lines([
        "r1c1*memorise the failing answers*100.0%*no better on held-out*",
        "r2c1*ask for lowercase*-*-*stopped by the budget",
        "stopped: --optimize-budget-usd 0.015 spent (USD 0.0200); what was measured is kept.*2 call(s), USD 0.0200*",
    ])
    assert result.ret == 1
    assert len(openai_server.requests) == 2
    assert [int(v.version) for v in shout.search_prompt_versions("shout")] == [1]


def _priced(content: str):
    from openai_server import Reply, completion

    return Reply(body=completion(content, model="optimizer-model", prompt_tokens=5000, completion_tokens=5000))


def test_inline_prompt_winner_is_written_back_with_its_diff(pytester, project, openai_server):
    project("shout_app.py", APP)
    openai_server.reply_with(lambda request: json.dumps([{"prompt": REAL, "hypothesis": "ask for lowercase"}]))
    pytester.makefile(".eval.yaml", shouting=eval_file(provider(openai_server), prompt=INLINE))
    dry = pytester.runpytest("--prompt-optimize", "shout", "--prompt-no-tracking", "--prompt-dry-run",
                             "--prompt-report-html", "report.html")
    dry.stdout.fnmatch_lines(['-prompts: {shout: {template: "Repeat: {{message}}"}}',
                              '+prompts: {shout: {template: "Repeat in lowercase: {{message}}"}}',
                              "promptgate: --prompt-dry-run: *shouting.eval.yaml left as it is"])
    assert dry.ret == 0
    assert "Repeat in lowercase" not in (pytester.path / "shouting.eval.yaml").read_text()
    page = (pytester.path / "report.html").read_text()
    assert '<section id="optimization"><h2>Optimization of shout</h2>' in page
    assert "<td>r1c1</td><td>ask for lowercase</td><td>100.0%</td>" in page
    wrote = pytester.runpytest("--prompt-optimize", "shout", "--prompt-no-tracking")
    wrote.stdout.fnmatch_lines(["promptgate: wrote the winning candidate r1c1 into *shouting.eval.yaml"])
    assert wrote.ret == 0
    again = pytester.runpytest("--prompt-suite", "core", "--prompt-no-tracking")
    again.assert_outcomes(passed=40)


def inline_project(pytester, project, app: str = APP, strategy: bool = False, edit=lambda text: text) -> None:
    """The eval with an inline prompt (no registry, no optimizer model unless ``edit`` adds one)."""
    project("shout_app.py", app)
    if strategy:
        pytester.makeconftest(STRATEGY)
    pytester.makefile(".eval.yaml", shouting=edit(eval_file("null", prompt=INLINE)))


@pytest.mark.parametrize(("args", "message"), [
    ((), "*--prompt-optimize needs an optimizer model: set ini promptgate_optimizer*"),
    (("-n", "2"), "*--prompt-optimize runs its candidates in pytest's own process after the items: run it without "
                  "xdist workers (-n 0)"),
])
def test_usage_errors(pytester, project, args, message):
    inline_project(pytester, project)
    result = pytester.runpytest("--prompt-optimize", "shout", "--prompt-no-tracking", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


STRATEGY = """
import json
import pytest

@pytest.hookimpl(optionalhook=True)
def pytest_promptgate_propose_prompts(config, evidence, ask):
    with open("evidence.json", "w") as f:
        f.write(evidence.as_json())
    return [{"prompt": "Repeat in lowercase: {{message}}", "hypothesis": "from a conftest strategy"}]
"""


def test_a_conftest_strategy_answers_without_an_optimizer_model(pytester, project):
    inline_project(pytester, project, strategy=True)
    result = pytester.runpytest("--prompt-optimize", "shout", "--prompt-no-tracking", "--prompt-dry-run")
    result.stdout.fnmatch_lines(["r1c1*from a conftest strategy*100.0%*100.0%*won (*",
                                 "winner: r1c1 (from a conftest strategy). optimizer: -, 0 call(s)*"])
    assert result.ret == 0
    evidence = json.loads((pytester.path / "evidence.json").read_text())
    train = [f"c{i}" for i in range(40) if split_of("shouting", f"c{i}", 0.3) == "train"]
    assert sorted(f["case_id"] for f in evidence["failures"]) == sorted(c for c in train if int(c[1:]) % 2)
    assert evidence["failures"][0]["reasons"][0].startswith("equals: expected 'word")
    assert (evidence["variables"], evidence["train_cases"]) == (["message"], len(train))


COSTLY = APP + '''

def priced(prompt, vars):
    return {"output": answer(prompt, vars), "cost_usd": 0.01 if "lowercase" in prompt else 0.0}
'''


def test_a_winner_on_held_out_that_trips_a_gate_is_not_handed_off(pytester, project):
    gate = "gates: {on_fail: block_promote, rules: [{metric: cost_usd_per_case, max: 0.001}]}\ncases:\n"
    inline_project(pytester, project, COSTLY, strategy=True,
                   edit=lambda text: text.replace("shout_app:answer", "shout_app:priced").replace("cases:\n", gate))
    result = pytester.runpytest("--prompt-optimize", "shout", "--prompt-no-tracking")
    result.stdout.fnmatch_lines(["r1c1*100.0%*100.0%*a gate tripped: shouting: cost_usd_per_case 0.01 above max 0.001",
                                 "no candidate won: nothing registered or written.*"])
    assert result.ret == 1
    assert "lowercase" not in (pytester.path / "shouting.eval.yaml").read_text()


def test_ctrl_c_during_the_rounds_keeps_what_was_measured_and_exits_2(pytester, project):
    """A strategy interrupted (as Ctrl-C interrupts a model call) in round 2: round 1's candidate stays in the
    table, nothing is written, and the session says it was interrupted."""
    inline_project(pytester, project)
    pytester.makeconftest(STRATEGY.replace(
        "    with open", "    if evidence.round == 2:\n        raise KeyboardInterrupt\n    with open"))
    result = pytester.runpytest("--prompt-optimize", "shout", "--prompt-no-tracking", "--optimize-rounds", "2")
    result.stdout.fnmatch_lines(["r1c1*from a conftest strategy*100.0%*100.0%*won (*",
                                 "interrupted: what was measured is kept; nothing is registered or written.*"])
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert "lowercase" not in (pytester.path / "shouting.eval.yaml").read_text()


def test_a_prompt_no_selected_eval_uses_is_a_usage_error(pytester, project):
    inline_project(pytester, project)
    result = pytester.runpytest("--prompt-optimize", "nosuch", "--prompt-no-tracking")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--prompt-optimize: no selected eval uses prompt 'nosuch'*"])


def test_the_offline_example_walks_the_whole_loop(pytester, tracking_on):
    """examples/optimize as docs/optimize.md runs it: seed, optimize, promote (offline, deterministic)."""
    from mlflow.tracking import MlflowClient

    shutil.copytree(Path(__file__).parent.parent / "examples", pytester.path / "examples")
    seeded = subprocess.run([sys.executable, "examples/optimize/seed_registry.py"], cwd=pytester.path,
                            capture_output=True, text=True, timeout=120)
    assert "registered triage version 1 at alias production" in seeded.stdout, seeded.stderr
    optimized = pytester.runpytest("examples/optimize", "--prompt-optimize", "triage")
    optimized.stdout.fnmatch_lines([
        "current*(the prompt to improve)*48.7%*52.4%*",
        "r1c1*offer every missing label (shipping, technical)*100.0%*100.0%*0.00293*won (10 better, 0 worse)",
        "promptgate: registered triage version 2 (alias 'candidate') from candidate r1c1; promote it with "
        "pytest --promote triage",
    ])
    assert optimized.ret == 0
    promoted = pytester.runpytest("examples/optimize", "--promote", "triage", "--promote-actor", "alice")
    promoted.stdout.fnmatch_lines(["promptgate: promoted triage@production: version 1 -> 2 by alice"])
    assert promoted.ret == 0
    assert int(MlflowClient(tracking_uri=tracking_on).get_prompt_version_by_alias("triage", "production").version) == 2


# --------------------------------------------------------------------------- the pure parts


@pytest.mark.parametrize(("wins", "losses"), [(0, 0), (1, 0), (6, 0), (7, 2), (3, 5), (20, 9), (50, 50)])
def test_held_out_p_value_is_scipy_one_sided_binomial(wins, losses):
    expected = 1.0 if wins + losses == 0 else binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue
    assert sign_test_greater(wins, losses) == pytest.approx(expected, rel=1e-12)


def test_adjustment_counts_every_candidate_tried():
    assert adjusted([0.01], 1) == pytest.approx(0.01)
    assert adjusted([0.01], 4) == pytest.approx(0.04)  # three untested candidates count as tried
    assert adjusted([0.2, 0.01], 3) == pytest.approx(0.03)


def test_split_is_deterministic_and_near_its_fraction():
    sides = [split_of("e", f"case-{i}", 0.3) for i in range(2000)]
    assert sides == [split_of("e", f"case-{i}", 0.3) for i in range(2000)]
    assert 0.27 < sides.count("heldout") / 2000 < 0.33


def _result(case: str, passed: bool, output: str = "x", cost: float | None = None) -> CaseResult:
    grader = GraderRecord("equals", "equals", passed, float(passed), "ok" if passed else "expected y")
    run = RunRecord(output, 1.0, passed, float(passed), (grader,), cost_usd=cost)
    return CaseResult("e", "v", case, passed, float(passed), (run,), vars={"m": case}, expected="y")


def test_wins_and_losses_by_goal():
    current = {"a": _result("a", False), "b": _result("b", True, "long output"), "c": _result("c", True)}
    candidate = {"a": _result("a", True), "b": _result("b", True, "short"), "c": _result("c", False)}
    assert wins_losses("accuracy", current, candidate) == (1, 1)
    assert wins_losses("conciseness", current, candidate) == (2, 1)


def test_other_goals_never_trade_passing_cases_for_savings():
    current = [_result("a", True, cost=0.02), _result("b", False, cost=0.02)]
    cheaper = [_result("a", True, cost=0.01), _result("b", False, cost=0.01)]
    cheaper_but_worse = [_result("a", False, cost=0.001), _result("b", False, cost=0.001)]
    assert beats("cost", cheaper, current) and not beats("cost", cheaper_but_worse, current)
    assert not beats("accuracy", cheaper, current)


def test_evidence_holds_training_failures_within_its_budget():
    train = [_result(f"c{i}", i % 2 == 0, output="o" * 300) for i in range(200)]
    train[1] = dataclasses.replace(train[1], labels=({"case": "c1", "rating": "bad", "feedback": "too loud"},))
    evidence = build_evidence("p", "Say {{m}}", "accuracy", 4, 1, train, budget=3000)
    assert isinstance(evidence, Evidence)
    assert evidence.failures[0].case_id == "c1" and evidence.failures[0].labels[0]["feedback"] == "too loud"
    assert evidence.failures[0].reasons == ("equals: expected y",)
    assert len(evidence.as_json()) < 6000 and evidence.omitted == 100 - len(evidence.failures) > 0
    assert evidence.train_pass_rate == 0.5 and evidence.variables == ("m",)


def test_refusal_names_what_breaks_the_template():
    assert refusal("Hi {{name}}", "Hello {{name}}") is None
    assert refusal("Hi {{nme}}", "Hello {{name}}") == "uses {{nme}}, which the current prompt does not; drops {{name}}"


def test_parse_candidates_reads_a_fenced_or_bare_list():
    assert parse_candidates('```json\n[{"prompt": "a"}]\n```') == [{"prompt": "a"}]
    assert parse_candidates('Sure: [{"prompt": "b"}] done') == [{"prompt": "b"}]
    with pytest.raises(ValueError, match="no JSON list"):
        parse_candidates("I cannot help")


def test_meta_prompt_lists_the_variables_and_the_count():
    from pytest_promptgate.improve import meta_prompt

    text = meta_prompt(build_evidence("p", "Say {{m}}", "cost", 3, 1, [_result("c1", False)]))
    assert "Goal: cost" in text and "Propose 3 different" in text and "must stay exactly these: m" in text
    assert re.search(r'"case_id": "c1"', text)
