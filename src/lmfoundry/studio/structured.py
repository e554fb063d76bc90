"""Checking a JSON-mode chat reply: does it parse, and does it validate against the schema sent?

Constrained decoding makes the model follow the schema token by token, but a reply cut by
`max_tokens` ends mid-value; the chat page says so instead of showing half an object as valid.
The schema is checked with `jsonschema` (the validator its `$schema` names, Draft 2020-12 when it
names none), independently of the grammar that constrained the decoding.
"""

from __future__ import annotations

import json
from typing import Any

from lmfoundry.errors import InvalidInputError
from lmfoundry.plugins import require

MAX_ERRORS = 5


def check_json_reply(text: str, schema: dict[str, Any] | None) -> dict[str, Any]:
    """{"valid", "value" (the parsed reply or None), "errors"}; without a schema any JSON object is
    valid (`response_format: json_object`). A malformed schema is the caller's error."""
    jsonschema = require("jsonschema", extra="serve")
    validator = None
    if schema is not None:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise InvalidInputError(f"invalid JSON schema: {exc.message}") from exc
        validator = cls(schema)
    try:
        value = json.loads(text)
    except ValueError as exc:
        return {"valid": False, "value": None, "errors": [f"the reply is not JSON: {exc}"]}
    if validator is None:
        errors = [] if isinstance(value, dict) else ["the reply is JSON but not an object"]
    else:
        found = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        errors = [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in found]
    return {"valid": not errors, "value": value, "errors": errors[:MAX_ERRORS]}
