"""Context-length blocks over memory-mapped token shards, and a weighted mix of several sources.

`PackedBlocks` cuts the concatenated token stream of one split (documents already separated by
EOS) into blocks of `block_size` tokens; a block may hold the end of one document and the start
of the next, and attention crosses that EOS (no document-aware mask: the model learns that EOS
starts a new text). Every token is a target. The last partial block is dropped unless the whole
split is shorter than one block.

`MixedBlocks` draws from several `PackedBlocks` in proportion to their weights (replay of general
text while learning a domain). Both are plain sequences of examples, so the training loop's
seeded, step-indexed order applies unchanged: which block a step sees is a pure function of
(seed, step), and resuming needs no data-loader state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lmfoundry.errors import LmfError


class PackedBlocks(Sequence[dict[str, list[int]]]):
    """Examples (`input_ids`, `attention_mask`, `labels`) of `block_size` tokens from shards."""

    def __init__(self, shards: list[Any], block_size: int, limit: int | None = None) -> None:
        import numpy as np

        self.shards = shards
        self.block_size = block_size
        self.offsets = np.cumsum([0] + [len(s) for s in shards])
        self.total_tokens = int(self.offsets[-1])
        count = self.total_tokens // block_size or (1 if self.total_tokens > 1 else 0)
        self.n_blocks = min(count, limit) if limit else count

    def __len__(self) -> int:
        return self.n_blocks

    def tokens(self, start: int, stop: int) -> list[int]:
        """Tokens [start, stop) of the concatenated shards."""
        import numpy as np

        first = int(np.searchsorted(self.offsets, start, side="right")) - 1
        out: list[int] = []
        while start < stop and first < len(self.shards):
            local = start - int(self.offsets[first])
            piece = self.shards[first][local : local + stop - start]
            out.extend(int(t) for t in piece)
            start += len(piece)
            first += 1
        return out

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.n_blocks))]
        if not -self.n_blocks <= index < self.n_blocks:
            raise IndexError(index)
        index %= self.n_blocks
        start = index * self.block_size
        ids = self.tokens(start, min(start + self.block_size, self.total_tokens))
        return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": list(ids)}


def mix_counts(sizes: list[int], weights: list[float]) -> list[int]:
    """Blocks per source in one pass: the sum of the weighted sources' sizes, split by weight."""
    total = sum(n for n, w in zip(sizes, weights, strict=True) if w > 0)
    weight_sum = sum(weights)
    return [max(1, round(total * w / weight_sum)) if w > 0 else 0 for w in weights]


class MixedBlocks(Sequence[dict[str, list[int]]]):
    """A fixed, seeded selection of blocks from several sources, in proportion to their weights.

    Source s contributes `mix_counts(...)[s]` blocks: its blocks in a seeded order, repeated when
    its share exceeds its size (upsampling), cut when smaller (that subset, every pass).
    """

    def __init__(self, sources: list[PackedBlocks], weights: list[float], seed: int) -> None:
        import numpy as np

        if not sources or len(sources) != len(weights):
            raise LmfError("MixedBlocks needs one weight per source")
        empty = [i for i, (s, w) in enumerate(zip(sources, weights, strict=True)) if w > 0 and len(s) == 0]
        if empty:
            raise LmfError(f"pretraining source {empty[0] + 1} has no training blocks (too little text?)")
        self.sources = sources
        self.n_blockss = mix_counts([len(s) for s in sources], weights)
        which, blocks = [], []
        for number, (source, count) in enumerate(zip(sources, self.n_blockss, strict=True)):
            if count == 0:
                continue
            order = np.random.default_rng([seed, number]).permutation(len(source))
            which.append(np.full(count, number, dtype=np.int32))
            blocks.append(np.resize(order, count))
        self.which = np.concatenate(which)
        self.blocks = np.concatenate(blocks)

    def __len__(self) -> int:
        return len(self.which)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self.sources[int(self.which[index])][int(self.blocks[index])]
