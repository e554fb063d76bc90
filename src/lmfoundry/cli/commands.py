"""The table of `lmf` commands: which module of this package implements each, and its one-line help.

It lives apart from main.py so a command group (common.py) can take its help line from here
without importing the entry point.
"""

from __future__ import annotations

# fmt: off
COMMANDS: dict[str, tuple[str, str]] = {  # command: (module in lmfoundry.cli, one-line help)
    "agent": ("agent", "run a tool-using agent: calculator, read-only SQL, RAG search, HTTP GET, Python functions, MCP servers"),
    "adapters": ("adapters", "merge fine-tuned adapters into their base model and check them"),
    "capture": ("capture", "export traffic captured by `lmf serve --capture` (or a rollout's shadow pairs) as training or evaluation data"),
    "chat": ("generate", "interactive chat that streams tokens and keeps the history"),
    "data": ("data", "make bundled data sets and inspect fine-tuning data"),
    "estimate": ("estimate", "predict peak RAM for inference or training (weights, KV cache, gradients, optimizer, activations)"),
    "eval": ("eval", "evaluate models, compare champion vs challenger, gate, judge, report"),
    "export": ("export", "export models to other formats (GGUF for llama.cpp, ONNX for ONNX Runtime)"),
    "finetune": ("finetune", "fine-tune, align or pretrain a model (SFT: full, LoRA, QLoRA, ...; reward, DPO, PPO; pretrain)"),
    "generate": ("generate", "generate a completion for one prompt"),
    "monitor": ("monitor", "compare captured traffic with a reference window: input, output and latency drift"),
    "models": ("models", "list, pull, show, remove and create models in the local store"),
    "pipeline": ("pipeline", "run YAML pipelines: data -> finetune -> evaluate -> gate -> register -> deploy -> RAG"),
    "prompts": ("prompts", "prompt templates: list, show, register versions, render one for a model"),
    "quantize": ("quantize", "quantize a model into the store (nf4/fp4/int8 or GGUF) and report size, quality, speed"),
    "rag": ("rag", "retrieval-augmented generation: index, search, ask with citations"),
    "registry": ("registry", "registered models: versions, the champion alias, promote and rollback"),
    "reward": ("reward", "use reward models trained with `stage: reward`"),
    "serve": ("serve", "serve a model over an OpenAI-compatible HTTP API (or `serve stats` to summarise its metrics)"),
    "studio": ("studio", "web UI on 127.0.0.1: chat with RAG citations, arena votes, live runs, models, server dashboard"),
}
# fmt: on
