"""OpenAI-style API errors: one exception type that every route raises, rendered as the OpenAI
error object (`{"error": {"message", "type", "param", "code"}}`) with its HTTP status.

Why one type: clients (the `openai` package included) read `error.message` and the status code,
so every failure path, validation and auth included, must produce exactly that shape.
"""

from __future__ import annotations

from typing import Any

from lmfoundry.errors import LmfError


class NotFoundError(LmfError):
    """A library error that means "no such object" to an HTTP client (404)."""


class ConflictError(LmfError):
    """A library error that means "not in a state that allows this" (409, with `code`)."""

    code = "conflict"


class APIError(Exception):
    """An error answered to the client; `status` is the HTTP code."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def not_found(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(404, message, param=param, code=code)


def rate_limited(message: str, retry_after_s: int) -> APIError:
    return APIError(
        429,
        message,
        type="rate_limit_error",
        code="rate_limit_exceeded",
        headers={"Retry-After": str(retry_after_s)},
    )


def timeout(message: str) -> APIError:
    return APIError(504, message, type="server_error", code="timeout")


def internal(message: str = "internal server error") -> APIError:
    return APIError(500, message, type="server_error", code="internal_error")


def from_validation_errors(errors: list[dict[str, Any]]) -> APIError:
    """A 400 naming the first problem pydantic (or FastAPI's JSON decoder) found."""
    if not errors:
        return bad_request("invalid request")
    first = errors[0]
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(loc) or None
    kind = first.get("type", "")
    if kind == "json_invalid":
        return bad_request(
            f"request body is not valid JSON: {first.get('ctx', {}).get('error', first.get('msg'))}"
        )
    if kind == "extra_forbidden":
        return bad_request(
            f"unknown field {param!r} (not part of the request schema)", param, "unknown_field"
        )
    if kind == "missing":
        return bad_request(f"missing required field {param!r}", param, "missing_field")
    message = str(first.get("msg", "invalid value"))
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return bad_request(
        f"invalid value for {param or 'request body'!r}: {message}{more}", param, "invalid_value"
    )
