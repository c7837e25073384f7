# kdns: `make run` serves the example cluster, `make test` runs the whole suite.
# Both create the virtual environment and install what they need, Debian packages included.

VENV ?= .venv
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
LISTEN ?= 127.0.0.1:1053

# Debian packages, as command=package: a command already on the machine (kubectl from
# another source, say) is not installed again. Real DNS clients, real upstream servers,
# dnsperf and nsd for the benchmarks' smoke tests, promtool, kubectl, and ip for network
# namespaces.
DEB_RUN := dig=dnsutils
DEB_TEST := dig=dnsutils dnsperf=dnsperf dnsmasq=dnsmasq unbound=unbound nsd=nsd ip=iproute2 \
	promtool=prometheus kubectl=kubernetes-client
# make bench's peers and tools: nsd is the authoritative upstream and a cluster-zone peer,
# strace counts system calls per query for the breakdown.
DEB_BENCH := dnsperf=dnsperf dnsmasq=dnsmasq unbound=unbound nsd=nsd taskset=util-linux \
	strace=strace
# The C compiler for kdns's optional extension (kdns/server/_fastudp.c, the compiled-answer
# UDP loop; without it kdns runs the ctypes loop): gcc, and libc's headers with it.
DEB_BUILD := gcc=gcc gcc=libc6-dev
# make bench BENCH_ARGS="--only external --duration 5" runs one part (see benchmarks/README.md).
BENCH_ARGS ?=

.PHONY: run test check lint typecheck bench debs-build debs-run debs-test debs-bench clean

# setup.py and the C source too: an editable install builds kdns/server/_fastudp once.
$(VENV)/.installed: pyproject.toml setup.py kdns/server/_fastudp.c | debs-build
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

define apt_install
	@missing=""; for pair in $(1); do \
		PATH="$$PATH:/usr/sbin:/sbin" command -v $${pair%%=*} >/dev/null 2>&1 || missing="$$missing $${pair#*=}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
endef

debs-build:
	$(call apt_install,$(DEB_BUILD))

debs-run:
	$(call apt_install,$(DEB_RUN))

debs-test:
	$(call apt_install,$(DEB_TEST))

debs-bench:
	$(call apt_install,$(DEB_BENCH))

run: $(VENV)/.installed debs-run
	@echo "kdns is serving examples/cluster on $(LISTEN). In another terminal, try:"
	@echo "    dig @$(firstword $(subst :, ,$(LISTEN))) -p $(lastword $(subst :, ,$(LISTEN))) web.default.svc.cluster.local"
	$(VENV)/bin/kdns serve --manifests examples/cluster --listen $(LISTEN)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check kdns tests benchmarks
	$(VENV)/bin/ruff format --check kdns tests benchmarks

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

check: lint typecheck

test: $(VENV)/.installed debs-test check
	$(VENV)/bin/pytest -q

bench: $(VENV)/.installed debs-bench
	$(VENV)/bin/python benchmarks/bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
