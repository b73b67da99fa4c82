"""GET /api/openapi.json: served, generated from the models, and true to the answers."""

from __future__ import annotations

from typing import Any

from notifyd.web.openapi import Enqueued, NotificationOut, NotificationPage, Problem, UserOut
from notifyd.web.schemas import NotifyRequest
from tests.support import Daemon


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
        "/api/users/",
        "/api/users/{id}",
        "/api/users/{id}/notifications",
        "/healthz",
        "/readyz",
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
