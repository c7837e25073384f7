# syntax=docker/dockerfile:1
#
# kdns: `docker build -t kdns:0.1.0 .` (the last stage is the default target).
# The node-local cache's init container: `docker build --target netsetup -t kdns-netsetup:0.1.0 .`
#
# Base pinned to an exact patch release of Python 3.11 on Debian bookworm; pin by digest
# too (`python:3.11.13-slim-bookworm@sha256:...`) where your registry policy asks for it.

FROM python:3.11.13-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# -- build: a venv with kdns and its pinned dependencies -----------------------------------
FROM base AS build
ENV VIRTUAL_ENV=/opt/kdns
ENV PATH="$VIRTUAL_ENV/bin:$PATH"
RUN python -m venv "$VIRTUAL_ENV"
WORKDIR /src
COPY constraints.txt pyproject.toml README.md ./
COPY kdns ./kdns
# Versions come from constraints.txt (the dev venv's pins of the runtime dependencies),
# so the image runs what the tests ran. Bytecode is compiled here: the root filesystem is
# read-only at run time.
RUN pip install -c constraints.txt .

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
RUN apt-get update \
 && apt-get install -y --no-install-recommends libcap2-bin \
 && setcap cap_net_bind_service=+ep "$(readlink -f /usr/local/bin/python3.11)" \
 && apt-get purge -y --auto-remove libcap2-bin \
 && rm -rf /var/lib/apt/lists/*
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
