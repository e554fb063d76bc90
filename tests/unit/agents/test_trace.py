from __future__ import annotations

import pytest

from agent_script import ScriptedModel, answer, call, calls
from lmfoundry.agents.loop import run_agent
from lmfoundry.agents.tools.calculator import calculator


def test_untraced_runs_have_no_trace() -> None:
    result = run_agent(ScriptedModel(answer("hi")), "t", [calculator()])
    assert result.trace_id is None


def test_a_traced_run_records_every_step_in_mlflow() -> None:
    mlflow = pytest.importorskip("mlflow")
    model = ScriptedModel(calls(call("calculator", {"expression": "2 + 3"})), answer("5"))
    result = run_agent(model, "add", [calculator()], trace=True)
    assert result.trace_id is not None
    trace = mlflow.get_trace(result.trace_id)
    spans = [(span.name, span.span_type) for span in trace.data.spans]
    assert spans == [("agent", "AGENT"), ("step 0", "CHAIN"), ("model", "CHAT_MODEL"), ("calculator", "TOOL"),
                     ("step 1", "CHAIN"), ("model", "CHAT_MODEL")]  # fmt: skip
    tool_span = next(span for span in trace.data.spans if span.span_type == "TOOL")
    assert tool_span.outputs == "5"
