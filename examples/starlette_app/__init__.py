"""A small Starlette application served by octo; see :mod:`examples.starlette_app.app`."""
