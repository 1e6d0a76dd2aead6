"""The server's processes: what the master forks and what they share with it.

``worker`` (the HTTP worker), ``taskworker`` (rt.tasks and concurrently(in_workers=True)),
``sockets`` (binding, --uds, --fd), ``tls``, ``importer`` (APP loading), ``lifespan``,
``accept`` (balanced accepting), ``slots`` (heartbeats and counters in shared memory),
``orphan`` (the lifeline to the master) and ``exits`` (the exit codes both sides read).
Imported by the master (octo.master), never by the runtime apps import (octo.runtime).
"""
