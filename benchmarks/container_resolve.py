"""Cost of ``Container.resolve`` for a singleton, a scoped object and a 3-deep graph.

    .venv/bin/python benchmarks/container_resolve.py

Prints microseconds per resolve (best of 5 repeats). Scoped and graph figures include
building the objects, since a new operation starts empty.
"""

from __future__ import annotations

import asyncio
import time

from octo.runtime.container import Container
from octo.runtime.sandbox import Operation, enter, leave


class Config:
    pass


class Pool:
    def __init__(self, config: Config) -> None:
        self.config = config


class Repo:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool


class Service:
    def __init__(self, repo: Repo, config: Config) -> None:
        self.repo = repo
        self.config = config


async def per_call(label: str, make: object, n: int = 20000) -> None:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            await make()  # type: ignore[operator]
        best = min(best, (time.perf_counter() - start) / n)
    print(f"{label:38} {best * 1e6:7.2f} us")


async def main() -> None:
    c = Container()
    c.singleton(Config)
    c.singleton(Pool)
    c.scoped(Repo)
    c.scoped(Service)
    await c.resolve(Pool)

    async def singleton() -> None:
        await c.resolve(Pool)

    async def scoped_fresh() -> None:
        token = enter(Operation("request"))
        await c.resolve(Repo)
        leave(token)

    async def scoped_cached() -> None:
        await c.resolve(Repo)

    async def graph_fresh() -> None:
        token = enter(Operation("request"))
        await c.resolve(Service)  # Service -> Repo -> Pool(singleton) -> Config
        leave(token)

    await per_call("singleton (cached)", singleton)
    token = enter(Operation("request"))
    await per_call("scoped, already built in operation", scoped_cached)
    leave(token)
    await per_call("scoped, new operation (build)", scoped_fresh)
    await per_call("3-deep graph, new operation (build)", graph_fresh)


if __name__ == "__main__":
    asyncio.run(main())
