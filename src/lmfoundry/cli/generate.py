"""`lmf generate` and `lmf chat`: run a model on a prompt, or talk to it."""

from __future__ import annotations

import argparse
import sys

from lmfoundry.cli.common import (
    add_json_flag,
    add_sampling_options,
    plugin_name,
    print_result,
    sampling_overrides,
)
from lmfoundry.generate.engine import SPECULATIVE, LoadedModel, load_model
from lmfoundry.prompts.apply import render_conversation, render_input
from lmfoundry.prompts.registry import PromptRef, resolve_prompt
from lmfoundry.types import Message, SamplingParams


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="store name, packaged model, profile, directory, .gguf file or hub id")
    parser.add_argument(
        "--backend",
        default="auto",
        type=plugin_name("backend", "auto"),
        help=(
            "auto (default) = llama.cpp: .gguf files as they are, store and packaged models on a "
            "float16 GGUF of their fp32 weights (made once); transformers (fp32) where adapters or "
            "quantized torch weights need it; or transformers, llama_cpp, or a backend a plugin adds"
        ),
    )
    parser.add_argument(
        "--speculative",
        choices=SPECULATIVE,
        help="prompt-lookup: draft tokens from n-grams of the prompt (llama.cpp; same greedy output on "
        "float16 weights, faster when the answer copies from the prompt: summaries, RAG)",
    )
    parser.add_argument("--adapter", action="append", help="PEFT adapter directory (repeatable)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    parser.add_argument("--system", help="system prompt (chat mode)")
    parser.add_argument(
        "--prompt",
        dest="prompt_template",
        metavar="TEMPLATE",
        help="a prompt template (NAME, NAME@VERSION or a YAML file) the input is put in (default: the profile's)",
    )
    add_sampling_options(parser)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "generate",
        help="generate a completion for one prompt",
        description="Generate text. By default the prompt goes through the model's chat template when it "
        "has one (--raw sends it as plain text). --temperature 0 is greedy and reproducible.",
    )
    _add_model_options(p)
    p.add_argument("prompt", help="the prompt text ('-' reads standard input)")
    p.add_argument("--raw", action="store_true", help="do not apply the chat template")
    p.add_argument("--no-stream", action="store_true", help="print only when finished")
    add_json_flag(p)
    p.set_defaults(handler=_generate)

    p = subparsers.add_parser(
        "chat",
        help="interactive chat that streams tokens and keeps the history",
        description="Interactive chat. Commands: /reset clears the history, /exit (or Ctrl-D) quits.",
    )
    _add_model_options(p)
    p.set_defaults(handler=_chat)


def _load(args: argparse.Namespace) -> LoadedModel:
    from rich.console import Console

    with Console(stderr=True).status(f"loading {args.model}..."):
        return load_model(
            args.model,
            backend=args.backend,
            adapters=args.adapter,
            threads=args.threads,
            speculative=args.speculative,
        )


def _template(model: LoadedModel, args: argparse.Namespace) -> PromptRef | None:
    spec = args.prompt_template or model.prompt
    return resolve_prompt(spec) if spec else None


def _prompt_for(model: LoadedModel, args: argparse.Namespace) -> tuple[str | list[Message], tuple[str, ...]]:
    """(prompt, extra stop strings) for the one input of `lmf generate`."""
    text = sys.stdin.read() if args.prompt == "-" else args.prompt
    chat = not args.raw and model.has_chat_template()
    ref = _template(model, args)
    if ref is not None:
        return render_input(ref, text, chat=chat)
    if not chat:
        return text, ()
    messages = [Message("system", args.system)] if args.system else []
    return [*messages, Message("user", text)], ()


def _generate(args: argparse.Namespace) -> int:
    overrides = sampling_overrides(args)
    SamplingParams().replace(**overrides)  # validate before loading the model
    model = _load(args)
    prompt, stop = _prompt_for(model, args)
    if stop:
        overrides["stop"] = [*overrides.get("stop", []), *stop]
    if args.json or args.no_stream:
        result = model.generate(prompt, **overrides)
        return print_result(args, result.to_dict(), lambda: print(result.text))
    for event in model.stream_events(prompt, **overrides):
        sys.stdout.write(event.delta)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def _chat(args: argparse.Namespace) -> int:
    overrides = sampling_overrides(args)
    SamplingParams().replace(**overrides)
    model = _load(args)
    template = _template(model, args)
    if template is not None and template.template.stop:
        overrides["stop"] = [*overrides.get("stop", []), *template.template.stop]
    history: list[Message] = [Message("system", args.system)] if args.system else []
    interactive = sys.stdin.isatty()
    while True:
        try:
            line = input(">>> " if interactive else "")
        except EOFError:
            break
        if line.strip() in ("/exit", "/bye"):
            break
        if line.strip() == "/reset":
            history = history[:1] if args.system else []
            continue
        if not line.strip():
            continue
        history.append(Message("user", line))
        reply = ""
        conversation = render_conversation(template, history) if template else history
        for event in model.stream_events(conversation, **overrides):
            reply += event.delta
            sys.stdout.write(event.delta)
            sys.stdout.flush()
        sys.stdout.write("\n")
        history.append(Message("assistant", reply))
    return 0
