"""The pieces the OpenAPI document's operations are built from.

Schema references, headers, parameters, links, and the error answers every operation may
give, each with why it is given: written once here, so that every path in `openapi.py`
says the same thing the same way.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from notifyd.domain import BIGINT_MAX, MAX_IDEMPOTENCY_KEY_LENGTH
from notifyd.web.answers import Problem
from notifyd.web.problems import PROBLEM_CONTENT_TYPE

REF = "#/components/schemas/{model}"


def ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def header(description: str, *, required: bool = True, **schema: Any) -> dict[str, Any]:
    return {
        "description": description,
        "required": required,
        "schema": {"type": "string", **schema},
    }


RETRY_AFTER = header("Seconds to wait before trying again.", pattern="^[0-9]+$")


def json_answer(
    model: type[BaseModel], description: str, headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": ref(model)}},
    }
    if headers:
        answer["headers"] = headers
    return answer


# Every status an operation may answer with besides its success, and why. Which ones an
# operation lists depends on what it takes (a body, an id, a query) and where it lives.
_WHY = {
    400: "A malformed request: the body is not a JSON object (or not readable), the query "
    "string or the Host header cannot be read, or a header is malformed.",
    401: "API tokens are configured and no valid one was sent.",
    403: "A browser says a page of another origin asked for this change (Sec-Fetch-Site, "
    "else Origin).",
    404: "No such notification or user (or, for a suppression, none on that channel).",
    409: "The notification's status does not allow it: `detail` and `errors` name the status.",
    413: "The body is larger than http.max_body_bytes.",
    415: "The body is not JSON (Content-Type), or its Content-Encoding is not supported.",
    421: "The Host header names a host this server does not answer to (http.allowed_hosts).",
    422: "A field or query parameter breaks a rule, is unknown or is repeated; `errors` names "
    "it. Also an unknown user_id, and an Idempotency-Key reused with another body.",
    429: "Over the per-token rate limit (api.rate_limit).",
    503: "The database is unreachable right now, or the server has too many connections.",
}
_HEADERS = {
    401: {"WWW-Authenticate": header("The scheme to authenticate with: Bearer.")},
    429: {"Retry-After": RETRY_AFTER},
    503: {"Retry-After": RETRY_AFTER},
}


def error_answers(*statuses: int) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for status in statuses:
        answer: dict[str, Any] = {
            "description": _WHY[status],
            "content": {PROBLEM_CONTENT_TYPE: {"schema": ref(Problem)}},
        }
        if status in _HEADERS:
            answer["headers"] = _HEADERS[status]
        answers[str(status)] = answer
    return answers


# What every API operation may answer: a bad request, a token, the Host, the rate, the
# database; and a query string with something it does not take.
API_ERRORS = (400, 401, 421, 422, 429, 503)
# ...that change something, besides: refused when another site's page asks.
WRITE_ERRORS = (403,)
# ...with a body, besides.
BODY_ERRORS = (413, 415)
# The probes answer any Host, need no token and are not rate-limited.
PROBE_ERRORS = (400, 422, 503)


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": ref(model)}}}


def id_parameter(what: str) -> dict[str, Any]:
    return {
        "name": "id",
        "in": "path",
        "required": True,
        "description": f"The {what}'s id.",
        "schema": {"type": "integer", "minimum": 1, "maximum": BIGINT_MAX},
    }


def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF)
    return [
        {"name": name, "in": "query", "required": False, "schema": _not_null(property_schema)}
        for name, property_schema in schema["properties"].items()
    ]


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema without its `null` branch: a query string has no null."""
    branches = [b for b in schema.get("anyOf", []) if b != {"type": "null"}]
    if len(branches) == 1:
        rest = {k: v for k, v in schema.items() if k not in {"anyOf", "default"}}
        return {**rest, **branches[0]}
    return schema


def link(operation: str, description: str, **values: Any) -> dict[str, Any]:
    """An OpenAPI link: values of the answer that another operation takes."""
    found: dict[str, Any] = {"operationId": operation, "description": description}
    body = values.pop("requestBody", None)
    if values:
        found["parameters"] = values
    if body is not None:
        found["requestBody"] = body
    return found


IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Replays with the same key and body get the first answer. Printable "
    'ASCII; a quoted form ("...") is taken without its quotes, which must enclose something.',
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_IDEMPOTENCY_KEY_LENGTH,
        # No space at either end (HTTP drops it), and not "" (nothing between the quotes).
        "pattern": r'^(?!""$)[!-~](?:[ -~]*[!-~])?$',
    },
}
