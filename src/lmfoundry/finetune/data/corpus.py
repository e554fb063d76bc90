"""The pretraining corpus: every source tokenized into its cached shard folders, packed into blocks.

Each (source, split) has its own folder under the token cache, named by the hash of its
fingerprint (source files, tokenizer, split settings), so an unchanged corpus is tokenized once
for all runs, and an interrupted tokenization resumes from its last complete shard.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmfoundry.errors import LmfError
from lmfoundry.finetune.data.packing import MixedBlocks, PackedBlocks
from lmfoundry.finetune.data.text_sources import SPLITS, TextSource, fingerprint, split_documents
from lmfoundry.finetune.data.token_shards import (
    build_shards,
    fingerprint_key,
    load_tokens,
    read_manifest,
    token_dtype,
)
from lmfoundry.finetune.data.tokenizer_train import batch_encoder, tokenizer_hash
from lmfoundry.paths import lmf_home

FORMAT_VERSION = 1


@dataclass(frozen=True)
class SplitPlan:
    """How the documents are split and cut: part of every shard folder's fingerprint."""

    fraction: float
    seed: int
    shard_tokens: int


def cache_root(configured: str | None) -> Path:
    return Path(configured).expanduser() if configured else lmf_home() / "cache" / "tokens"


def shard_folder(
    root: Path, source: TextSource, split: str, tokenizer: Any, plan: SplitPlan
) -> tuple[Path, dict[str, Any]]:
    """(folder, fingerprint) of one source's split."""
    print_ = {
        "version": FORMAT_VERSION,
        "source": fingerprint(source),
        "tokenizer": tokenizer_hash(tokenizer),
        "split": split,
        "validation_fraction": plan.fraction,
        "split_seed": plan.seed,
        "shard_tokens": plan.shard_tokens,
    }
    return root / f"{source.name}-{fingerprint_key(print_)}" / split, print_


def tokenize_source(
    root: Path,
    source: TextSource,
    split: str,
    tokenizer: Any,
    plan: SplitPlan,
    *,
    max_shards: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Path:
    """Tokenize one split of `source` into its cache folder (resumed or reused); the folder."""
    folder, print_ = shard_folder(root, source, split, tokenizer, plan)
    if tokenizer.eos_token_id is None:
        raise LmfError("the tokenizer has no EOS token to separate documents")
    build_shards(
        split_documents(source, split, plan.fraction, plan.seed),
        batch_encoder(tokenizer),
        int(tokenizer.eos_token_id),
        folder,
        print_,
        shard_tokens=plan.shard_tokens,
        dtype=token_dtype(len(tokenizer)),
        max_shards=max_shards,
        on_progress=on_progress,
    )
    return folder


@dataclass
class Corpus:
    sources: list[TextSource]
    train: list[PackedBlocks]
    validation: list[PackedBlocks]
    folders: dict[str, str]

    def mixed_train(self, seed: int) -> MixedBlocks:
        return MixedBlocks(self.train, [s.weight for s in self.sources], seed)

    def report(self) -> dict[str, Any]:
        """Tokens and blocks per source and split (for the summary)."""
        return {
            source.name: {
                "weight": source.weight,
                "train_tokens": train.total_tokens,
                "train_blocks": len(train),
                "validation_tokens": validation.total_tokens,
                "validation_blocks": len(validation),
            }
            for source, train, validation in zip(self.sources, self.train, self.validation, strict=True)
        }


def load_corpus(
    sources: list[TextSource],
    tokenizer: Any,
    root: Path,
    plan: SplitPlan,
    block_size: int,
    eval_limit: int | None,
    progress: bool = True,
) -> Corpus:
    """Tokenize (or reuse) every source's train and validation split and pack them into blocks."""
    from rich.console import Console

    console = Console(stderr=True, quiet=not progress)
    train: list[PackedBlocks] = []
    validation: list[PackedBlocks] = []
    folders: dict[str, str] = {}
    for source in sources:
        for split in SPLITS:
            folder, _ = shard_folder(root, source, split, tokenizer, plan)
            manifest = read_manifest(folder)
            if manifest is None or not manifest.complete:
                with console.status(f"tokenizing {source.name} ({split})") as status:
                    tokenize_source(
                        root, source, split, tokenizer, plan,
                        on_progress=lambda n: status.update(f"tokenizing {source.name} ({split}): {n:,} tokens"),  # noqa: B023
                    )  # fmt: skip
            folders[f"{source.name}/{split}"] = str(folder)
            blocks = PackedBlocks(
                load_tokens(folder), block_size, eval_limit if split == "validation" else None
            )
            (train if split == "train" else validation).append(blocks)
    if not len(validation[0]):
        raise LmfError(
            f"no held-out text in {sources[0].path}: raise data.validation_fraction or add documents"
        )
    return Corpus(sources, train, validation, folders)
