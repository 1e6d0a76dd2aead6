"""A minimal Django project for the benchmark: settings configured in code, no database."""
