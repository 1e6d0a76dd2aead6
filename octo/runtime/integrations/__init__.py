"""Adapters for frameworks that need per-request care in a long-lived process."""
