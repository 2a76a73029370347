"""``text_similarity`` with ``metric: cosine`` (issue 15): sentence embeddings from a model on this machine.

The eval sessions run with the network shut: a conftest of the project refuses every socket connection,
Hugging Face is told it is offline and no proxy is set, so a model that tried to download anything would
fail the case. Each test has a cache directory of its own, so the model is set up from the installed wheel.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_promptgate.graders import GraderRegistry

NO_NETWORK = """
import socket

_connect, _getaddrinfo = socket.socket.connect, socket.getaddrinfo


def refuse(*args, **kwargs):
    raise OSError(f"this test runs offline: {args[1:]!r} refused")


def pytest_configure(config):
    socket.socket.connect = refuse
    socket.getaddrinfo = refuse


def pytest_unconfigure(config):
    socket.socket.connect, socket.getaddrinfo = _connect, _getaddrinfo
"""

EVAL = """
eval: answers
suites: [core]
prompts: {p: {template: "{{answer}}"}}
target: echo
threshold: 0
graders:
  - {type: text_similarity, metric: cosine, pass_threshold: 0.4}
cases:
  - id: paraphrase
    vars: {answer: "I will help you change your password."}
    expected: "Sure, I can reset your password for you."
  - id: unrelated
    vars: {answer: "The weather in Paris is sunny today."}
    expected: "Sure, I can reset your password for you."
"""


@pytest.fixture
def offline(pytester, monkeypatch):
    """No network for the eval session, and a cache directory of the test's own."""
    pytester.makeconftest(NO_NETWORK)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(pytester.path / "cache"))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_cosine_passes_a_paraphrase_and_fails_an_unrelated_sentence_offline(project, pytester, offline):
    project("answers.eval.yaml", EVAL)
    result = pytester.runpytest("--prompt-suite", "core", "-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*::default::paraphrase PASSED*",
        "*::default::unrelated FAILED*",
        "*FAILED text_similarity: cosine 0.00 below 0.40",
    ])
    # The model came from the installed wheel: its tokenizer was copied where wordllama's loader looks.
    assert (pytester.path / "cache" / "wordllama" / "tokenizers" / "l2_supercat_tokenizer_config.json").is_file()


def test_a_missing_embeddings_extra_is_one_collection_error(project, pytester, offline):
    pytester.makeconftest(NO_NETWORK + "\nimport sys\nsys.modules['wordllama'] = None  # not installed\n")
    project("answers.eval.yaml", EVAL)
    result = pytester.runpytest("--prompt-suite", "core")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        ("answers.eval.yaml:7:5: graders[[]0]: text_similarity metric 'cosine' needs the wordllama package and the "
         "model it ships: pip install 'pytest-promptgate[[]embeddings]'"),
    ])
    assert "Traceback" not in result.stdout.str()


def test_a_missing_model_directory_is_one_collection_error(project, pytester, offline):
    project("answers.eval.yaml", EVAL.replace("pass_threshold: 0.4}", "pass_threshold: 0.4, model: models/mini}"))
    result = pytester.runpytest("--prompt-suite", "core")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        ("answers.eval.yaml:7:5: graders[[]0]: text_similarity model directory 'models/mini' "
         "does not exist (relative to *); name a local model directory or drop model:*"),
    ])


def test_model_applies_to_cosine_only():
    options = GraderRegistry.build([]).options_model("text_similarity")
    with pytest.raises(ValueError, match="model applies to metric cosine only, not fuzzy"):
        options.model_validate({"metric": "fuzzy", "model": "wordllama"})


def model2vec_directory(path: Path) -> None:
    """A model2vec model saved by model2vec itself, made of the weights and tokenizer the wordllama wheel ships."""
    import numpy as np
    import wordllama
    from model2vec import StaticModel
    from safetensors import safe_open
    from tokenizers import Tokenizer

    root = Path(wordllama.__file__).parent
    tokenizer = Tokenizer.from_file(str(root / "tokenizers" / "l2_supercat_tokenizer_config.json"))
    with safe_open(str(root / "weights" / "l2_supercat_256.safetensors"), framework="np") as weights:
        vectors = weights.get_tensor("embedding.weight").astype(np.float32)
    StaticModel(vectors, tokenizer).save_pretrained(str(path))


def test_a_local_model2vec_directory_can_be_named_instead(project, pytester, offline):
    model2vec_directory(pytester.path / "models" / "mini")
    project("answers.eval.yaml", EVAL.replace("pass_threshold: 0.4}", "pass_threshold: 0.4, model: models/mini}"))
    result = pytester.runpytest("--prompt-suite", "core", "-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*::default::paraphrase PASSED*", "*FAILED text_similarity: cosine 0.00 below 0.40"])
    assert not (pytester.path / "cache" / "wordllama").exists()  # wordllama's own model was not loaded


def test_collecting_a_cosine_grader_imports_no_embedding_library(project, pytester, offline):
    """The model is loaded when a case is graded: collecting (and listing) evals stays light."""
    pytester.makeconftest(NO_NETWORK + """
import sys

def pytest_sessionfinish(session):
    print("embedding libraries loaded:", sorted({"wordllama", "model2vec", "numpy"} & set(sys.modules)))
""")
    project("answers.eval.yaml", EVAL)
    result = pytester.runpytest_subprocess("--prompt-suite", "core", "--collect-only", "-s")
    result.stdout.fnmatch_lines(["collected 2 items", "*embedding libraries loaded: []*"])
