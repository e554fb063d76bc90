"""The studio in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven by playwright,
against the tiny model on a real uvicorn. Skipped, with the reason, when either is missing."""

from __future__ import annotations

import importlib.util
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


def _rag_mode(page: Any) -> None:
    page.wait_for_selector("#chat-store option[value=docs]", state="attached")
    page.select_option("#chat-store", "docs")
    page.select_option("#chat-mode", "bm25")


def _click_source(page: Any, number: int) -> None:
    """Open document `number` from the sources under the answer, unfolding "also retrieved" first
    when the answer does not draw on it (the sources settle once the answer is attributed)."""
    sources = page.locator(".msg.assistant .sources")
    sync_api.expect(sources).not_to_contain_text("Retrieved:", timeout=TIMEOUT_MS)
    button = sources.locator(f"button[data-doc='{number}']")
    if not button.is_visible():
        sources.locator("details.also summary").click()
    button.click()


def test_a_rag_citation_opens_its_chunk_as_text(page: Any, studio: Any) -> None:
    _open(page, studio)
    _rag_mode(page)
    _ask(page, "What is the capital of France?")
    _click_source(page, 0)
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
    _rag_mode(page)
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
    shown = {side: page.text_content(f"#arena-{side}-out") for side in ("a", "b")}
    page.click("#vote-a")
    sync_api.expect(page.locator("#arena-status")).to_contain_text(
        "Saved: 1 preference pair", timeout=TIMEOUT_MS
    )
    records = load_records(studio.preferences)
    assert len(records) == 1 and validate_record(records[0]) == "preference"
    assert records[0]["prompt"] == [{"role": "user", "content": "Name a river"}]
    # The file holds the raw answers; the panes show them rendered (a newline becomes <br>, `**`
    # markers go), so each answer is compared through the page's own renderer, not as text.
    assert _rendered(page, records[0]["chosen"]) == shown["a"]
    assert _rendered(page, records[0]["rejected"]) == shown["b"]
    assert records[0]["chosen"] != records[0]["rejected"]


def test_a_vote_saves_the_raw_answers_not_their_rendering(page: Any, studio: Any) -> None:
    """The cause of the arena test's rare failure: a newline or `**` in an answer is rendered away,
    so a pane's text is not the answer; the vote must still save the answer as the model wrote it."""
    answers = iter(["The **Seine**\nflows", "A river\n\n- the Loire"])
    page.route(
        "**/v1/chat/completions",
        lambda route: route.fulfill(status=200, content_type="text/event-stream", body=_sse([next(answers)])),
    )
    _open(page, studio, "arena")
    page.wait_for_selector("#arena-b option[value=tiny]", state="attached")
    page.fill("#arena-prompt", "Name a river")
    page.click("#arena-run")
    page.wait_for_selector("#vote-b:enabled")
    page.click("#vote-b")
    sync_api.expect(page.locator("#arena-status")).to_contain_text("Saved:", timeout=TIMEOUT_MS)
    last = load_records(studio.preferences)[-1]
    assert {last["chosen"], last["rejected"]} == {"The **Seine**\nflows", "A river\n\n- the Loire"}
    assert page.text_content("#arena-b-out") == _rendered(page, last["chosen"])


def _rendered(page: Any, text: str) -> str:
    """The text content of `text` as render.js renders model output."""
    return str(
        page.evaluate(
            "async (text) => (await import('/ui/static/render.js')).renderMarkdown(text).textContent", text
        )
    )


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


def _answer_with(page: Any, text: str) -> None:
    """Serve `text` as the streamed reply in place of the tiny model's (which is random)."""
    words = text.split(" ")
    deltas = [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
    page.route(
        "**/v1/chat/completions",
        lambda route: route.fulfill(status=200, content_type="text/event-stream", body=_sse(deltas)),
    )


def test_a_rag_answer_shows_the_document_it_draws_on_first_and_folds_the_rest(page: Any, studio: Any) -> None:
    """An answer citing nothing is attributed as `lmf rag ask` does (the closest document by the
    store's embedder); the other retrieved document waits under "also retrieved"."""
    _answer_with(page, "Berlin is the capital of Germany, and the Spree runs through it.")
    _open(page, studio)
    _rag_mode(page)
    _ask(page, "What is the capital of Germany?")
    sources = page.locator(".msg.assistant .sources")
    cited = sources.locator("button.cited")
    sync_api.expect(cited).to_have_count(1, timeout=TIMEOUT_MS)
    assert "germany.txt" in cited.text_content() and "attributed" in cited.text_content()
    assert cited.get_attribute("data-cited") == "similarity"
    folded = sources.locator("details.also")
    assert folded.locator("summary").text_content() == "also retrieved (1)"
    other = folded.locator("button")
    assert "france.txt" in other.text_content() and not other.is_visible()
    folded.locator("summary").press("Enter")  # the keyboard unfolds it
    other.click()
    assert "Paris is the capital of France" in page.text_content("#chunk-text")
    page.keyboard.press("Escape")
    page.reload()  # the attribution is kept with the conversation
    sync_api.expect(page.locator(".msg.assistant .sources button.cited")).to_have_count(1)


def test_a_rag_answer_that_cites_a_document_lists_that_one(page: Any, studio: Any) -> None:
    _answer_with(page, "It is Paris [1].")
    _open(page, studio)
    _rag_mode(page)
    _ask(page, "What is the capital of Germany?")
    cited = page.locator(".msg.assistant .sources button.cited")
    sync_api.expect(cited).to_have_count(1, timeout=TIMEOUT_MS)
    assert cited.get_attribute("data-doc") == "1" and cited.get_attribute("data-cited") == "model"
    assert "france.txt (cited)" in cited.text_content()


def _json_mode(page: Any, schema: dict[str, Any]) -> None:
    page.select_option("#chat-format", "json")
    page.fill("#chat-schema", json.dumps(schema))


NUMBER_SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 99}, "ok": {"type": "boolean"}},
    "required": ["n", "ok"],
}


def test_json_schema_mode_shows_the_reply_pretty_printed_and_validated(page: Any, studio: Any) -> None:
    """The tiny model is random, but constrained decoding holds it to the schema: the reply parses
    and validates; cut short by max tokens, it is reported invalid instead."""
    _open(page, studio)
    assert page.is_hidden("#chat-schema")
    _json_mode(page, NUMBER_SCHEMA)
    page.fill("#chat-max-tokens", "60")
    _ask(page, "Pick a number")
    verdict = page.locator(".msg.assistant .verdict")
    sync_api.expect(verdict).to_have_text("valid against the schema", timeout=TIMEOUT_MS)
    shown = page.text_content(".msg.assistant .json-reply pre code")
    value = json.loads(shown)
    assert set(value) == {"n", "ok"} and 0 <= value["n"] <= 99 and shown == json.dumps(value, indent=2)
    page.fill("#chat-max-tokens", "3")
    _ask(page, "Pick another")
    cut = page.locator(".msg.assistant .verdict").nth(1)
    sync_api.expect(cut).to_contain_text("not valid (cut by max tokens): the reply is not JSON")


def test_a_schema_that_is_not_json_is_refused_before_sending(page: Any, studio: Any) -> None:
    _open(page, studio)
    page.wait_for_selector("#chat-model option[value=tiny]", state="attached")
    page.select_option("#chat-format", "json")
    page.fill("#chat-schema", "{type: object")
    _ask(page, "hi")
    sync_api.expect(page.locator("#error")).to_contain_text("the JSON schema is not valid JSON")
    assert page.locator(".msg").count() == 0


CHOOSE_CITY = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "enum": ["Paris", "Berlin"]}},
            "required": ["city"],
            "additionalProperties": False,  # else the random model invents keys until max tokens
        },
    },
}


def test_tools_mode_shows_each_call_as_a_card(page: Any, studio: Any) -> None:
    _open(page, studio)
    page.select_option("#chat-format", "tools")
    page.fill("#chat-tools", json.dumps([CHOOSE_CITY]))
    page.select_option("#chat-tool-choice", "required")
    page.fill("#chat-max-tokens", "150")
    _ask(page, "Weather in Paris?")
    card = page.locator(".msg.assistant .call").first
    card.wait_for(timeout=TIMEOUT_MS)
    sync_api.expect(page.locator(".msg.assistant .stats")).to_contain_text("tokens", timeout=TIMEOUT_MS)
    assert card.locator(".call-name code").text_content() == "get_weather"
    assert json.loads(card.locator("pre code").text_content())["city"] in ("Paris", "Berlin")
    assert card.get_attribute("aria-label") == "tool call get_weather"


HOSTILE_JSON = '{"city": "<img src=x onerror=\\"window.__pwned = 6\\">"}'
HOSTILE_CALL = {
    "index": 0,
    "id": "call_1",
    "type": "function",
    "function": {
        "name": "<b>get_weather</b>",
        "arguments": '{"city": "<script>window.__pwned = 7</script>"}',
    },
}


def _hostile_structured(route: Any) -> None:
    tools = "tools" in (route.request.post_data_json or {})
    delta = {"tool_calls": [HOSTILE_CALL]} if tools else {"content": HOSTILE_JSON}
    chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
    route.fulfill(
        status=200, content_type="text/event-stream", body=f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n"
    )


def test_markup_in_a_json_reply_or_a_tool_call_stays_text(page: Any, studio: Any) -> None:
    page.route("**/v1/chat/completions", _hostile_structured)
    _open(page, studio)
    page.wait_for_selector("#chat-model option[value=tiny]", state="attached")
    page.select_option("#chat-format", "json")
    page.fill("#chat-schema", "")
    _ask(page, "a place")
    sync_api.expect(page.locator(".msg.assistant .verdict")).to_have_text("valid against the schema")
    page.select_option("#chat-format", "tools")
    _ask(page, "the weather")
    card = page.locator(".msg.assistant .call")
    card.wait_for()
    assert card.locator(".call-name code").text_content() == "<b>get_weather</b>"
    assert "<script>window.__pwned = 7</script>" in card.locator("pre").text_content()
    assert "onerror" in page.text_content(".msg.assistant .json-reply")
    assert page.locator("#chat-log img, #chat-log script, #chat-log b").count() == 0
    assert page.evaluate("window.__pwned") is None


def test_quantize_from_the_models_page_shows_progress_and_the_new_entry(
    page: Any, studio: Any, tiny_llama_dir: Path
) -> None:
    from lmfoundry.models import store

    store.pull(str(tiny_llama_dir), "qtiny")
    method = "gguf-q8_0" if importlib.util.find_spec("llama_cpp") else "int8"
    created = "qtiny-q8_0" if method == "gguf-q8_0" else "qtiny-int8"
    _open(page, studio, "models")
    page.click("button.quantize[data-model=qtiny]")
    assert page.evaluate("document.activeElement.id") == "quantize-method"
    assert page.input_value("#quantize-model") == "qtiny"
    page.select_option("#quantize-method", method)
    page.click("#quantize-run")
    stage = page.locator("#quantize-stage")
    sync_api.expect(stage).to_contain_text(f"created {created}", timeout=TIMEOUT_MS)
    assert page.evaluate("document.getElementById('quantize-progress').value") == 1
    page.wait_for_selector(f"#store-table tr.new[data-model='{created}']")
    sync_api.expect(page.locator("#model-detail")).to_contain_text(f'"name": "{created}"')
    assert store.read_manifest(created).quantization["method"] == method
    page.click("#quantize-run")  # the same again: the entry exists, and the page says so
    sync_api.expect(stage).to_contain_text("failed", timeout=TIMEOUT_MS)
    assert f"model {created!r} already exists" in stage.text_content()
    sync_api.expect(page.locator("#error")).to_contain_text("quantization failed")
