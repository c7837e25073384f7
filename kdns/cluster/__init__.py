"""The cluster as DNS sees it: shrunk objects, the store, its sources (API informers, a manifests
folder), the name grammar (resolver) and the compiled answer table kept current per changed
object.

Imports only kdns.dns and kdns.errors: never the query path, plugins, server or cli.
"""
