"""GET /api/openapi.json: served, generated from the models, and true to the answers."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from notifyd.web.openapi import (
    Enqueued,
    NotificationOut,
    NotificationPage,
    Problem,
    UserOut,
    openapi_document,
)
from notifyd.web.schemas import _CHAT_ID, _CURSOR, _PHONE, VISIBLE_CHARACTER_PATTERN, NotifyRequest
from tests.support import Daemon

# JSON Schema 2020-12's own keywords, and OpenAPI's: anything else in a schema is a word
# no client reads (pydantic writes "ge" and "le" when it cannot place a bound).
SCHEMA_KEYWORDS = {
    "$ref", "$defs", "type", "enum", "const", "anyOf", "allOf", "oneOf", "not", "items",
    "prefixItems", "properties", "additionalProperties", "required", "minItems", "maxItems",
    "uniqueItems", "minLength", "maxLength", "pattern", "format", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "minProperties", "maxProperties", "title",
    "description", "default", "examples",
}  # fmt: skip


async def document(daemon: Daemon) -> dict[str, Any]:
    response = await daemon.client.get("/api/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    body: dict[str, Any] = await response.json()
    return body


async def test_the_document_describes_every_route(daemon: Daemon) -> None:
    doc = await document(daemon)
    assert doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) == {
        "/api/notify/",
        "/api/notifications",
        "/api/notifications/{id}",
        "/api/notifications/{id}/cancel",
        "/api/notifications/{id}/retry",
        "/api/users/",
        "/api/users/{id}",
        "/api/users/{id}/notifications",
        "/api/users/{id}/suppressions/{channel}",
        "/api/openapi.json",
        "/healthz",
        "/readyz",
        "/metrics",
    }
    # The request schema is the validating model's own, not a copy.
    schemas = doc["components"]["schemas"]
    own = NotifyRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    shared = own.pop("$defs")
    assert schemas["NotifyRequest"] == own
    # The vocabulary it refers to (the Channel enum) is one component, shared by all.
    assert all(schemas[name] == schema for name, schema in shared.items())
    assert schemas["Channel"]["enum"] == ["email", "sms", "telegram"]
    assert schemas["NotifyRequest"]["additionalProperties"] is False
    assert schemas["NotifyRequest"]["properties"]["channels"]["uniqueItems"] is True


async def test_every_answer_matches_its_documented_model(daemon: Daemon) -> None:
    user = await daemon.client.post("/api/users/", json={"phone": "+79001234567"})
    UserOut.model_validate(await user.json())
    user_id = (await user.json())["id"]
    enqueued = await daemon.notify(user_id=user_id, message="m", channels=["sms", "email"])
    Enqueued.model_validate(enqueued)
    finished = await daemon.wait_finished(enqueued["id"])
    NotificationOut.model_validate(finished)
    assert finished["attempts"]
    page = await daemon.client.get("/api/notifications")
    NotificationPage.model_validate(await page.json())
    refused = await daemon.client.post("/api/notify/", json={"user_id": user_id})
    Problem.model_validate(await refused.json())


def _schemas(node: Any) -> Iterator[dict[str, Any]]:
    """Every schema object in the document (under components, parameters and content)."""
    if isinstance(node, dict):
        if "schema" in node and isinstance(node["schema"], dict):
            yield from _walk_schema(node["schema"])
        for key, value in node.items():
            if key == "schemas" and isinstance(value, dict):
                for schema in value.values():
                    yield from _walk_schema(schema)
            elif key != "schema":
                yield from _schemas(value)
    elif isinstance(node, list):
        for item in node:
            yield from _schemas(item)


def _walk_schema(schema: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(schema, dict):
        return
    yield schema
    for key in ("properties", "$defs"):
        for child in schema.get(key, {}).values():
            yield from _walk_schema(child)
    for key in ("anyOf", "allOf", "oneOf", "prefixItems"):
        for child in schema.get(key, []):
            yield from _walk_schema(child)
    for key in ("items", "additionalProperties", "not"):
        yield from _walk_schema(schema.get(key))


def test_every_schema_speaks_json_schema_only() -> None:
    doc = openapi_document()
    for schema in _schemas(doc):
        assert set(schema) <= SCHEMA_KEYWORDS, schema
    # Patterns are ECMAScript's: no Python-only syntax, and no \s, which means other
    # characters there than in the validators.
    for schema in _schemas(doc):
        if "pattern" in schema:
            assert "\\s" not in schema["pattern"], schema
            assert "(?P" not in schema["pattern"], schema


def test_the_patterns_are_the_validators_own() -> None:
    schemas = openapi_document()["components"]["schemas"]
    user = schemas["UserCreate"]["properties"]

    def string_branch(prop: dict[str, Any]) -> dict[str, Any]:
        return next(b for b in prop["anyOf"] if b.get("type") == "string")

    # An address is parsed (email-validator), not matched: the document says what it is.
    assert string_branch(user["email"])["format"] == "email"
    assert string_branch(user["phone"])["pattern"] == _PHONE.pattern
    assert string_branch(user["telegram_chat_id"])["pattern"] == _CHAT_ID.pattern
    assert schemas["UserUpdate"]["minProperties"] == 1
    listing = openapi_document()["paths"]["/api/notifications"]["get"]["parameters"]
    cursor = next(p for p in listing if p["name"] == "cursor")
    assert cursor["schema"] == {"type": "string", "pattern": _CURSOR.pattern, "title": "Cursor"}
    # A message needs one visible character: the document's class is the validator's.
    message = schemas["NotifyRequest"]["properties"]["message"]
    assert message["pattern"] == VISIBLE_CHARACTER_PATTERN


def test_query_parameters_have_no_null() -> None:
    for path in openapi_document()["paths"].values():
        for operation in path.values():
            for parameter in operation.get("parameters", []):
                assert "null" not in json.dumps(parameter["schema"]), parameter


@pytest.mark.parametrize(
    ("path", "method", "statuses"),
    [
        (
            "/api/notify/",
            "post",
            {"200", "400", "401", "403", "413", "415", "421", "422", "429", "503"},
        ),
        ("/api/notifications", "get", {"200", "400", "401", "421", "422", "429", "503"}),
        (
            "/api/notifications/{id}",
            "get",
            {"200", "400", "401", "404", "421", "422", "429", "503"},
        ),
        (
            "/api/users/",
            "post",
            {"201", "400", "401", "403", "413", "415", "421", "422", "429", "503"},
        ),
        (
            "/api/users/{id}",
            "patch",
            {"200", "400", "401", "403", "404", "413", "415", "421", "422", "429", "503"},
        ),
        (
            "/api/users/{id}/suppressions/{channel}",
            "delete",
            {"204", "400", "401", "403", "404", "421", "422", "429", "503"},
        ),
        ("/healthz", "get", {"200", "400", "422", "503"}),
        ("/readyz", "get", {"200", "400", "422", "503"}),
        ("/metrics", "get", {"200", "400", "422", "503"}),
    ],
)
def test_every_status_an_operation_gives_is_listed(
    path: str, method: str, statuses: set[str]
) -> None:
    responses = openapi_document()["paths"][path][method]["responses"]
    assert set(responses) == statuses
    for status in ("429", "503"):
        if status in responses and path != "/readyz":
            assert responses[status]["headers"]["Retry-After"]["required"] is True


async def test_the_documented_statuses_are_the_ones_given(daemon: Daemon) -> None:
    # One of each refusal, answered as documented (problem+json).
    doc = await document(daemon)
    cases = [
        ("GET", "/api/notifications?colour=red", {}, 422),
        ("GET", "/api/notifications?status=%ff", {}, 400),
        ("GET", "/api/users/1", {"Host": "evil.example"}, 421),
        ("POST", "/api/users/", {"Content-Type": "text/plain"}, 415),
        ("POST", "/api/notifications/1/cancel", {"Sec-Fetch-Site": "cross-site"}, 403),
        ("GET", "/healthz?verbose=1", {}, 422),
    ]
    for method, path, headers, status in cases:
        response = await daemon.client.request(method, path, headers=headers)
        assert response.status == status, path
        template = re.sub(r"/\d+", "/{id}", path.split("?")[0])
        assert str(status) in doc["paths"][template][method.lower()]["responses"], path
        assert response.content_type == "application/problem+json"
