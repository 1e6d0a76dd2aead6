"""Builds octo's compiled HTTP core, when it can: the package installs without it.

The core modules of ``octo/http`` (see ``octo.http.core.CORE_MODULES``) are compiled with
mypyc into the package ``octo._ccore``: the same sources, copied there for the build (they
import each other relatively, so the copies import each other). The pure-Python modules
stay in ``octo/http`` as the reference implementation; ``octo.http.core`` chooses between
the two at run time. Each compiled module carries a digest of the sources it was built
from, so a checkout whose sources changed since the build is not served by a stale core.

Without a C compiler (or with ``OCTO_CORE_BUILD=0``) nothing is compiled and octo runs its
pure-Python core. ``OCTO_CORE_BUILD=1`` makes a failed build an error instead.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
SOURCE = ROOT / "octo" / "http"
TARGET = ROOT / "octo" / "_ccore"
# Also in octo/http/core.py (setup.py cannot import the package it builds).
CORE_MODULES = ("protocol", "cycle", "chunks", "flow", "validate", "counters", "head",
                "request_id", "quickhead", "taskreg", "done")
C_SOURCES = {"_headscan": "headscan.c", "_done": "done.c"}  # also in octo/http/core.py
MODE = os.environ.get("OCTO_CORE_BUILD", "auto")  # auto | 1 (must build) | 0 (never)


def source_digest() -> str:
    digest = hashlib.sha256()
    for name in CORE_MODULES:
        digest.update((SOURCE / f"{name}.py").read_bytes())
    for source in C_SOURCES.values():
        digest.update((SOURCE / source).read_bytes())
    return digest.hexdigest()


def _say(message: str) -> None:
    print(f"octo: {message}", file=sys.stderr)


def _copy_sources() -> list[str]:
    """The core modules, copied into octo/_ccore with the digest they were built from."""
    digest = source_digest()
    paths = []
    for name in CORE_MODULES:
        text = (SOURCE / f"{name}.py").read_text()
        text += f'\n\nSOURCE_DIGEST = "{digest}"  # added by setup.py for the compiled core\n'
        path = TARGET / f"{name}.py"
        path.write_text(text)
        paths.append(str(path.relative_to(ROOT)))
    return paths


def _remove_copies() -> None:
    for name in CORE_MODULES:
        (TARGET / f"{name}.py").unlink(missing_ok=True)


def extensions() -> list[Any]:
    if MODE == "0":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        if MODE == "1":
            raise
        _say("mypyc is not installed: the compiled HTTP core is not built")
        return []
    os.chdir(ROOT)  # mypyc names modules by their paths
    try:
        # group_name inside the package: mypyc's shared runtime module becomes
        # octo._ccore__mypyc instead of a top-level module of its own.
        # Modules outside the core are only read for their types; a dependency missing from
        # the build environment is typed Any, as the compiled code treats it anyway.
        flags = ["--follow-imports=silent", "--ignore-missing-imports"]
        compiled = list(mypycify(flags + _copy_sources(), group_name="octo._ccore",
                                 opt_level="3", target_dir=str(ROOT / "build" / "mypyc")))
    except BaseException as exc:  # mypyc exits through SystemExit on a type error
        if MODE == "1":
            raise
        _say(f"the compiled HTTP core could not be generated ({exc!r}); pure Python only")
        return []
    finally:
        _remove_copies()
    return compiled + [
        Extension(f"octo._ccore.{name}", [str((SOURCE / source).relative_to(ROOT))])
        for name, source in C_SOURCES.items()
    ]


class OptionalBuildExt(build_ext):
    """A failed compile (no C compiler, no Python headers) leaves the pure-Python core."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            self._give_up(exc)

    def build_extension(self, ext: Any) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._give_up(exc)

    def _give_up(self, exc: Exception) -> None:
        if MODE == "1":
            raise exc
        _say(f"the compiled HTTP core could not be built ({exc}); octo will run its "
             "pure-Python core")


if __name__ == "__main__":
    shutil.rmtree(ROOT / "build" / "mypyc", ignore_errors=True)
    setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
