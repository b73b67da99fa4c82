"""A check for schemathesis: a schema-valid request is refused only for what no schema knows.

POST /api/notify/ answers 422 to a body the document allows in two cases that depend on
the database, not on the body: a `user_id` that names no user, and an `Idempotency-Key`
used before with another body (the status draft-ietf-httpapi-idempotency-key-header asks
for). schemathesis.toml lets 422 pass its own positive_data_acceptance for that operation;
this check then holds every such 422 to those two reasons, so that a field rule the
document does not state (a pattern, a length) still fails the run.

Loaded with SCHEMATHESIS_HOOKS=<this file>.
"""

from __future__ import annotations

from typing import Any

import jsonschema_rs  # schemathesis's own validator
import schemathesis

STATE_ERRORS = {
    "user_id": "does not exist",
    "Idempotency-Key": "used with a different request",
}


def _state_only(errors: list[dict[str, Any]]) -> bool:
    return bool(errors) and all(
        STATE_ERRORS.get(str(error.get("field")), "\0") in str(error.get("message"))
        for error in errors
    )


_VALIDATORS: dict[tuple[int, str], Any] = {}


def _schema_valid_body(case: Any) -> bool:
    """Whether the request is valid for the operation by the document itself: a JSON body
    that matches its schema, and no query string.

    Judged here rather than from schemathesis's own record of the case, which calls a
    value taken over from an earlier answer (a link, a pool) valid without looking.
    """
    operation = case.operation.definition.raw
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None or not isinstance(case.body, dict) or case.query:
        return False
    pointer = content["schema"].get("$ref")
    if pointer is None:
        return False
    document = case.operation.schema.raw_schema
    key = (id(document), pointer)
    if key not in _VALIDATORS:
        # The whole document as the root, so that its $refs resolve.
        _VALIDATORS[key] = jsonschema_rs.Draft202012Validator(
            {**document, "$ref": pointer}, validate_formats=True
        )
    return bool(_VALIDATORS[key].is_valid(case.body))


@schemathesis.check
def refused_only_for_state(ctx: Any, response: Any, case: Any) -> bool | None:
    """A 422 to a schema-valid body names only what depends on stored state."""
    if response.status_code != 422 or not _schema_valid_body(case):
        return None
    try:
        errors = response.json().get("errors") or []
    except ValueError:
        errors = []
    if not _state_only(errors):
        raise AssertionError(f"A schema-valid request was refused: {errors}")
    return None
