"""The warm dependency container: singletons per worker, scoped per operation, transients.

Factories are plain or async callables, classes, or (async) generator functions whose code
after ``yield`` is the disposal. Parameters annotated with a bound type are injected.
Objects with ``aclose()``/``close()`` are disposed too: scoped ones when their operation
ends, singletons when the worker stops. A singleton whose factory needs a scoped dependency
is refused at resolve time: that is how request data leaks into every later request.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from octo.runtime.sandbox import Operation, current_operation

T = TypeVar("T")
MISSING: Any = object()


class Lifetime(enum.Enum):
    SINGLETON = "singleton"
    SCOPED = "scoped"
    TRANSIENT = "transient"
    INSTANCE = "instance"


class ContainerError(LookupError):
    """A dependency that cannot be resolved; the message names it."""


class ScopeError(ContainerError):
    """A longer-lived object depends on a shorter-lived one."""


class Binding:
    __slots__ = ("key", "lifetime", "factory", "params", "kind")

    def __init__(self, key: Any, lifetime: Lifetime, factory: Callable[..., Any] | None) -> None:
        self.key = key
        self.lifetime = lifetime
        self.factory = factory
        self.params: list[tuple[str, Any]] | None = None  # filled on first use
        self.kind = _factory_kind(factory) if factory is not None else "value"


def _factory_kind(factory: Callable[..., Any]) -> str:
    if inspect.isasyncgenfunction(factory):
        return "asyncgen"
    if inspect.isgeneratorfunction(factory):
        return "gen"
    if inspect.iscoroutinefunction(factory):
        return "async"
    return "sync"


def name_of(key: Any) -> str:
    return getattr(key, "__name__", None) or repr(key)


class Container:
    """Bindings plus the worker's singleton cache."""

    def __init__(self) -> None:
        self.bindings: dict[Any, Binding] = {}
        self.singletons: dict[Any, Any] = {}
        self.building: dict[Any, asyncio.Future[Any]] = {}
        self.finalizers: list[Callable[[], Any]] = []  # singleton disposal, creation order
        self.warm_keys: list[Any] = []
        self.flush_keys: set[Any] = set()

    # -- declarations ------------------------------------------------------------------

    def singleton(self, key: type[T], factory: Callable[..., Any] | None = None) -> None:
        self._bind(key, Lifetime.SINGLETON, factory or key)

    def scoped(self, key: type[T], factory: Callable[..., Any] | None = None) -> None:
        self._bind(key, Lifetime.SCOPED, factory or key)

    def transient(self, key: type[T], factory: Callable[..., Any] | None = None) -> None:
        self._bind(key, Lifetime.TRANSIENT, factory or key)

    def instance(self, key: type[T], value: T) -> None:
        self._bind(key, Lifetime.INSTANCE, None)
        self.singletons[key] = value

    def warm(self, *keys: Any) -> None:
        """Resolve these singletons when the worker boots, before it accepts connections."""
        self.warm_keys.extend(keys)

    def flush(self, *keys: Any) -> None:
        """Forget these singletons after every operation (Octane's ``flush`` list)."""
        self.flush_keys.update(keys)

    def _bind(self, key: Any, lifetime: Lifetime, factory: Callable[..., Any] | None) -> None:
        self.bindings[key] = Binding(key, lifetime, factory)
        if lifetime is not Lifetime.INSTANCE:
            self.singletons.pop(key, None)  # a re-binding replaces any built instance

    def has(self, key: Any) -> bool:
        return key in self.bindings

    def lifetime(self, key: Any) -> Lifetime:
        return self._binding(key).lifetime

    # -- resolution --------------------------------------------------------------------

    async def resolve(self, key: type[T]) -> T:
        """The instance for *key* in the current operation (or worker, for singletons)."""
        value: T = await self._resolve(key, ())
        return value

    def built(self, key: Any, op: Operation | None) -> Any:
        """The instance *key* already has (a built singleton, or *op*'s scoped one), else
        MISSING. Plain dict reads: safe from any thread, so sync code skips the trip to the
        event loop when there is nothing to build."""
        lifetime = self._binding(key).lifetime
        if lifetime is Lifetime.SINGLETON or lifetime is Lifetime.INSTANCE:
            return self.singletons.get(key, MISSING)
        if lifetime is Lifetime.SCOPED and op is not None:
            return op.instances.get(key, MISSING)
        return MISSING

    async def _resolve(self, key: Any, chain: tuple[Binding, ...]) -> Any:
        binding = self._binding(key)
        lifetime = binding.lifetime
        if lifetime is Lifetime.INSTANCE:
            return self.singletons[key]
        if lifetime is Lifetime.SINGLETON:
            return await self._singleton(binding, chain)
        for outer in chain:
            if outer.lifetime is Lifetime.SINGLETON:
                raise ScopeError(f"singleton {name_of(outer.key)} depends on {lifetime.value} "
                                 f"{name_of(key)}: it would keep the first operation's "
                                 f"{name_of(key)} for every later one")
        if lifetime is Lifetime.TRANSIENT:
            return await self._build(binding, chain, None)
        op = current_operation()
        if op is None:
            raise ScopeError(f"scoped {name_of(key)} resolved outside a request, tick or task")
        if key in op.instances:
            return op.instances[key]
        value = await self._build(binding, chain, op)
        op.instances[key] = value
        return value

    async def _singleton(self, binding: Binding, chain: tuple[Binding, ...]) -> Any:
        key = binding.key
        if key in self.singletons:
            return self.singletons[key]
        pending = self.building.get(key)
        if pending is not None:  # another coroutine is building it: share the result
            return await asyncio.shield(pending)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.building[key] = future
        try:
            value = await self._build(binding, chain, None)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            self.building.pop(key, None)
        self.singletons[key] = value
        future.set_result(value)
        return value

    async def _build(self, binding: Binding, chain: tuple[Binding, ...],
                     op: Operation | None) -> Any:
        if binding in chain:
            cycle = " -> ".join(name_of(b.key) for b in (*chain, binding))
            raise ContainerError(f"dependency cycle: {cycle}")
        factory = binding.factory
        assert factory is not None
        inner = (*chain, binding)
        kwargs = {name: await self._resolve(dep, inner) for name, dep in self._params(binding)}
        finalizers = op.finalizers if op is not None else (
            self.finalizers if binding.lifetime is Lifetime.SINGLETON else None)
        kind = binding.kind
        if kind == "async":
            value = await factory(**kwargs)
        elif kind == "gen":
            gen = factory(**kwargs)
            value = next(gen)
            if finalizers is not None:
                finalizers.append(lambda: _finish_gen(gen))
            return value
        elif kind == "asyncgen":
            agen = factory(**kwargs)
            value = await agen.__anext__()
            if finalizers is not None:
                finalizers.append(lambda: _finish_agen(agen))
            return value
        else:
            value = factory(**kwargs)
            if inspect.isawaitable(value):
                value = await value
        if finalizers is not None:
            closer = _closer(value)
            if closer is not None:
                finalizers.append(closer)
        return value

    def _params(self, binding: Binding) -> list[tuple[str, Any]]:
        if binding.params is None:
            binding.params = self._inspect(binding)
        return binding.params

    def _inspect(self, binding: Binding) -> list[tuple[str, Any]]:
        factory = binding.factory
        assert factory is not None
        return self.params_of(factory, f"cannot build {name_of(binding.key)}")

    def params_of(self, fn: Callable[..., Any], what: str) -> list[tuple[str, Any]]:
        """(parameter, bound type) pairs to inject into *fn*; a required parameter that is
        not a bound type is a ContainerError starting with *what*."""
        target = fn.__init__ if inspect.isclass(fn) else fn
        try:
            hints = typing.get_type_hints(target)
        except Exception:
            hints = {}
        params = []
        for name, param in inspect.signature(fn).parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            hint = hints.get(name, param.annotation)
            if hint is not inspect.Parameter.empty and hint in self.bindings:
                params.append((name, hint))
            elif param.default is inspect.Parameter.empty:
                raise ContainerError(
                    f"{what}: parameter {name!r} "
                    f"({name_of(hint) if hint is not param.empty else 'no annotation'}) "
                    "is not bound in the container")
        return params

    def _binding(self, key: Any) -> Binding:
        try:
            return self.bindings[key]
        except KeyError:
            raise ContainerError(f"{name_of(key)} is not bound in the container") from None

    # -- lifecycle -------------------------------------------------------------------------

    async def boot(self) -> None:
        for key in self.warm_keys:
            if self.lifetime(key) is not Lifetime.SINGLETON:
                raise ScopeError(f"warm() takes singletons; {name_of(key)} is "
                                 f"{self.lifetime(key).value}")
            await self.resolve(key)

    def apply_flush(self) -> None:
        for key in self.flush_keys:
            self.singletons.pop(key, None)

    async def shutdown(self) -> None:
        finalizers, self.finalizers = self.finalizers, []
        await run_finalizers(finalizers)
        self.singletons = {k: v for k, v in self.singletons.items()
                           if self.bindings[k].lifetime is Lifetime.INSTANCE}


def _closer(value: Any) -> Callable[[], Any] | None:
    aclose = getattr(value, "aclose", None)
    if callable(aclose):
        return aclose  # type: ignore[no-any-return]
    close = getattr(value, "close", None)
    if callable(close) and not inspect.isclass(value):
        return close  # type: ignore[no-any-return]
    return None


def _finish_gen(gen: Any) -> None:
    try:
        next(gen)
    except StopIteration:
        return
    raise ContainerError(f"generator factory {gen!r} yielded more than once")


async def _finish_agen(agen: Any) -> None:
    try:
        await agen.__anext__()
    except StopAsyncIteration:
        return
    raise ContainerError(f"async generator factory {agen!r} yielded more than once")


async def run_finalizers(finalizers: list[Callable[[], Any]]) -> None:
    """Dispose in reverse creation order; one failing disposal does not stop the rest."""
    from octo.logs import error_log

    for finalize in reversed(finalizers):
        try:
            result = finalize()
            if inspect.isawaitable(result):
                await result
        except Exception:
            error_log.exception("disposing a container object failed")
