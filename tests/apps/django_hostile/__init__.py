"""A minimal Django project for the hostile-client tests (no database, no middleware)."""
