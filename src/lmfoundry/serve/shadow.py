"""Shadow traffic: re-run a served request on the shadow variant in the background and store both
answers as one record of the pairs file (`shadow_pairs.py` has its format and the tools that read
it). The caller already has its answer; the shadow's is never returned.
"""

from __future__ import annotations

import time
from typing import Any

from lmfoundry.serve import handlers
from lmfoundry.serve.schema import ChatCompletionRequest, CompletionRequest
from lmfoundry.serve.shadow_pairs import PairStore, answer_text, request_input


async def run_shadow(
    state: handlers.ServerState,
    endpoint: str,
    request: ChatCompletionRequest | CompletionRequest,
    served_body: dict[str, Any],
    served_variant: str,
    shadow_variant: str,
    store: PairStore,
) -> None:
    """Answer `request` again (one choice, not streamed) and store the pair. Runs in a task whose
    rollout context pins the shadow variant, so it is neither routed, captured nor shadowed again."""
    copy = request.model_copy(update={"stream": False, "stream_options": None, "n": 1})
    started = time.monotonic()
    if isinstance(copy, ChatCompletionRequest):
        body = await handlers.chat_completions(state, copy)
    else:
        body = await handlers.completions(state, copy)
    assert isinstance(body, dict)  # not streamed
    dumped = request.model_dump(exclude_none=True)
    served = answer_text(endpoint, served_body)
    store.add(
        {
            "id": served_body.get("id"),
            "created": time.time(),
            "endpoint": endpoint,
            "input": request_input(endpoint, dumped),
            "reference": served,
            "served_variant": served_variant,
            "served_output": served,
            "shadow_variant": shadow_variant,
            "shadow_output": answer_text(endpoint, body),
            "shadow_e2e_s": round(time.monotonic() - started, 6),
        }
    )
