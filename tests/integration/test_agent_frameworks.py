"""Agent frameworks drive `lmf serve` on the packaged SmolLM2-135M-Instruct (transformers backend):
LangChain's ChatOpenAI (from PyPI) runs a tool-calling round trip and a streamed tool call, and
lmfoundry's own `run_agent` with `OpenAIToolModel` completes a traced run with a valid tool call.
The tiny model's answers are not checked for correctness, only that the protocol works."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration
NAME = "smollm2-135m-instruct"


@pytest.fixture(autouse=True)
def lmf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The packaged model loads from the installed package: no pulled store needed."""
    monkeypatch.setenv("LMF_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """`lmf serve` in-process on the transformers backend; yields the OpenAI base URL (…/v1)."""
    import lmfoundry
    from lmfoundry.serve.app import create_app
    from lmfoundry.serve.http_server import running_server
    from lmfoundry.serve.service import ServedModel, ServeOptions

    options = ServeOptions(embedder=None, max_tokens=256)
    served = ServedModel.create(
        lmfoundry.load(NAME, backend="transformers", threads=2), name=NAME, options=options
    )
    try:
        with running_server(create_app(served, options)) as url:
            yield f"{url}/v1"
    finally:
        served.close()


def _add_tool() -> Any:
    from langchain_core.tools import tool

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    return add


def _chat(base_url: str, max_tokens: int) -> Any:
    langchain_openai = pytest.importorskip("langchain_openai")
    return langchain_openai.ChatOpenAI(
        base_url=base_url,
        api_key="none",
        model=NAME,
        temperature=0,
        max_tokens=max_tokens,
        max_retries=0,
        timeout=120,
    )


def _check_add_call(call: dict[str, Any]) -> None:
    """LangChain parsed the call: the function name and integer arguments matching the schema."""
    assert call["name"] == "add", call
    assert set(call["args"]) == {"a", "b"}, call
    assert all(type(call["args"][key]) is int for key in ("a", "b")), call


def test_langchain_tool_calling_round_trip(base_url: str) -> None:
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    add = _add_tool()
    question = HumanMessage("What is 3 plus 4? Use the add tool.")
    first = _chat(base_url, 128).bind_tools([add], tool_choice="required").invoke([question])
    assert isinstance(first, AIMessage)
    assert len(first.tool_calls) >= 1 and not first.invalid_tool_calls, first
    call = first.tool_calls[0]
    _check_add_call(call)
    assert call["id"]
    result = add.invoke(call["args"])
    assert result == call["args"]["a"] + call["args"]["b"]

    history = [question, first, ToolMessage(content=str(result), tool_call_id=call["id"])]
    final = _chat(base_url, 32).bind_tools([add], tool_choice="none").invoke(history)
    assert isinstance(final, AIMessage)
    assert not final.tool_calls, final
    assert isinstance(final.content, str) and final.content.strip(), final
    assert final.response_metadata.get("finish_reason") in ("stop", "length"), final.response_metadata


def test_langchain_streamed_tool_call_assembles(base_url: str) -> None:
    model = _chat(base_url, 128).bind_tools([_add_tool()], tool_choice="required")
    chunks = list(model.stream("Add 2 and 40."))
    assert len(chunks) > 1
    message = chunks[0]
    for chunk in chunks[1:]:
        message = message + chunk
    assert message.tool_call_chunks and not message.invalid_tool_calls, message
    assert len(message.tool_calls) >= 1, message
    _check_add_call(message.tool_calls[0])
    assert message.tool_calls[0]["id"]
    assert message.response_metadata.get("finish_reason") == "tool_calls", message.response_metadata


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def test_run_agent_with_openai_tool_model(base_url: str, mlflow_db: Path) -> None:
    mlflow = pytest.importorskip("mlflow")
    from lmfoundry.agents import OpenAIToolModel, python_tool, run_agent

    # The 135M model cannot drive `calculator()` here: with tool_choice="auto" it answers
    # "12 * 7 = 88" in text, and when a call is forced it writes `}}</tool_call> 12 * 7 = 88 ...`
    # into the free-form "expression" string until max_tokens. Integer arguments (`multiply`)
    # give it a call it can complete; "required" makes the server's grammar force that call, so
    # every step calls a tool and two steps (call, result fed back, call again) are enough.
    model = OpenAIToolModel(base_url=base_url, model=NAME, max_tokens=128)
    result = run_agent(
        model, "What is 12 * 7?", [python_tool(multiply)], max_steps=2, trace=True, tool_choice="required"
    )

    assert result.stop_reason in ("answer", "max_steps", "time_limit")
    assert 1 <= len(result.steps) <= 2
    calls = [call for step in result.steps for call in step.tool_calls]
    assert calls, [step.content for step in result.steps]
    assert result.valid_calls >= 1 and result.invalid_calls == 0, result.to_dict()
    first = calls[0]
    assert first.name == "multiply" and first.error is None, first
    assert set(first.arguments) == {"a", "b"} and all(type(v) is int for v in first.arguments.values())
    assert first.observation == str(first.arguments["a"] * first.arguments["b"])
    # The conversation the run kept: the assistant's call and the tool's answer under the same id.
    assistant = next(m for m in result.messages if m["role"] == "assistant" and m.get("tool_calls"))
    assert assistant["tool_calls"][0]["id"] == first.id
    tool_message = next(m for m in result.messages if m["role"] == "tool")
    assert tool_message == {"role": "tool", "tool_call_id": first.id, "content": first.observation}
    # The MLflow trace has the run, every model call and the tool call with its observation.
    assert result.trace_id is not None
    spans = mlflow.get_trace(result.trace_id).data.spans
    assert [span.span_type for span in spans].count("CHAT_MODEL") == len(result.steps)
    tool_spans = [span for span in spans if span.span_type == "TOOL"]
    assert tool_spans and tool_spans[0].name == "multiply"
    assert tool_spans[0].outputs == first.observation
