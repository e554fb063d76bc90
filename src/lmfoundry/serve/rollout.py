"""Rollouts: split the requests for the served model between variants (A/B, canary), mirror a share
to a shadow variant, watch a canary and roll it back by itself, promote without a restart.

How a request flows: `RolloutMiddleware` (rollout_routes.py) opens a `RequestRoute` for it (the
user key from the sticky header) in a context variable; `handlers.resolve_model` asks `route()` for
the adapter when the request names the served model; `handlers._capture` hands the finished body
to `after_response()` (empty check, shadow); the middleware adds `X-LMF-Variant` to the response
and reports status and latency to `finish()` (metrics, canary window).

Sticky assignment: a user key is hashed (SHA-256) to a point in [0, 1) that falls in one variant's
slice of the cumulative weights, so the same user gets the same variant for as long as the weights
stay the same. Requests without the header are assigned at random.

What a variant runs on this server, and promotion to champion: rollout_variants.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from lmfoundry.errors import LmfError
from lmfoundry.serve.canary import CanaryMonitor, Outcome, check_judge
from lmfoundry.serve.metrics import LATENCY_BUCKETS
from lmfoundry.serve.rollout_spec import RolloutSpec
from lmfoundry.serve.rollout_variants import LiveVariant, promoted, public, resolve_variant, unavailable
from lmfoundry.serve.shadow import run_shadow
from lmfoundry.serve.shadow_pairs import PairStore, answer_text, request_input

if TYPE_CHECKING:
    from collections.abc import Callable

    from lmfoundry.serve.handlers import ServerState
    from lmfoundry.serve.service import ServedModel

log = logging.getLogger("lmfoundry.serve")


@dataclass
class RequestRoute:
    """One request's rollout state, shared by the middleware and the handlers via `CURRENT_ROUTE`."""

    user: str | None
    variant: str | None = None
    empty: bool = False
    shadow_of: LiveVariant | None = None
    """Set in a shadow task: route to this variant, do not capture, do not shadow again."""


CURRENT_ROUTE: ContextVar[RequestRoute | None] = ContextVar("lmf_rollout_route", default=None)


def user_point(user: str) -> float:
    """The user's fixed point in [0, 1): the first 8 bytes of SHA-256 of the key."""
    return int.from_bytes(hashlib.sha256(user.encode()).digest()[:8], "big") / 2**64


def pick(variants: list[LiveVariant], point: float) -> LiveVariant | None:
    """The variant whose slice of the cumulative weights holds `point` (None if all weights are 0)."""
    total = sum(v.weight for v in variants)
    if total <= 0:
        return None
    target, cumulative = point * total, 0.0
    for variant in variants:
        cumulative += variant.weight
        if target < cumulative and variant.weight > 0:
            return variant
    return next(v for v in reversed(variants) if v.weight > 0)


class RolloutMetrics:
    """Per-variant series on the app's Prometheus registry (label `variant`)."""

    def __init__(self, prometheus_registry: Any) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        r = prometheus_registry
        self.requests = Counter(
            "lmf_variant_requests", "requests answered per variant", ["variant", "status"], registry=r
        )
        self.latency = Histogram(
            "lmf_variant_e2e_seconds",
            "request latency per variant (arrival to last byte)",
            ["variant"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.empty = Counter(
            "lmf_variant_empty_responses", "answers with only empty choices", ["variant"], registry=r
        )
        self.share = Gauge(
            "lmf_variant_weight_ratio", "share of new traffic routed to the variant", ["variant"], registry=r
        )
        self.shadow = Counter(
            "lmf_shadow_requests", "mirrored requests per shadow variant", ["variant", "outcome"], registry=r
        )
        self.rollbacks = Counter(
            "lmf_canary_rollbacks", "automatic canary rollbacks", ["variant"], registry=r
        )


class Rollout:
    """The live rollout of one server; inactive (every request on the base model) until applied."""

    def __init__(self, prometheus_registry: Any, judge: Callable[[str, str], float] | None = None) -> None:
        """`judge(user_input, answer) -> score` is the canary's judge hook (unset: no judge check)."""
        self.metrics = RolloutMetrics(prometheus_registry)
        self.judge = judge
        self.spec: RolloutSpec | None = None
        self.variants: list[LiveVariant] = []
        self.canary: CanaryMonitor | None = None
        self.pairs: PairStore | None = None
        self.rolled_back: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- configuration ------------------------------------------------------------------------
    def apply(
        self, spec: RolloutSpec, served: ServedModel, redact: Callable[[Any], Any] | None = None
    ) -> None:
        """Resolve every variant (loading registry adapters into the pool), then switch at once.
        Blocking: run it off the event loop."""
        check_judge(spec, self.judge)
        variants = [resolve_variant(v, served) for v in spec.variants]
        pairs = PairStore(spec.shadow.pairs, redact) if spec.shadow is not None else None
        with self._lock:
            self.spec, self.variants, self.pairs = spec, variants, pairs
            self.canary = CanaryMonitor(spec.canary) if spec.canary is not None else None
            self.rolled_back = None
            self._publish_shares()

    def clear(self) -> None:
        """Stop the rollout: every request goes to the model it names again."""
        with self._lock:
            self.spec, self.variants, self.canary, self.pairs, self.rolled_back = None, [], None, None, None
            self._publish_shares()

    def user_header(self) -> str:
        spec = self.spec
        return spec.user_header if spec is not None else "X-LMF-User"

    # -- the request path ---------------------------------------------------------------------
    def route(self, served: ServedModel) -> str | None:
        """The adapter for a request that names the served model (None = the base model)."""
        current = CURRENT_ROUTE.get()
        if current is not None and current.shadow_of is not None:
            return current.shadow_of.adapter
        with self._lock:
            point = user_point(current.user) if current and current.user else random.random()
            chosen = pick(self.variants, point)
        if chosen is None:
            return None
        if current is not None:
            current.variant = chosen.name
        adapter = chosen.adapter
        if adapter is not None and (served.adapters is None or adapter not in served.adapters.names()):
            raise unavailable(chosen.name, adapter)
        return adapter

    def in_shadow(self) -> bool:
        current = CURRENT_ROUTE.get()
        return current is not None and current.shadow_of is not None

    def after_response(self, state: ServerState, endpoint: str, request: Any, body: dict[str, Any]) -> None:
        """A routed request got its full answer: note whether it was empty; maybe shadow it."""
        current = CURRENT_ROUTE.get()
        if current is None or current.variant is None:
            return
        choices = body.get("choices") or []
        current.empty = all(not _choice_text(endpoint, c).strip() for c in choices)
        with self._lock:
            spec, pairs, canary = self.spec, self.pairs, self.canary
            shadow = self._live(spec.shadow.variant) if spec and spec.shadow else None
            mirror = (
                spec is not None
                and spec.shadow is not None
                and shadow is not None
                and shadow.name != current.variant
                and not self._was_rolled_back(shadow.name)
                and random.random() < spec.shadow.share
            )
        if mirror and shadow is not None and pairs is not None:
            self._spawn(self._shadow(state, endpoint, request, body, current.variant, shadow, pairs))
        if canary is not None and canary.spec.variant != current.variant:
            canary = None
        if canary is not None and self.judge is not None and random.random() < canary.spec.judge_share:
            question = request_input(endpoint, request.model_dump(exclude_none=True))
            self._spawn(self._judge(current.variant, question, answer_text(endpoint, body)))

    def finish(self, route: RequestRoute, status: int, seconds: float) -> None:
        """The middleware's report of a routed request: metrics and the canary window."""
        name = route.variant
        assert name is not None
        self.metrics.requests.labels(variant=name, status=str(status)).inc()
        self.metrics.latency.labels(variant=name).observe(seconds)
        if route.empty:
            self.metrics.empty.labels(variant=name).inc()
        canary = self.canary
        if canary is not None and canary.spec.variant == name:
            failed = canary.add(Outcome(error=status >= 500, seconds=seconds, empty=route.empty))
            if failed:
                self._roll_back(name, failed)

    # -- background work ----------------------------------------------------------------------
    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)

    async def _shadow(
        self, state: ServerState, endpoint: str, request: Any, body: dict[str, Any], served: str,
        shadow: LiveVariant, pairs: PairStore,
    ) -> None:  # fmt: skip
        CURRENT_ROUTE.set(RequestRoute(user=None, shadow_of=shadow))  # this task's own context
        try:
            await run_shadow(state, endpoint, request, body, served, shadow.name, pairs)
        except Exception as exc:  # the caller has its answer: a failed shadow only counts
            log.warning("shadow request to %s failed: %s", shadow.name, exc)
            self.metrics.shadow.labels(variant=shadow.name, outcome="error").inc()
        else:
            self.metrics.shadow.labels(variant=shadow.name, outcome="ok").inc()

    async def _judge(self, variant: str, question: str, answer: str) -> None:
        from anyio import to_thread

        judge, canary = self.judge, self.canary
        if judge is None or canary is None:
            return
        try:
            score = float(await to_thread.run_sync(judge, question, answer))
        except Exception as exc:
            log.warning("canary judge failed: %s", exc)
            return
        failed = canary.add_judge_score(score)
        if failed:
            self._roll_back(variant, failed)

    def _roll_back(self, name: str, reason: str) -> None:
        with self._lock:
            live = self._live(name)
            if live is None or live.weight == 0:
                return  # already rolled back (another request saw the same window)
            self.variants = [replace(v, weight=0.0) if v.name == name else v for v in self.variants]
            self.rolled_back = {"variant": name, "reason": reason, "at": time.time()}
            self._publish_shares()
        self.metrics.rollbacks.labels(variant=name).inc()
        log.warning("canary %s rolled back: %s", name, reason)

    # -- promotion and reporting --------------------------------------------------------------
    def promoted_spec(self, name: str) -> tuple[RolloutSpec, dict[str, Any] | None]:
        """Move `name` into the `champion` variant (and the registry's champion alias)."""
        with self._lock:
            spec, live = self.spec, self._live(name)
        if spec is None or live is None:
            raise LmfError(f"no variant {name!r} in the current rollout")
        return promoted(spec, live)

    def describe(self) -> dict[str, Any]:
        with self._lock:
            spec, variants = self.spec, list(self.variants)
            total = sum(v.weight for v in variants)
            canary = self.canary
            rolled_back = self.rolled_back
        if spec is None:
            return {"active": False, "variants": []}
        return {
            "active": True,
            "user_header": spec.user_header,
            "variants": [{**public(v), "share": v.weight / total if total else 0.0} for v in variants],
            "canary": None
            if canary is None
            else {**canary.spec.model_dump(), "window_stats": canary.summary()},
            "shadow": None if spec.shadow is None else spec.shadow.model_dump(mode="json"),
            "rolled_back": rolled_back,
        }

    def _was_rolled_back(self, name: str) -> bool:
        return self.rolled_back is not None and self.rolled_back["variant"] == name

    def _live(self, name: str) -> LiveVariant | None:
        return next((v for v in self.variants if v.name == name), None)

    def _publish_shares(self) -> None:
        self.metrics.share.clear()
        total = sum(v.weight for v in self.variants)
        for v in self.variants:
            self.metrics.share.labels(variant=v.name).set(v.weight / total if total else 0.0)


def _choice_text(endpoint: str, choice: dict[str, Any]) -> str:
    if endpoint == "chat":
        message = choice.get("message") or {}
        return str(message.get("content") or "") + ("tool" if message.get("tool_calls") else "")
    return str(choice.get("text") or "")
