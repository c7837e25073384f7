"""The legacy service environment variables, injected by a mutating admission webhook.

``envvars`` holds kubelet's rules, ``patch`` turns them into JSONPatch, ``webhook``
speaks AdmissionReview, ``tls`` and ``certs`` handle the key pair, ``config`` parses
the ``envinject`` directive.

Imports kdns.cluster and kdns.admission only; never the DNS query path, plugins or server.
"""
