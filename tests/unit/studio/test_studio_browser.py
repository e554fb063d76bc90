"""The studio in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven by playwright,
against the tiny model on a real uvicorn. Skipped, with the reason, when either is missing."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lmfoundry.finetune.data.formats import validate_record
from lmfoundry.finetune.data.records import load_records

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed: run tests/support/install_test_tools.sh (needs apt)"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra)")
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, studio: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"the page raised: {errors}"


def _open(page: Any, studio: Any, tab: str = "chat") -> None:
    page.goto(f"{studio.url}/ui#{tab}")
    page.wait_for_selector(f"#page-{tab}:not([hidden])")


def _ask(page: Any, question: str) -> None:
    page.wait_for_selector("#chat-model option[value=tiny]", state="attached")
    page.fill("#chat-input", question)
    page.click("#chat-submit")


def test_a_chat_reply_streams_in_and_the_conversation_survives_a_reload(page: Any, studio: Any) -> None:
    _open(page, studio)
    page.fill("#chat-max-tokens", "24")
    page.evaluate(
        """() => { window.__updates = 0;
        new MutationObserver(() => { window.__updates += 1; })
          .observe(document.getElementById('chat-log'), {childList: true, subtree: true}); }"""
    )
    _ask(page, "Tell me about Paris")
    sync_api.expect(page.locator(".msg.assistant .stats")).to_contain_text("tokens/s", timeout=TIMEOUT_MS)
    answer = page.text_content(".msg.assistant .answer")
    assert answer and answer.strip()
    assert "TTFT" in page.text_content(".msg.assistant .stats")
    assert page.evaluate("window.__updates") > 3  # the answer grew delta by delta, not in one piece
    assert page.is_disabled("#chat-stop") and page.is_enabled("#chat-submit")
    page.reload()
    page.wait_for_selector(".msg.assistant")
    assert page.locator(".msg").count() == 2
    assert page.text_content(".msg.assistant .answer") == answer


# The tiny model writes 64 tokens in well under a second, faster than a click can land: the page's
# fetch of the chat stream is wrapped so its server-sent events reach the page one every 250 ms
# (the real server's stream, re-timed; aborting the request still ends it as a real fetch would).
SLOW_CHAT_STREAM = """
(() => {
  const realFetch = window.fetch.bind(window);
  window.fetch = async (input, init) => {
    const response = await realFetch(input, init);
    const url = typeof input === "string" ? input : input.url;
    if (!url.includes("/v1/chat/completions") || !response.body) return response;
    const reader = response.body.getReader();
    const events = [];
    let rest = new Uint8Array(0);
    const slowed = new ReadableStream({
      async pull(controller) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        const signal = init && init.signal;  // events already buffered here must stop on abort too
        if (signal && signal.aborted) { controller.error(signal.reason); return; }
        try {
          while (!events.length) {
            const { done, value } = await reader.read();
            if (done) { if (rest.length) events.push(rest); rest = new Uint8Array(0); break; }
            const joined = new Uint8Array(rest.length + value.length);
            joined.set(rest); joined.set(value, rest.length);
            let start = 0;
            for (let i = 0; i + 1 < joined.length; i++) {
              if (joined[i] === 10 && joined[i + 1] === 10) { events.push(joined.slice(start, i + 2)); start = i + 2; }
            }
            rest = joined.slice(start);
          }
          if (events.length) controller.enqueue(events.shift()); else controller.close();
        } catch (error) { controller.error(error); }
      },
      cancel(reason) { return reader.cancel(reason); },
    });
    return new Response(slowed, { status: response.status, headers: response.headers });
  };
})();
"""


def test_stop_ends_a_streaming_answer_and_keeps_what_arrived(page: Any, studio: Any) -> None:
    page.add_init_script(SLOW_CHAT_STREAM)
    _open(page, studio)
    page.fill("#chat-max-tokens", "64")
    page.fill("#chat-temperature", "1.5")
    _ask(page, "Write a long story")
    page.wait_for_selector("#chat-stop:enabled")
    page.locator(".msg.assistant .answer :is(p, ol, ul, pre)").first.wait_for()  # the first delta arrived
    page.click("#chat-stop")
    sync_api.expect(page.locator(".msg.assistant .stats")).to_contain_text("stopped", timeout=TIMEOUT_MS)
    assert page.text_content(".msg.assistant .answer").strip()
    assert page.is_disabled("#chat-stop")


def test_a_rag_citation_opens_its_chunk_as_text(page: Any, studio: Any) -> None:
    _open(page, studio)
    page.wait_for_selector("#chat-store option[value=docs]", state="attached")
    page.select_option("#chat-store", "docs")
    page.select_option("#chat-mode", "bm25")
    _ask(page, "What is the capital of France?")
    page.click(".sources button[data-doc='0']")
    page.wait_for_selector("#chunk-dialog[open]")
    assert "france.txt" in page.text_content("#chunk-title")
    chunk = page.text_content("#chunk-text")
    assert "Paris is the capital of France" in chunk and '<img src=x onerror="window.__pwned=1">' in chunk
    assert page.locator("#chunk-dialog img, #chunk-dialog script").count() == 0
    assert page.evaluate("window.__pwned") is None


HOSTILE = [
    "Sure [0]. <script>window.__pwned = 3</script>",
    ' <img src=x onerror="window.__pwned = 4"> **bold** `code`\n\n',
    '```html\n<b onclick="window.__pwned = 5">hi</b>\n```',
]


def _sse(deltas: list[str]) -> str:
    chunks = [{"choices": [{"index": 0, "delta": {"content": d}}]} for d in deltas]
    return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"


def test_injected_markup_in_model_output_stays_text(page: Any, studio: Any) -> None:
    """The model's reply (here a hostile one, served in place of the tiny model's) is rendered with
    textContent: tags show as text, nothing runs, and its [0] citation still opens the real chunk."""
    page.route(
        "**/v1/chat/completions",
        lambda route: route.fulfill(status=200, content_type="text/event-stream", body=_sse(HOSTILE)),
    )
    _open(page, studio)
    page.wait_for_selector("#chat-store option[value=docs]", state="attached")
    page.select_option("#chat-store", "docs")
    page.select_option("#chat-mode", "bm25")
    _ask(page, "capital of France")
    sync_api.expect(page.locator(".msg.assistant .stats")).to_contain_text("tokens", timeout=TIMEOUT_MS)
    answer = page.locator(".msg.assistant .answer")
    text = answer.text_content()
    assert "<script>window.__pwned = 3</script>" in text and 'onerror="window.__pwned = 4"' in text
    assert answer.locator("script, img, b").count() == 0
    assert answer.locator("strong").text_content() == "bold" and answer.locator("pre.code code").count() == 1
    page.click(".msg.assistant .answer button.cite[data-doc='0']")
    page.wait_for_selector("#chunk-dialog[open]")
    assert "Paris" in page.text_content("#chunk-text")
    assert page.evaluate("window.__pwned") is None


def test_an_arena_vote_lands_in_the_preferences_file(page: Any, studio: Any) -> None:
    _open(page, studio, "arena")
    page.wait_for_selector("#arena-b option[value=tiny]", state="attached")
    page.fill("#arena-temperature", "1.5")
    page.fill("#arena-max-tokens", "12")
    page.fill("#arena-prompt", "Name a river")
    page.click("#arena-run")
    page.wait_for_selector("#vote-a:enabled")
    a = page.text_content("#arena-a-out")
    page.click("#vote-a")
    sync_api.expect(page.locator("#arena-status")).to_contain_text(
        "Saved: 1 preference pair", timeout=TIMEOUT_MS
    )
    records = load_records(studio.preferences)
    assert len(records) == 1 and validate_record(records[0]) == "preference"
    assert records[0]["prompt"] == [{"role": "user", "content": "Name a river"}]
    assert " ".join(records[0]["chosen"].split()) == " ".join(a.split())
    assert records[0]["chosen"] != records[0]["rejected"]


def _append(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in records)


def test_a_running_finetunes_chart_gains_points(page: Any, studio: Any) -> None:
    run = studio.runs / "finetune" / "live-sft"
    run.mkdir(parents=True)
    _append(run / "metrics.jsonl", [{"kind": "train", "step": s, "loss": 3.0 - 0.2 * s} for s in (1, 2, 3)])
    _open(page, studio, "runs")
    page.click("button[data-run='finetune/live-sft']")
    page.wait_for_selector("#run-chart[data-points='3']")
    assert "running" in page.text_content("#run-status")
    _append(
        run / "metrics.jsonl",
        [{"kind": "train", "step": 4, "loss": 2.1}, {"kind": "eval", "step": 4, "eval_loss": 2.4}],
    )
    page.wait_for_selector("#run-chart[data-points='5']")
    assert page.text_content("#run-points") == "4 training points, 1 evaluations"
    assert page.locator("#run-chart polyline").count() == 2


def test_every_control_is_labelled_reachable_by_keyboard_and_fits_a_phone(browser: Any, studio: Any) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        _open(page, studio)
        unlabelled = page.evaluate(
            "() => [...document.querySelectorAll('input, select, textarea')]"
            ".filter((e) => !e.labels.length).map((e) => e.id)"
        )
        assert unlabelled == []
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.focus(".tab[data-page=chat]")
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")
        page.wait_for_selector("#page-arena:not([hidden])")
        assert page.get_attribute(".tab[data-page=arena]", "aria-current") == "page"
    finally:
        context.close()
