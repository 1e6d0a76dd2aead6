"""A Django project whose sync views use the octo runtime's sync entry points."""
