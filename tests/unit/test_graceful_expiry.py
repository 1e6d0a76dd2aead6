"""In-memory tests for the end of a stop's grace (issue 14, item 12): a request that has not
started its response when --graceful-timeout runs out gets a 503 with ``Connection: close``
and a log line, not a bare close; one whose response started is cut."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from harness import Client, parse_responses

# The in-memory tests run on both HTTP cores (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("http_core")

WHY = "--graceful-timeout 1.0s ran out"
HELD = b"GET /held?x HTTP/1.1\r\nHost: a\r\n\r\n"


class Holder:
    """An app that never answers /held on its own; it streams part of a response first on
    /streaming; anything else it answers at once."""

    def __init__(self) -> None:
        self.ended: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            if scope["path"] == "/streaming":
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": b"part", "more_body": True})
            if scope["path"] in ("/held", "/streaming"):
                await asyncio.Event().wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"answered"})
        except asyncio.CancelledError:
            self.ended.append("cancelled")
            raise


async def cancel_apps(client: Client) -> None:
    """What the worker does after expire(): cancel the apps still running."""
    for task in list(client.state.tasks):
        task.cancel()
    await client.settle()


def test_an_unanswered_request_gets_503_and_connection_close(run, caplog) -> None:
    app = Holder()

    async def main() -> None:
        client = Client(app)
        client.send(HELD)
        await client.settle(5, 0)
        with caplog.at_level(logging.WARNING, logger="octo.error"):
            client.protocol.expire(WHY)
        await client.settle(5, 0)
        [reply] = parse_responses(client.take())
        assert reply.status == 503
        assert reply.header(b"connection") == b"close"
        assert client.closed
        assert f"GET /held from 127.0.0.1:50000 not answered when {WHY}" in caplog.text
        await cancel_apps(client)
        assert app.ended == ["cancelled"]
        assert not client.state.tasks

    run(main())


def test_pipelined_requests_behind_it_are_dropped_with_the_close(run) -> None:
    async def main() -> None:
        client = Client(Holder())
        client.send(HELD + b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
        await client.settle(5, 0)
        client.protocol.expire(WHY)
        await client.settle(5, 0)
        assert [r.status for r in parse_responses(client.take())] == [503]
        assert client.closed
        assert not client.protocol.queue
        await cancel_apps(client)

    run(main())


def test_a_request_still_sending_its_body_gets_503(run) -> None:
    async def main() -> None:
        client = Client(Holder())
        client.send(b"POST /held HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc")
        await client.settle(5, 0)
        client.protocol.expire(WHY)
        await client.settle(5, 0)
        assert [r.status for r in parse_responses(client.take())] == [503]
        assert client.closed
        await cancel_apps(client)

    run(main())


def test_a_started_response_is_cut_without_a_second_answer(run, caplog) -> None:
    app = Holder()

    async def main() -> None:
        client = Client(app)
        client.send(b"GET /streaming HTTP/1.1\r\nHost: a\r\n\r\n")
        await client.settle(5, 0)
        client.take()
        with caplog.at_level(logging.WARNING, logger="octo.error"):
            client.protocol.expire(WHY)
        await client.settle()
        assert b"503" not in client.take()
        assert client.closed
        assert "not answered" not in caplog.text
        await cancel_apps(client)
        assert app.ended == ["cancelled"]

    run(main())


def test_idle_and_closed_connections_are_closed_quietly(run, caplog) -> None:
    async def main() -> None:
        idle = Client(Holder())
        idle.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        await idle.settle()
        assert [r.status for r in parse_responses(idle.take())] == [200]
        half = Client(Holder())
        half.send(b"GET / HTTP/1.1\r\nHo")  # a head still arriving: nothing to answer
        with caplog.at_level(logging.WARNING, logger="octo.error"):
            for client in (idle, half):
                client.protocol.expire(WHY)
                client.protocol.expire(WHY)  # idempotent
        await idle.settle()
        assert idle.closed and half.closed
        assert idle.take() == b"" and half.take() == b""
        assert "not answered" not in caplog.text

    run(main())
