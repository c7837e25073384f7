"""The query path: query bytes in, response bytes out (handler: fast path, validation, rcode
policy) and the plugin chain for what the compiled table does not answer (chain).

Imports kdns.dns and kdns.cluster only: plugins reach it through the protocols in chain, never the
other way.
"""
