"""The compiled core's finished awaitable (done.c): octo.http.done.Done in C."""

from collections.abc import Coroutine
from typing import Any

DONE: Coroutine[Any, Any, None]
