"""Which demonstrations a prompt shows for one input: fixed, random (seeded) or the most similar.

The candidates are the template's own demonstrations, else a pool (for tasks, their train split:
never the examples being scored). A candidate whose input equals the current input is never
shown. The list comes back in prompt order, least relevant first, so when the context budget is
short, `render.py` drops from the front and keeps the demonstrations that matter most (for
`similar`, the nearest ones, which sit right before the input).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lmfoundry.embed.sentence import Embedder, embed_texts, load_embedder
from lmfoundry.errors import InvalidInputError
from lmfoundry.prompts.template import Demonstration, PromptTemplate

if TYPE_CHECKING:
    import numpy as np


class DemoSelector:
    """Picks `template.shots` demonstrations per input; embeds the pool once for `similar`."""

    def __init__(
        self,
        template: PromptTemplate,
        pool: Sequence[Demonstration] = (),
        embedder: Embedder | None = None,
    ) -> None:
        self.template = template
        self.candidates = template.fixed_demonstrations() or list(pool)
        if template.shots and not self.candidates:
            raise InvalidInputError(
                f"prompt {template.name!r} asks for {template.shots} demonstrations but has none and "
                "the task has no train split to draw them from (add `demonstrations:` to the template)"
            )
        self._embedder = embedder
        """Loaded on first `similar` selection (the packaged all-MiniLM-L6-v2 unless given)."""
        self._vectors: np.ndarray | None = None

    def select(self, text: str, key: str) -> list[Demonstration]:
        """Demonstrations for `text` (its example id is `key`, which seeds `random`)."""
        k = self.template.shots
        if k == 0:
            return []
        usable = [i for i, demo in enumerate(self.candidates) if demo.input != text]
        if self.template.selection == "random":
            rng = random.Random(_seed(self.template.seed, key))
            chosen = rng.sample(usable, min(k, len(usable)))
        elif self.template.selection == "similar":
            chosen = self._nearest(text, usable, k)
        else:
            chosen = usable[:k]
        return [self.candidates[i] for i in chosen]

    def _nearest(self, text: str, usable: list[int], k: int) -> list[int]:
        """The k most similar candidates by cosine of sentence embeddings, nearest last."""
        if self._embedder is None:
            self._embedder = load_embedder()
        if self._vectors is None:
            inputs = [demo.input for demo in self.candidates]
            self._vectors = embed_texts(self._embedder, inputs, progress=False)
        query = embed_texts(self._embedder, [text], use_cache=False, progress=False)[0]
        similarity = self._vectors[usable] @ query
        best = sorted(range(len(usable)), key=lambda j: (-float(similarity[j]), j))[:k]
        return [usable[j] for j in reversed(best)]


def _seed(seed: int, key: str) -> int:
    """A stable per-input seed (Python's hash() of a str changes between processes)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big")


def describe_selection(template: PromptTemplate) -> dict[str, Any]:
    return {"shots": template.shots, "selection": template.selection, "seed": template.seed}
