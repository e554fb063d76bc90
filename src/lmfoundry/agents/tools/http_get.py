"""`http_get`: fetch a web page, only from hosts the user named.

Off by default: the tool cannot be made without a non-empty allow-list, and the host of every URL
(redirects included, since redirects are not followed) is checked against it before any network
call. Only http and https; a timeout on every request; the text is truncated so one page cannot
fill the model's context.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from lmfoundry.agents.tools.base import Tool, ToolError, object_schema, require_str
from lmfoundry.errors import InvalidInputError
from lmfoundry.plugins import require

MAX_CHARS = 4000
DEFAULT_TIMEOUT_S = 10.0


def normalize_hosts(hosts: Iterable[str]) -> tuple[str, ...]:
    """Lower-case host names; an empty list is an error (the tool is off unless hosts are named)."""
    allowed = tuple(sorted({h.strip().lower() for h in hosts if h.strip()}))
    if not allowed:
        raise InvalidInputError("http_get needs at least one allowed host (--allow-host HOST)")
    bad = [h for h in allowed if any(c in h for c in "/:@ ")]
    if bad:
        raise InvalidInputError(f"allowed hosts are host names without scheme or port, got: {', '.join(bad)}")
    return allowed


def check_url(url: str, allowed: tuple[str, ...]) -> str:
    """The URL if its scheme is http(s) and its host is allowed; otherwise a ToolError that says why."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise ToolError(f"only http and https URLs are allowed, got {parts.scheme or 'no scheme'!r}")
    host = (parts.hostname or "").lower()
    if host not in allowed:
        raise ToolError(f"host {host or '(none)'!r} is not allowed (allowed hosts: {', '.join(allowed)})")
    return url.strip()


def fetch(url: str, timeout_s: float, max_chars: int = MAX_CHARS) -> str:
    """GET the URL (no redirects followed) and return `HTTP <status>` and the truncated text."""
    httpx = require("httpx", extra="agents")
    try:
        response = httpx.get(url, timeout=timeout_s, follow_redirects=False)
    except httpx.TimeoutException:
        raise ToolError(f"no response from {url} within {timeout_s:.1f} s") from None
    except httpx.HTTPError as err:
        raise ToolError(f"request failed: {type(err).__name__}: {err}") from None
    text = response.text
    if len(text) > max_chars:
        text = text[:max_chars] + f"\n... (truncated, {len(response.text)} characters in all)"
    location = response.headers.get("location")
    note = f" (redirect to {location}; fetch it if its host is allowed)" if location else ""
    return f"HTTP {response.status_code}{note}\n{text}"


def http_get(allowed_hosts: Iterable[str], *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Tool:
    """The `http_get` tool for these hosts only."""
    allowed = normalize_hosts(allowed_hosts)

    def run(url: Any, timeout_s: float | None = None) -> str:
        checked = check_url(require_str(url, "url"), allowed)
        limit = default_timeout if timeout_s is None else max(0.1, min(default_timeout, timeout_s))
        return fetch(checked, limit)

    default_timeout = timeout_s
    return Tool(
        name="http_get",
        description=f"Fetch a URL with HTTP GET and return its text (hosts allowed: {', '.join(allowed)}).",
        parameters=object_schema({"url": {"type": "string", "description": "http(s) URL"}}),
        fn=run,
        takes_timeout=True,
    )
