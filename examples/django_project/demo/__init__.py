"""The demo app: a per-user Profile model, the views and the ``setup_demo`` command."""
