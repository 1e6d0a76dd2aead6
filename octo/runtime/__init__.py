"""The Octane-style runtime: container, sandbox, events."""
