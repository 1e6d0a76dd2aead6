"""A minimal real Django project served by octo: ORM on SQLite, sessions and auth.

One command, from the repository root, creates the schema and the demo users (if absent) and
then serves the project::

    python -m examples.django_project [octo serve options, e.g. --port 8001]

It is the same as running these two steps::

    python -m examples.django_project.manage setup_demo    # migrate + demo users
    octo serve examples.django_project.asgi:application

The SQLite file is ``examples/django_project/db.sqlite3`` (git-ignored) unless the environment
variable ``EXAMPLE_DJANGO_DB`` names another path. ``EXAMPLE_DJANGO_DEBUG=1`` turns on DEBUG.

Demo users: ``alice`` / ``alice-password`` and ``bob`` / ``bob-password``.

Endpoints:

- ``GET /hello``   plain text, no database
- ``POST /login``  form fields ``username`` and ``password``; starts a session (csrf-exempt)
- ``GET /whoami``  JSON with the logged-in username and that user's motto read from the DB
                   (``?n=...`` is echoed back, so a client can match answers to requests);
                   401 when not logged in
- ``POST /logout`` ends the session (csrf-exempt: this is a demo)
"""
