"""Load the application named by ``module:attr`` with one clear error line on failure."""

from __future__ import annotations

import importlib
import os
import sys
import sysconfig
import traceback
from typing import Any


class AppLoadError(Exception):
    """The app could not be loaded; ``str()`` is the one line shown to the user."""


def _library_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple({os.path.abspath(paths[key]) + os.sep
                  for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths})


def where(exc: BaseException) -> str:
    """`` (file:line)`` of the innermost frame of the app's own code that *exc* passed
    through — not the library or the standard library frame that raised — or ``""``.

    A SyntaxError names its own place. The path is shown relative to the working directory
    when it lies below it."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" ({_shown(exc.filename)}:{exc.lineno})"
    libraries = _library_dirs()
    octo_dir = os.path.dirname(os.path.abspath(__file__)) + os.sep
    found = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        path = os.path.abspath(frame.filename)
        if frame.filename.startswith("<") or path.startswith(octo_dir) or \
                path.startswith(libraries):
            continue
        found = f" ({_shown(frame.filename)}:{frame.lineno})"
    return found


def _shown(filename: str) -> str:
    path = os.path.abspath(filename)
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def describe(exc: BaseException) -> str:
    """``Type: message (file:line)`` — one line for a user-facing error."""
    message = exc.msg if isinstance(exc, SyntaxError) else str(exc)
    text = message.strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}{where(exc)}"


def import_from_string(target: str) -> Any:
    module_name, sep, attrs = target.partition(":")
    if not sep or not module_name or not attrs:
        raise AppLoadError(f'app must be given as "module:attribute", not {target!r}')
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name and not module_name.startswith(f"{exc.name}."):
            raise AppLoadError(f"error importing {module_name!r}: {describe(exc)}") from exc
        raise AppLoadError(f"could not import module {module_name!r}") from exc
    except Exception as exc:
        raise AppLoadError(f"error importing {module_name!r}: {describe(exc)}") from exc
    obj: Any = module
    for attr in attrs.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise AppLoadError(f"attribute {attrs!r} not found in module {module_name!r}") from None
    return obj


def load_app(target: str, app_dir: str = ".", factory: bool = False) -> Any:
    """Import *target*, call it if *factory*, and check the result is callable."""
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    app = import_from_string(target)
    if factory:
        if not callable(app):
            raise AppLoadError(f"factory {target!r} is not callable")
        try:
            app = app()
        except Exception as exc:
            raise AppLoadError(f"factory {target!r} raised {describe(exc)}") from exc
    if not callable(app):
        raise AppLoadError(f"{target!r} is not callable (got {type(app).__name__})")
    return app
