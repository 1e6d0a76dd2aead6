"""Which HTTP/1.1 core serves: the compiled one (``octo._ccore``) or the pure-Python one.

Both are built from the same sources, the core modules of ``octo/http``: ``setup.py``
compiles them with mypyc into ``octo._ccore`` when a C compiler is there. The pure-Python
modules are the reference; the compiled ones must behave the same (the test suite runs
both). ``OCTO_CORE`` chooses: ``auto`` (default: compiled when it is built and current),
``compiled`` (fail if it is not) or ``python``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

# Also in setup.py. They import each other relatively, so the compiled copies do too.
CORE_MODULES = ("protocol", "cycle", "chunks", "flow", "validate", "counters", "head",
                "request_id", "quickhead", "taskreg", "done")
# C sources of the compiled core (also in setup.py), built as octo._ccore._<name>: the
# simple-head scanner (quickhead's ``parse`` in C) and the finished awaitable (done.Done in
# C). Part of the digest, like the modules.
C_SOURCES = {"_headscan": "headscan.c", "_done": "done.c"}
COMPILED_PACKAGE = "octo._ccore"
PURE_PACKAGE = "octo.http"
CHOICES = ("auto", "compiled", "python")


@dataclass(frozen=True)
class Core:
    """The chosen core: its protocol module, and why it was chosen."""

    name: str  # "compiled" or "python"
    protocol: ModuleType  # HttpProtocol, ServerState
    reason: str  # why the pure-Python core runs (empty for the compiled one)

    def module(self, name: str) -> ModuleType:
        """One of this core's modules (*name* in CORE_MODULES)."""
        package = self.protocol.__name__.rpartition(".")[0]
        return importlib.import_module(f"{package}.{name}")

    def describe(self) -> str:
        if self.name == "compiled":
            return "compiled HTTP core (mypyc)"
        return f"pure-Python HTTP core ({self.reason})"


def source_digest() -> str | None:
    """The digest setup.py records, of the pure sources present (None if absent)."""
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    try:
        for name in CORE_MODULES:
            digest.update((here / f"{name}.py").read_bytes())
        for source in C_SOURCES.values():
            digest.update((here / source).read_bytes())
    except OSError:
        return None
    return digest.hexdigest()


@functools.cache
def _compiled() -> tuple[ModuleType | None, str]:
    """The compiled protocol module, or None and why not (looked at once per process)."""
    try:
        modules = [importlib.import_module(f"{COMPILED_PACKAGE}.{name}")
                   for name in CORE_MODULES]
        for extension in C_SOURCES:
            importlib.import_module(f"{COMPILED_PACKAGE}.{extension}")
    except ImportError as exc:
        return None, f"the compiled core is not built: {exc}"
    if any(str(getattr(m, "__file__", "")).endswith(".py") for m in modules):
        return None, "the compiled core is not built (only Python copies found)"
    built = {getattr(m, "SOURCE_DIGEST", None) for m in modules}
    current = source_digest()
    if current is not None and built != {current}:
        # An editable checkout whose sources changed since the build: serving the stale
        # core would run code that is no longer in the sources.
        return None, "the compiled core is older than octo/http's sources; rebuild it " \
                     "with `python setup.py build_ext --inplace`"
    return modules[0], ""


def load(choice: str | None = None) -> Core:
    """The core for *choice* (default: ``OCTO_CORE``, else ``auto``)."""
    choice = choice or os.environ.get("OCTO_CORE", "") or "auto"
    if choice not in CHOICES:
        raise ValueError(f"OCTO_CORE={choice!r}: expected one of {', '.join(CHOICES)}")
    if choice == "python":
        return Core("python", _pure(), "chosen with OCTO_CORE=python")
    module, reason = _compiled()
    if module is not None:
        return Core("compiled", module, "")
    if choice == "compiled":
        raise ImportError(f"OCTO_CORE=compiled: {reason}")
    return Core("python", _pure(), reason)


def _pure() -> ModuleType:
    return importlib.import_module(f"{PURE_PACKAGE}.protocol")


_chosen: Core | None = None


def current() -> Core:
    """The core this process serves with (chosen once, on first use)."""
    global _chosen
    if _chosen is None:
        _chosen = load()
    return _chosen
