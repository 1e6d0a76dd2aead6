"""Reads its setting from the environment at import time, as settings modules do: served
with --env-file, it must see the file's value."""

from __future__ import annotations

import os
from typing import Any

GREETING = os.environ.get("OCTO_TEST_GREETING", "unset")


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": GREETING.encode()})
