"""octo: a persistent-process ASGI application server."""

from octo._version import __version__
from octo.config import Config, ConfigError
from octo.http.cycle import ClientDisconnected

__all__ = ["ClientDisconnected", "Config", "ConfigError", "__version__"]
