"""Serving a WSGI app (``--interface wsgi``, or detected): an ASGI app that runs it in a
small pool of threads, one hop per request.

Why octo serves WSGI at all: a Django project's ``wsgi.py`` answers a request for a
fraction of the work of its ``asgi.py``. Measured in one process under callgrind (Django
5.2, a sync JSON view, CommonMiddleware): 2.80M instructions per request through
``ASGIHandler`` (asgiref's thread hops for the request_started signal, the middleware
chain and ``response.close``), 0.49M through ``WSGIHandler``. Served here, the WSGI path
costs the HTTP server's work plus one thread hop.

What the app sees follows PEP 3333: the environ's strings are bytes decoded as latin-1,
``PATH_INFO`` is the percent-decoded raw path (a framework re-decodes it, as Django does),
``SCRIPT_NAME`` the root path; the request body is read whole first (within
--limit-request-body, as Django's ASGI handler does too) and handed over as a file.
Header names with an underscore are dropped, as gunicorn and nginx do: ``X_Forwarded_For``
and ``X-Forwarded-For`` would both become ``HTTP_X_FORWARDED_FOR``, and a client could
forge the one a proxy sets. A response's iterable is pulled in the app's thread, one chunk
per hop (a Django ``HttpResponse`` or a list: all at once), and always closed there.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import io
import queue
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any
from urllib.parse import unquote_to_bytes

from octo.logs import error_log
from octo.types import Receive, Scope, Send

Environ = dict[str, Any]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

SPOOL_LIMIT = 1024 * 1024  # request bodies above this go to a temporary file
FILE_BLOCK = 256 * 1024  # wsgi.file_wrapper's reads: few hops for a large file


class WSGIError(RuntimeError):
    """The WSGI app broke PEP 3333 (no start_response, or a second one without exc_info)."""


def looks_like_wsgi(app: Any) -> bool:
    """Whether *app* is a WSGI callable: not a coroutine function, not a class (ASGI 2),
    and called with exactly two positional arguments (``environ, start_response``). ASGI
    apps take three (or one, ASGI 2), so the two cannot be confused."""
    if isinstance(app, type) or not callable(app):
        return False
    call = app if inspect.isfunction(app) or inspect.ismethod(app) else app.__call__
    if inspect.iscoroutinefunction(call):
        return False
    try:
        params = list(inspect.signature(call).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    return len(required) == 2 or (len(required) < 2 <= len(positional))


class ErrorStream:
    """``wsgi.errors``: what the app writes there goes to octo's error log."""

    def write(self, text: str) -> int:
        if text.strip():
            error_log.error("%s", text.rstrip("\n"))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass


class FileWrapper:
    """``wsgi.file_wrapper``: a file read in large blocks (Django's FileResponse streams
    through it), closed with the response."""

    def __init__(self, filelike: IO[bytes], block_size: int = 8192) -> None:
        self.filelike = filelike
        self.block_size = max(block_size, FILE_BLOCK)

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while chunk := read(self.block_size):
            yield chunk

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


ERRORS = ErrorStream()


def build_environ(scope: Scope, body: IO[bytes], multithread: bool) -> Environ:
    """The PEP 3333 environ for an ASGI HTTP *scope* whose body is *body*."""
    server = scope.get("server") or ("localhost", 80)
    environ: Environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": scope.get("root_path", "").encode("utf-8").decode("latin-1"),
        "PATH_INFO": unquote_to_bytes(scope.get("raw_path") or
                                      scope["path"].encode("utf-8")).decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]) if server[1] is not None else "",
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": body,
        "wsgi.errors": ERRORS,
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
    }
    client = scope.get("client")
    if client:
        environ["REMOTE_ADDR"] = str(client[0])
        environ["REMOTE_PORT"] = str(client[1])
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1")
        if "_" in name:
            continue  # see the module docstring
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        value = raw_value.decode("latin-1")
        if key in environ:
            value = environ[key] + ("; " if key == "HTTP_COOKIE" else ",") + value
        environ[key] = value
    return environ


class Call:
    """One request's run of the WSGI app, driven from its thread: start the app, then pull
    its iterable a chunk (or, for a known single-part response, everything) at a time."""

    def __init__(self, app: WSGIApp, environ: Environ) -> None:
        self.app = app
        self.environ = environ
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.started = False  # start_response was called
        self.head_sent = False  # the loop sent the head: exc_info must now re-raise
        self.written: list[bytes] = []  # write() calls (the legacy imperative API)
        self.iterable: Iterable[bytes] | None = None
        self.iterator: Iterator[bytes] | None = None

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], object]:
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.started:
            raise WSGIError("start_response called a second time without exc_info")
        self.status = int(status.split(" ", 1)[0])
        self.headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
        self.started = True
        return self.written.append

    def begin(self) -> tuple[bytes, bool]:
        """Call the app; the first body bytes, and whether more may follow."""
        iterable = self.iterable = self.app(self.environ, self.start_response)
        if isinstance(iterable, (list, tuple)) or getattr(iterable, "streaming", None) is False:
            # A list, or Django's HttpResponse (its content in memory): one hop for all.
            body = b"".join((*self.written, *iterable))
            self.written.clear()
            self.close()
            return body, False
        self.iterator = iter(iterable)
        return self.pull()

    def pull(self) -> tuple[bytes, bool]:
        """The next chunk (with whatever write() produced), and whether more may follow."""
        assert self.iterator is not None
        for chunk in self.iterator:
            if chunk or self.written:
                body = b"".join((*self.written, chunk))
                self.written.clear()
                return body, True
        body = b"".join(self.written)
        self.written.clear()
        self.close()
        return body, False

    def close(self) -> None:
        iterable, self.iterable = self.iterable, None
        close = getattr(iterable, "close", None)
        if close is not None:
            close()


Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", contextvars.Context,
            Callable[[], Any]]


class Pool:
    """*size* daemon threads running calls for the event loop: a queue in, a
    ``call_soon_threadsafe`` out. Leaner than ``run_in_executor`` (no concurrent.futures
    Future, work item or chained asyncio Future: in memory, the hop was most of the
    server's own cost per WSGI request). Daemon threads: a view still stuck when the worker
    exits (after its --graceful-timeout drain) does not keep the process alive."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []

    def run(self, func: Callable[[], Any]) -> asyncio.Future[Any]:
        """*func()* in a thread of the pool, in a copy of the caller's context (octo's
        runtime scope or a request id travel with it)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self.threads:
            self._start()
        self.jobs.put((loop, future, contextvars.copy_context(), func))
        return future

    def _start(self) -> None:
        for n in range(self.size):
            thread = threading.Thread(target=self._work, name=f"octo-wsgi-{n}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def _work(self) -> None:
        while (job := self.jobs.get()) is not None:
            loop, future, context, func = job
            try:
                result = context.run(func)
            except BaseException as exc:  # handed to the request's task, raised there
                _hand_back(loop, _set_exception, future, exc)
            else:
                _hand_back(loop, _set_result, future, result)
            del job, future, func  # nothing of a request outlives it in an idle thread

    def close(self) -> None:
        for _ in self.threads:
            self.jobs.put(None)
        self.threads.clear()


def _hand_back(loop: asyncio.AbstractEventLoop, setter: Callable[..., None],
               future: asyncio.Future[Any], value: Any) -> None:
    try:
        loop.call_soon_threadsafe(setter, future, value)
    except RuntimeError:
        pass  # the loop closed meanwhile (the worker is exiting): nobody waits


def _set_result(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class WSGIAdapter:
    """An ASGI app serving the WSGI app *app* in *threads* threads (``--threads``)."""

    def __init__(self, app: WSGIApp, threads: int = 1) -> None:
        self.app = app
        self.threads = threads
        self.pool = Pool(threads)  # its threads start with the first request (in the worker)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "lifespan":
            await _lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1000})

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)
        if body is None:
            return  # the client left before its body arrived: nobody to answer
        call = Call(self.app, build_environ(scope, body, self.threads > 1))
        step = self.pool.run(call.begin)
        try:
            chunk, more = await step
            if not call.started:
                raise WSGIError("the WSGI app returned without calling start_response")
            await send({"type": "http.response.start", "status": call.status,
                        "headers": call.headers})
            call.head_sent = True
            await send({"type": "http.response.body", "body": chunk, "more_body": more})
            while more:
                step = self.pool.run(call.pull)
                chunk, more = await step
                await send({"type": "http.response.body", "body": chunk, "more_body": more})
        finally:
            # Ended early (the client left, an error, a cancellation): PEP 3333 wants the
            # iterable closed, in the app's thread, once its running step is over.
            step.add_done_callback(lambda _: self._close(call))

    def _close(self, call: Call) -> None:
        if call.iterable is not None:
            self.pool.run(call.close).add_done_callback(_log_close_error)


def _log_close_error(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        error_log.error("the WSGI response's close() failed", exc_info=future.exception())


async def _read_body(receive: Receive) -> IO[bytes] | None:
    parts: list[bytes] = []
    size = 0
    spool: IO[bytes] | None = None
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if spool is not None:
                spool.close()
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if spool is None and size > SPOOL_LIMIT:
            spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_LIMIT)  # noqa: SIM115
            spool.writelines(parts)
            parts.clear()
        if spool is not None:
            spool.write(chunk)
        elif chunk:
            parts.append(chunk)
        if not message.get("more_body", False):
            break
    if spool is None:
        return io.BytesIO(b"".join(parts))
    spool.seek(0)
    return spool


async def _lifespan(receive: Receive, send: Send) -> None:
    """WSGI has no lifespan: startup and shutdown complete at once."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


__all__ = ["WSGIAdapter", "WSGIError", "build_environ", "looks_like_wsgi"]
