"""kdns: cluster DNS for Kubernetes, a drop-in for CoreDNS (see README "How it works").

The version lives here; this module imports nothing.
"""

__version__ = "0.1.0"
