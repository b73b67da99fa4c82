"""Find a secret in everything an error exposes."""

from __future__ import annotations

from typing import Any


def error_texts(error: BaseException) -> str:
    """str, repr, args and provider `response` of an error and of its whole chain."""
    texts: list[str] = []
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        texts += [str(current), repr(current), repr(current.args)]
        response: Any = getattr(current, "response", None)
        texts.append(repr(response))
        pending += [current.__cause__, current.__context__]
    return "\n".join(texts)
