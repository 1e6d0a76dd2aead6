"""octo's compiled HTTP core: ``octo/http``'s core modules built by mypyc (see setup.py).

Nothing here is source: the extension modules are built from ``octo/http``; import them
through ``octo.http.core``, which checks they were built from the sources present.
"""
