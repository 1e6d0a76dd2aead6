"""ASGI WebSockets."""
