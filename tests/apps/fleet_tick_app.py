"""A one_server tick: with two servers sharing Redis, it runs on one host per interval."""

from __future__ import annotations

import os

import octo

rt = octo.Octo()
LOG = os.environ.get("OCTO_TEST_TICK_FILE", "/dev/null")


@rt.tick("fleet", every=0.2, one_server=True)
def fleet() -> None:
    with open(LOG, "a") as fh:
        fh.write(f"{os.getpid()}\n")


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


asgi = rt.wrap(app)
