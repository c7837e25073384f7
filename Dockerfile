# syntax=docker/dockerfile:1
#
# kdns: `docker build -t kdns:0.1.0 .` (the last stage is the default target).
# The node-local cache's init container: `docker build --target netsetup -t kdns-netsetup:0.1.0 .`
#
# The base, pinned by digest: python:3.11.13-slim-bookworm's multi-arch index digest as
# public repositories pin it. It was not resolved from this tree's CI (no registry access
# there): check it with `docker buildx imagetools inspect python:3.11.13-slim-bookworm`
# and move tag and digest together. A mirror: `--build-arg PYTHON_IMAGE=REGISTRY/...@sha256:...`.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:86adf8dbadc3d6e82ee5dd2c74bec2e1c2467cdad47886280501df722372d2e1

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# -- build: the kdns wheel, and a venv with it and its locked dependencies ------------------
# Every package comes from a lock with hashes (tools/lock.sh writes both from pyproject.toml)
# and as a wheel: nothing is resolved here, and nothing compiled but kdns's own extension.
# The venv has no pip or setuptools: this stage's pip installs into it (--python), and only
# the venv goes to the runtime.
FROM base AS build
WORKDIR /src
# gcc builds kdns's one C extension, the compiled-answer UDP loop (kdns/server/_fastudp.c:
# 1.5x the cluster-name throughput of the ctypes loop); it stays in this stage.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY requirements-build.lock requirements.lock ./
RUN pip install --require-hashes --no-deps --only-binary=:all: -r requirements-build.lock
RUN python -m venv --without-pip /opt/kdns
# Dependencies before the source, so this layer is reused until the lock changes. Bytecode
# is compiled here: the root filesystem is read-only at run time.
RUN pip --python /opt/kdns/bin/python install --require-hashes --no-deps --only-binary=:all: -r requirements.lock
COPY pyproject.toml setup.py README.md LICENSE ./
COPY kdns ./kdns
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
 && pip --python /opt/kdns/bin/python install --no-deps --no-index /wheels/kdns-*.whl

# -- netsetup: iproute2 + iptables for the node-local cache's init container ---------------
# Debian's iptables uses the nft backend; on nodes still on iptables-legacy, run
# `update-alternatives --set iptables /usr/sbin/iptables-legacy` in the init script.
FROM base AS netsetup
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 iptables \
 && rm -rf /var/lib/apt/lists/*

# -- runtime ---------------------------------------------------------------------------------
FROM base AS runtime
# Port 53 as a non-root user: the interpreter gets the file capability
# cap_net_bind_service; the pod adds NET_BIND_SERVICE to its bounding set and drops the rest.
# No installer in the image: the base's pip, setuptools and wheel, and ensurepip's bundled
# copies, are removed (kdns's venv never had them).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libcap2-bin \
 && setcap cap_net_bind_service=+ep "$(readlink -f /usr/local/bin/python3.11)" \
 && apt-get purge -y --auto-remove libcap2-bin \
 && rm -rf /var/lib/apt/lists/* \
 && python -m pip uninstall -y pip setuptools wheel \
 && rm -rf /usr/local/lib/python3.11/ensurepip
COPY --from=build /opt/kdns /opt/kdns
ENV VIRTUAL_ENV=/opt/kdns
ENV PATH="$VIRTUAL_ENV/bin:$PATH"
# 65532: the "nonroot" user of distroless images, as CoreDNS's image runs.
USER 65532:65532
WORKDIR /
EXPOSE 53/udp 53/tcp 8080 8181 9153
# No HEALTHCHECK: in Kubernetes the kubelet's liveness (/health :8080) and readiness
# (/ready :8181) probes own health; a Docker HEALTHCHECK is ignored by Kubernetes and
# would only run a second prober (a Python process every interval) inside the pod.
ENTRYPOINT ["kdns"]
# CoreDNS's path: the `coredns` ConfigMap mounts unchanged.
CMD ["-conf", "/etc/coredns/Corefile"]
