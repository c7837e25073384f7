"""The optional C extension: the compiled-answer UDP loop (kdns/server/_fastudp.c).

Everything else is in pyproject.toml. ``optional=True``: a machine without a C compiler
or Python's headers still installs kdns, and the transport falls back to ctypes.
"""

import sys

from setuptools import Extension, setup

ext_modules = []
if sys.platform.startswith("linux"):  # recvmmsg/sendmmsg
    ext_modules.append(
        Extension(
            "kdns.server._fastudp",
            sources=["kdns/server/_fastudp.c"],
            extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    )

setup(ext_modules=ext_modules)
