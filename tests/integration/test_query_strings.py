"""Query strings: every value is an answer or a 4xx that names the parameter, never a 500.

`created_after=0001-01-01T00:00:00+14:00` is valid ISO 8601 and an instant before the
first one Python holds in UTC, which is how the filter reaches the database
(`9999-12-31T23:59:59-14:00` is past the last): the API and the dashboard answered 500.
Such a bound is a date the OpenAPI document allows, so it filters as the nearest instant
Python holds would: everything, or nothing. Generated query strings then try every
parameter of the list routes with any value.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from notifyd.web.schemas import NotificationQuery
from tests.support import Daemon

UNREPRESENTABLE = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]
# The ends of what a filter may be (any instant Python holds in UTC).
EXTREMES = [
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00-14:00",
    "9999-12-31T23:59:59.999999Z",
    "9999-12-31T00:00:00+14:00",
]
DATES = ("created_after", "created_before")


async def api_problem(daemon: Daemon, path: str, params: dict[str, str]) -> dict[str, Any]:
    response = await daemon.client.get(path, params=params)
    body: dict[str, Any] = await response.json()
    assert response.status == 422, body
    assert response.content_type == "application/problem+json"
    return body


@pytest.mark.parametrize("value", [*EXTREMES, *UNREPRESENTABLE])
@pytest.mark.parametrize("name", DATES)
async def test_any_instant_is_a_filter(daemon: Daemon, name: str, value: str) -> None:
    await daemon.app_ready()
    user_id = await daemon.create_user(phone="+15551234567")
    await daemon.notify(user_id=user_id, message="m", channels=["sms"])
    for path in ("/api/notifications", f"/api/users/{user_id}/notifications", "/admin/"):
        response = await daemon.client.get(path, params={name: value})
        assert response.status == 200, await response.text()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("user_id", "9223372036854775808"),
        ("user_id", "0"),
        ("user_id", "1e3"),
        ("user_id", "１"),
        ("limit", "0"),
        ("limit", "201"),
        ("limit", "99999999999999999999999"),
        ("limit", "NaN"),
        ("limit", "5.0"),
        ("limit", "+5"),
        ("limit", "5_0"),
        ("limit", " 5"),
        ("user_id", "+7"),
        ("cursor", "x"),
        ("channel", "fax"),
        ("created_after", "2026-01-01"),
        ("created_after", "1767225600"),
        ("created_after", "2026-13-01T00:00:00Z"),
        ("created_after", "10000-01-01T00:00:00Z"),
        ("created_before", "2026-01-01T24:00:01Z"),
    ],
)
async def test_every_number_and_name_out_of_its_range_is_a_422(
    daemon: Daemon, name: str, value: str
) -> None:
    problem = await api_problem(daemon, "/api/notifications", {name: value})
    assert [error["field"] for error in problem["errors"]] == [name]


NAMES = (*NotificationQuery.model_fields, "other")
VALUES = (
    st.text(max_size=40)
    | st.sampled_from([*UNREPRESENTABLE, *EXTREMES, "pending", "sms", "1", "-1", "200"])
    | st.integers(min_value=-(2**70), max_value=2**70).map(str)
    | st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat())
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(params=st.dictionaries(st.sampled_from(NAMES), VALUES, max_size=4))
async def test_generated_query_strings_get_an_answer_or_a_4xx(
    daemon: Daemon, params: dict[str, str]
) -> None:
    query = urlencode(params)
    api = await daemon.client.get(f"/api/notifications?{query}")
    event(f"api {api.status}")
    # 400: a control character in a value, refused before the parameters are read.
    assert api.status in {200, 400, 422}, params
    if api.status == 422:
        fields = {error["field"] for error in (await api.json())["errors"]}
        assert fields <= set(params), (params, fields)
    # The dashboard ignores parameters it does not know, and answers a bad value with the
    # form and its errors.
    admin = await daemon.client.get(f"/admin/?{query}")
    event(f"admin {admin.status}")
    assert admin.status in {200, 400}, params
