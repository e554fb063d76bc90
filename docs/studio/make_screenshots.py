"""Screenshots of every studio page with real data, for docs/studio.md.

Needs an LMF_HOME where `make demo` ran (the quickstart pipeline: the packaged SmolLM2-135M-Instruct
pulled, its LoRA run, the evaluation with CIs, the gate, the registry's champion, the Python-reference
RAG store). Nothing in that home is changed: the registry and the store are copied to a temporary home,
the model folder is linked, and runs are read where they are.

    .venv/bin/python docs/studio/make_screenshots.py --home /path/to/demo/home [--pages chat,models]

The Models page quantizes the packaged model to GGUF Q4_K_M into the temporary home (a minute).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

OUT = Path(__file__).resolve().parent
MODEL = "smollm2-135m-instruct"
STORE = "quickstart-python-docs"
QUESTION = "What does the assert statement do when optimization is requested?"
DIALOGUE = (
    "Summarize this dialogue.\n#Person1#: Did you book the table for Friday?\n"
    "#Person2#: Yes, at the Italian place near the station, 7 pm, for four people.\n"
    "#Person1#: Great, I'll tell Anna and Tom."
)
PLACE = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 30},
        "country": {"type": "string", "maxLength": 30},
    },
    "required": ["city", "country"],
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 30},
                "unit": {"enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 600_000


def scratch_home(demo: Path) -> Path:
    """A temporary LMF_HOME: copies of the registry, RAG stores and embedding cache; the model linked."""
    home = Path(tempfile.mkdtemp(prefix="studio_shots_"))
    for name in ("mlflow", "rag", "cache"):
        if (demo / name).is_dir():
            shutil.copytree(demo / name, home / name)
    (home / "models").mkdir()
    (home / "models" / MODEL).symlink_to(demo / "models" / MODEL)
    return home


def serve(demo: Path, votes: Path) -> Any:
    import lmfoundry
    from lmfoundry.serve.app import create_app
    from lmfoundry.serve.service import ServedModel, ServeOptions
    from lmfoundry.studio.config import StudioConfig

    runs = demo / "pipelines"
    tuned = sorted(runs.glob("quickstart/finetune/run-*/adapter"))
    if not tuned:
        raise SystemExit(f"no quickstart adapter under {runs}: did `make demo` finish?")
    options = ServeOptions(embedder=None, max_tokens=256, default_max_tokens=96)
    served = ServedModel.create(
        lmfoundry.load(MODEL, backend="transformers"),
        name=MODEL,
        options=options,
        adapters={"tuned": str(tuned[-1])},
    )
    return create_app(
        served, options, close_on_shutdown=True, studio=StudioConfig(runs_root=runs, preferences=votes)
    )


def shoot(page: Any, name: str) -> None:
    path = OUT / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"wrote {path}", file=sys.stderr)


def chat(page: Any, url: str) -> None:
    page.goto(f"{url}/ui#chat")
    page.wait_for_selector(f"#chat-store option[value='{STORE}']", state="attached")
    page.select_option("#chat-store", STORE)
    page.fill("#chat-max-tokens", "80")
    page.fill("#chat-input", QUESTION)
    page.click("#chat-submit")
    page.wait_for_selector("#chat-submit:enabled", timeout=WAIT_MS)
    # the sources settle once the answer is attributed: the documents it draws on first
    page.wait_for_selector(".msg.assistant .sources:not(:has-text('Retrieved:'))", timeout=WAIT_MS)
    shoot(page, "chat-rag")
    page.click(".msg.assistant .sources > button.source")
    page.wait_for_selector("#chunk-dialog[open]")
    shoot(page, "chat-citation")
    page.keyboard.press("Escape")


def structured(page: Any, url: str) -> None:
    """JSON-schema and tools replies, in a fresh browser context (its own conversation)."""
    context = page.context.browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(f"{url}/ui#chat")
    page.wait_for_selector(f"#chat-model option[value='{MODEL}']", state="attached")
    page.fill("#chat-temperature", "0")
    page.select_option("#chat-format", "json")
    page.fill("#chat-schema", json.dumps(PLACE))
    page.fill("#chat-input", "Where is the Eiffel Tower? Answer with the city and the country.")
    page.click("#chat-submit")
    page.wait_for_selector(".msg.assistant .verdict", timeout=WAIT_MS)
    shoot(page, "chat-json")
    page.select_option("#chat-format", "tools")
    page.fill("#chat-tools", json.dumps([WEATHER]))
    page.select_option("#chat-tool-choice", "required")
    page.fill("#chat-input", "What is the weather like in Paris today?")
    page.click("#chat-submit")
    page.wait_for_selector(".msg.assistant .call", timeout=WAIT_MS)
    page.wait_for_selector("#chat-submit:enabled", timeout=WAIT_MS)
    shoot(page, "chat-tools")
    context.close()


def arena(page: Any, url: str) -> None:
    page.goto(f"{url}/ui#arena")
    page.wait_for_selector(f"#arena-b option[value='{MODEL}:tuned']", state="attached")
    page.select_option("#arena-a", MODEL)
    page.select_option("#arena-b", f"{MODEL}:tuned")
    page.fill("#arena-temperature", "0")
    page.fill("#arena-max-tokens", "60")
    page.fill("#arena-prompt", DIALOGUE)
    page.click("#arena-run")
    page.wait_for_selector("#vote-b:enabled", timeout=WAIT_MS)
    page.click("#vote-b")
    page.wait_for_selector("#arena-status:has-text('Saved')")
    shoot(page, "arena")


def runs(page: Any, url: str) -> None:
    page.goto(f"{url}/ui#runs")
    page.wait_for_selector("#registry-list li")  # MLflow answers after the run list
    page.click("button.run[data-run^='quickstart/finetune/']")
    page.wait_for_selector("#run-chart polyline")
    shoot(page, "runs-finetune")
    page.click("button.run[data-run='quickstart']")
    page.wait_for_selector(".comparison")
    shoot(page, "runs-pipeline")
    page.click("#registry-list button")
    page.wait_for_selector("#run-detail h3:has-text('Registry')")
    shoot(page, "runs-registry")


def models(page: Any, url: str) -> None:
    page.goto(f"{url}/ui#models")
    page.wait_for_selector("#server-table tbody tr")
    page.wait_for_selector(f"button.quantize[data-model='{MODEL}']")
    page.click(f"button.quantize[data-model='{MODEL}']")
    page.select_option("#quantize-method", "gguf-q4_k_m")
    page.click("#quantize-run")
    page.wait_for_selector("#quantize-stage:has-text('stage 2 of 3')", timeout=WAIT_MS)
    shoot(page, "models-quantize")
    page.wait_for_selector("#quantize-stage:has-text('created')", timeout=WAIT_MS)
    page.wait_for_selector("#store-table tr.new")
    page.wait_for_selector("#model-detail:not([hidden])")
    page.wait_for_selector("#quantize-run:enabled")
    shoot(page, "models-dashboard")


def narrow(page: Any, url: str) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{url}/ui#chat")
    page.wait_for_selector(".msg.assistant")  # the conversation kept in the browser since chat()
    shoot(page, "chat-narrow")


PAGES = {
    "chat": chat,
    "structured": structured,
    "arena": arena,
    "runs": runs,
    "models": models,
    "narrow": narrow,
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("LMF_HOME", "~/.cache/lmfoundry")))
    parser.add_argument(
        "--pages", default=",".join(PAGES), help=f"which shots to take (default all: {','.join(PAGES)})"
    )
    args = parser.parse_args()
    unknown = set(args.pages.split(",")) - set(PAGES)
    if unknown:
        parser.error(f"unknown pages {sorted(unknown)} (known: {', '.join(PAGES)})")
    demo = args.home.expanduser().resolve()
    if not (demo / "pipelines" / "quickstart" / "state.json").is_file():
        parser.error(f"{demo} holds no quickstart pipeline: run `make demo` with LMF_HOME={demo} first")
    home = scratch_home(demo)
    os.environ["LMF_HOME"] = str(home)

    from playwright.sync_api import sync_playwright

    from lmfoundry.serve.http_server import running_server

    try:
        with running_server(serve(demo, home / "votes.jsonl")) as url, sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
            )
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.set_default_timeout(60_000)
            for name in args.pages.split(","):
                PAGES[name](page, url)
            browser.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
