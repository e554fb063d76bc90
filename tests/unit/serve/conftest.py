"""Fixtures for the server tests: the tiny Llama served with batching, and in-process clients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import lmfoundry
from lmfoundry.generate.engine import LoadedModel
from lmfoundry.serve.service import ServedModel, ServeOptions

NAME = "tiny"


@pytest.fixture(scope="module")
def tiny_model(tiny_llama_dir: Path) -> LoadedModel:
    """The reference: the same weights through the engine, one request at a time."""
    return lmfoundry.load(str(tiny_llama_dir), backend="transformers")


def make_served(path: Path, options: ServeOptions, **kwargs: object) -> ServedModel:
    return ServedModel.create(
        lmfoundry.load(str(path), backend="transformers"), name=NAME, options=options, **kwargs
    )  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def served_factory():  # type: ignore[no-untyped-def]
    """Build extra served models (closed by the caller) with their own options."""
    return make_served


@pytest.fixture(scope="module")
def options() -> ServeOptions:
    return ServeOptions(
        embedder=None, max_tokens=64, default_max_tokens=16, max_n=4, max_batch=8, max_queue=16
    )


@pytest.fixture(scope="module")
def served(tiny_llama_dir: Path, options: ServeOptions) -> Iterator[ServedModel]:
    model = make_served(tiny_llama_dir, options)
    yield model
    model.close()


@pytest.fixture(scope="module")
def client(served: ServedModel, options: ServeOptions):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from lmfoundry.serve.app import create_app

    return TestClient(create_app(served, options))
