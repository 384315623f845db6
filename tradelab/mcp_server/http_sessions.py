"""Streamable-HTTP sessions: what a client is told when its session is gone.

The SDK's session manager (``mcp`` 2.3+) owns the sessions: it closes and frees one after
``session_idle_timeout`` seconds without a request in flight, refuses a new one with 503 while
``max_sessions`` are open, and answers a request for an ended or expired session with 404
``"Session not found"`` — which says neither why nor what to do. :class:`SessionGoneMessage`
wraps the app and rewrites that one answer into one line that does, keeping the status (404),
the JSON-RPC error shape and its code, so clients that re-initialize on 404 behave the same.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["SessionGoneMessage", "session_gone_text"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SESSION_HEADER = b"mcp-session-id"


def session_gone_text(idle_timeout: float) -> str:
    """The one-line reason given for an unknown, ended or expired session id."""
    minutes = idle_timeout / 60
    after = f"{minutes:g} min" if minutes >= 1 else f"{idle_timeout:g} s"
    return (
        f"Session not found: it was closed, or expired after {after} without a request; "
        "send initialize again without an mcp-session-id header to start a new session"
    )


class SessionGoneMessage:
    """ASGI middleware: a 404 answered to a request that carried an ``mcp-session-id`` gets
    :func:`session_gone_text` as its JSON-RPC error message; everything else passes through."""

    def __init__(self, app: ASGIApp, idle_timeout: float) -> None:
        self.app = app
        self.text = session_gone_text(idle_timeout)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, rewriting only a 404 for a request with a session id."""
        if scope.get("type") != "http" or not any(
            k.lower() == SESSION_HEADER for k, _ in scope.get("headers", ())
        ):
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        original = bytearray()

        async def rewrite(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start" and message.get("status") == 404:
                held = message
                return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            original.extend(message.get("body", b""))
            if message.get("more_body"):
                return
            body = self._body(bytes(original))
            headers = [(k, v) for k, v in held.get("headers", ()) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**held, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, rewrite)

    def _body(self, original: bytes) -> bytes:
        try:
            doc = json.loads(original)
            error = doc["error"]
        except (ValueError, KeyError, TypeError):
            doc = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600}}
            error = doc["error"]
        if not isinstance(error, dict):
            return original
        error["message"] = self.text
        return json.dumps(doc).encode()
