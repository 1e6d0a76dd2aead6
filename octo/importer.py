"""Load the application named by ``module:attr`` with one clear error line on failure."""

from __future__ import annotations

import importlib
import sys
from typing import Any


class AppLoadError(Exception):
    """The app could not be loaded; ``str()`` is the one line shown to the user."""


def import_from_string(target: str) -> Any:
    module_name, sep, attrs = target.partition(":")
    if not sep or not module_name or not attrs:
        raise AppLoadError(f'app must be given as "module:attribute", not {target!r}')
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name and not module_name.startswith(f"{exc.name}."):
            raise AppLoadError(
                f"error importing {module_name!r}: {type(exc).__name__}: {exc}"
            ) from exc
        raise AppLoadError(f"could not import module {module_name!r}") from exc
    except Exception as exc:
        raise AppLoadError(f"error importing {module_name!r}: {type(exc).__name__}: {exc}") from exc
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
            raise AppLoadError(f"factory {target!r} raised {type(exc).__name__}: {exc}") from exc
    if not callable(app):
        raise AppLoadError(f"{target!r} is not callable (got {type(app).__name__})")
    return app
