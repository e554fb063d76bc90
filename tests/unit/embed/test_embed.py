from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lmfoundry.embed.sentence import embed_texts, resolve_embedder
from lmfoundry.errors import InvalidInputError
from lmfoundry.paths import lmf_home


def test_vectors_are_normalised_and_match_the_model(embedder: Any) -> None:
    from sentence_transformers import SentenceTransformer

    texts = ["The cat sat on the mat.", "Paris is the capital of France.", "short"]
    vectors = embed_texts(embedder, texts, progress=False)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # sentence-transformers itself, in float32 (the embedder may run in bfloat16 on AMX CPUs)
    reference = SentenceTransformer(str(resolve_embedder(None)[0]), device="cpu").encode(
        texts, normalize_embeddings=True
    )
    tolerance = 1e-5 if embedder.dtype == "float32" else 1e-3
    assert np.all(np.sum(vectors * reference, axis=1) >= 1 - tolerance)


def test_dtype_override_and_bad_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    from lmfoundry.embed.sentence import DTYPE_ENV, SentenceTransformerEmbedder, default_dtype

    monkeypatch.setenv(DTYPE_ENV, "float32")
    assert default_dtype() == "float32"
    monkeypatch.setenv(DTYPE_ENV, "float8")
    with pytest.raises(InvalidInputError, match="unknown embedder dtype 'float8'"):
        SentenceTransformerEmbedder(*resolve_embedder(None))


def test_second_run_encodes_nothing(embedder: Any) -> None:
    texts = ["alpha beta", "gamma delta", "alpha beta"]
    before = embedder.texts_encoded
    first = embed_texts(embedder, texts, progress=False)
    assert embedder.texts_encoded - before == 2  # duplicates are encoded once
    middle = embedder.texts_encoded
    second = embed_texts(embedder, texts, progress=False)
    assert embedder.texts_encoded == middle
    np.testing.assert_array_equal(first, second)
    embed_texts(embedder, ["alpha beta", "something new"], progress=False)
    assert embedder.texts_encoded - middle == 1
    assert (lmf_home() / "cache" / "embeddings" / "all-MiniLM-L6-v2" / "cache.sqlite").is_file()


def test_empty_input(embedder: Any) -> None:
    assert embed_texts(embedder, [], progress=False).shape == (0, 384)


def test_unknown_embedder_is_a_clear_error() -> None:
    with pytest.raises(InvalidInputError, match="unknown embedder"):
        resolve_embedder("no-such-embedder")
