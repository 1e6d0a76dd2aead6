"""The master process: pre-forks workers and keeps them healthy."""
