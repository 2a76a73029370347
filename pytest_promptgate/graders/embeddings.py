"""Sentence embeddings for ``text_similarity`` with ``metric: cosine``, from a model on this machine.

No network at run time, ever: the default model is the one the ``wordllama``
package ships inside its wheel (``l2_supercat``, 256 dimensions, 16 MB of
weights), loaded with downloads disabled. A local model directory may be named
instead: a ``model2vec`` model (``model.safetensors`` and ``tokenizer.json``) or
a sentence-transformers one (``modules.json``), each read by its own library.

What a model needs is checked when the eval file is collected (:func:`missing`,
without importing anything heavy); the library is imported and the model loaded
when a case is first graded, once per process and model (:func:`similarity`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..places import write_atomically

#: How the option ``model`` names the model wordllama ships.
WORDLLAMA = "wordllama"
#: What to install for the default model.
INSTALL = "pip install 'pytest-promptgate[embeddings]'"
# wordllama 0.4's bundled model: its weights sit where its loader looks (wordllama/weights/), its tokenizer does not
# (the loader looks in wordllama/tokenizer/, the wheel has wordllama/tokenizers/), so the tokenizer is copied to the
# loader's cache directory, which it looks in next.
_WEIGHTS = Path("weights", "l2_supercat_256.safetensors")
_TOKENIZER = Path("tokenizers", "l2_supercat_tokenizer_config.json")
_STATIC = "sentence_transformers.models.StaticEmbedding"  # what model2vec's modules.json names

Embed = Callable[[Sequence[str]], Any]  # texts -> an array of unit vectors, one row per text

_loaded: dict[str, Embed] = {}
_loading = threading.Lock()


def missing(model: str | None) -> str | None:
    """Why ``model`` (``None``: wordllama's) cannot be used here, in words that say what to do; ``None`` when it can."""
    if model is None or model == WORDLLAMA:
        package = _package_dir("wordllama")
        if package is None:
            return f"metric 'cosine' needs the wordllama package and the model it ships: {INSTALL}"
        absent = [str(part) for part in (_WEIGHTS, _TOKENIZER) if not (package / part).is_file()]
        if absent:
            return (f"the installed wordllama ({package}) lacks its bundled model ({', '.join(absent)}); "
                    f"install the version the extra names: {INSTALL}")
        return None
    directory = Path(model).expanduser()
    if not directory.is_dir():
        return f"model directory {model!r} does not exist (relative to {os.getcwd()}); name a local model directory or drop model: to use wordllama's"
    kind = _kind(directory)
    if kind is None:
        return (f"model directory {model!r} is neither a model2vec model (model.safetensors, tokenizer.json) "
                "nor a sentence-transformers model (modules.json)")
    library, distribution = kind
    if importlib.util.find_spec(library) is None:
        return f"model directory {model!r} is a {distribution} model: pip install {distribution}"
    return None


def _package_dir(name: str) -> Path | None:
    """Where package ``name`` is installed, found without importing it."""
    spec = importlib.util.find_spec(name)
    return Path(spec.origin).parent if spec is not None and spec.origin else None


def _kind(directory: Path) -> tuple[str, str] | None:
    """(module, distribution) of the library that reads the model in ``directory``.

    model2vec saves a ``modules.json`` too (a static embedding, for sentence-transformers to read): a
    directory is a sentence-transformers model when its modules are anything else.
    """
    try:
        modules = json.loads((directory / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        modules = []
    types = {m.get("type") for m in modules if isinstance(m, dict)} if isinstance(modules, list) else set()
    if types - {_STATIC}:
        return "sentence_transformers", "sentence-transformers"
    if (directory / "model.safetensors").is_file() and (directory / "tokenizer.json").is_file():
        return "model2vec", "model2vec"
    return None


def similarity(model: str | None, output: str, reference: str) -> float:
    """The cosine similarity of the two texts' embeddings, in [-1, 1]."""
    first, second = embedder(model)([output, reference])
    return float(first @ second)


def embedder(model: str | None) -> Embed:
    """The embedding function of ``model``, loaded once per process (graders of the same model share it)."""
    name = model or WORDLLAMA
    with _loading:
        embed = _loaded.get(name)
        if embed is None:
            embed = _loaded[name] = _wordllama() if name == WORDLLAMA else _directory(Path(name).expanduser())
    return embed


def _wordllama() -> Embed:
    """wordllama's bundled model, loaded with downloads disabled (its tokenizer copied where the loader looks)."""
    from wordllama import WordLlama

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "wordllama")
    tokenizer = cache / _TOKENIZER
    if not tokenizer.is_file():
        bundled = Path(_package_dir("wordllama") or "", _TOKENIZER)  # checked at collection
        write_atomically(tokenizer, bundled.read_text(encoding="utf-8"))  # whole, for other workers loading at once
    model = WordLlama.load(cache_dir=cache, disable_download=True)
    return lambda texts: model.embed(list(texts), norm=True)


def _directory(directory: Path) -> Embed:
    """A local model2vec or sentence-transformers model directory."""
    library, _ = _kind(directory) or ("", "")  # checked at collection
    if library == "model2vec":
        import numpy as np
        from model2vec import StaticModel

        static = StaticModel.from_pretrained(str(directory))

        def embed(texts: Sequence[str]) -> Any:
            vectors = static.encode(list(texts))
            return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

        return embed
    from sentence_transformers import SentenceTransformer

    transformer = SentenceTransformer(str(directory), local_files_only=True)
    return lambda texts: transformer.encode(list(texts), normalize_embeddings=True)


