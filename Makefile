# sipwatch — two entry points matter: `make demo` and `make test` (see README).
# Both work on a fresh Debian 12 machine: they install the system packages they need
# (as root, or through sudo), create .venv and install the project into it.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
APT_PACKAGES := kamailio kamailio-tls-modules kamailio-websocket-modules sip-tester sipsak \
                dnsmasq-base iproute2 \
                openssl ca-certificates python3-venv procps \
                pacemaker pacemaker-cli-utils corosync resource-agents crmsh libxml2-utils \
                podman buildah mmdebstrap catatonit iptables prometheus \
                chromium shellcheck haproxy keepalived
# binaries whose absence means the apt step must run
NEEDED_BINARIES := kamailio kamcmd sipp sipsak dnsmasq ip openssl crm_simulate cibadmin \
                   crm_attribute ocf-tester xmllint podman buildah mmdebstrap promtool \
                   chromium shellcheck haproxy keepalived
# files whose absence means the same (shell globs): Kamailio modules are not binaries on PATH
NEEDED_FILES := /usr/lib/*/kamailio/modules/websocket.so /usr/lib/*/kamailio/modules/tls.so
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system-packages venv bytecode demo test unit lint bench bench-calls soak fuzz clean

setup: system-packages venv

system-packages:
	@missing=""; for b in $(NEEDED_BINARIES); do \
	  command -v $$b >/dev/null 2>&1 || [ -x /usr/sbin/$$b ] || missing="$$missing $$b"; done; \
	for f in $(NEEDED_FILES); do [ -e "$$f" ] || missing="$$missing $$(basename $$f)"; done; \
	if [ -n "$$missing" ] || ! $(PYTHON) -c 'import venv, ensurepip' 2>/dev/null; then \
	  echo "== installing system packages (missing:$$missing)"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    $(APT_PACKAGES) >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	@echo "== creating $(VENV) and installing sipwatch with its test extras"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]' --config-settings editable_mode=compat
	@touch $@

# Byte-compile the package: with PYTHONDONTWRITEBYTECODE set (as on CI machines) Python
# would otherwise recompile every module on every one-shot `sipwatch probe`.
bytecode: $(VENV)/.installed
	@$(PY) -m compileall -q sipwatch

venv: $(VENV)/.installed bytecode

demo: setup
	$(PY) -m testbed.demo

# pytest exits 5 when it collected no test: that is a failure here, not a pass.
test: setup
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc

unit: venv
	$(PY) -m pytest tests/unit -q

lint: venv
	$(VENV)/bin/ruff check sipwatch testbed tests bench fuzz
	$(VENV)/bin/mypy

bench: setup
	$(PY) bench/engine.py
	$(PY) bench/oneshot.py
	$(PY) bench/ws.py --json bench/results/ws.json
	$(PY) bench/calls.py

# Call probe cost (issue 12): one call probe against a sipp UAC, 50 concurrent (~1 min).
bench-calls: setup
	$(PY) bench/calls.py

# The daemon soak (bench/soak.py, docs/soak.md): `sipwatch run` against Kamailio for
# SOAK_MINUTES with faults on a schedule, SIGHUP reloads and polling clients; slopes of RSS,
# fds, tasks and threads, verdict accuracy, log errors. Results: bench/results/soak-*.{json,md}.
# Not part of `make bench` (an hour by default). SOAK_ARGS: more options (--phase-s ...).
SOAK_MINUTES ?= 60
SOAK_ARGS    ?=

soak: setup
	$(PY) bench/soak.py --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

# Coverage-guided fuzzing (fuzz/, docs/fuzzing.md): every target, one after another, under
# atheris in a venv of its own (the `fuzz` extra; `make test` runs a seconds-long smoke of each
# without it). FUZZ_RUNS inputs per target, each stopped after FUZZ_SECONDS at the latest: the
# default lets the slowest target (config, ~450 inputs/s here) reach 1,000,000; the fast ones
# stop at FUZZ_RUNS long before. FUZZ_TARGETS: a subset (default all). Results: .fuzz/.
FUZZ_VENV    ?= .fuzzvenv
FUZZ_RUNS    ?= 1000000
FUZZ_SECONDS ?= 2400
FUZZ_TARGETS ?=

$(FUZZ_VENV)/.installed: pyproject.toml
	@echo "== creating $(FUZZ_VENV) and installing sipwatch with the fuzz extra (atheris)"
	$(PYTHON) -m venv $(FUZZ_VENV)
	$(FUZZ_VENV)/bin/python -m pip install -q --upgrade pip
	$(FUZZ_VENV)/bin/python -m pip install -q -e '.[fuzz]' --config-settings editable_mode=compat
	@touch $@

fuzz: $(FUZZ_VENV)/.installed
	$(FUZZ_VENV)/bin/python -m fuzz.campaign --runs $(FUZZ_RUNS) --seconds $(FUZZ_SECONDS) \
	  $(FUZZ_TARGETS)

clean:
	rm -rf $(VENV) $(FUZZ_VENV) .fuzz .pytest_cache .mypy_cache .ruff_cache *.egg-info

# Container image (Dockerfile) on a local Debian 12 base made by deploy/build-base-image
# (mmdebstrap + podman import, cached): no registry needed. Root, and the apt packages
# podman buildah mmdebstrap. The CA bundle is a build secret for pip behind a TLS proxy.
IMAGE ?= localhost/sipwatch:latest
.PHONY: image image-test
image:
	@base=$$(bash deploy/build-base-image) && ca=/etc/ssl/certs/ca-certificates.crt && \
	secret=$$( [ -s $$ca ] && echo "--secret id=build-ca,src=$$ca" || true ) && \
	podman build --isolation chroot --pull=never --format docker --build-arg BASE=$$base \
	  $$secret -t $(IMAGE) .

# The image, compose.yaml and the systemd unit, as CI tests them.
image-test: venv
	$(PY) -m pytest tests/container -m container -q

# The three-node HA lab (root): real corosync + Pacemaker + Kamailio + sipwatch in network
# namespaces (testbed/lab.py, docs/lab.md). `make lab` runs the fault suite's CI
# cases (also part of `make test`); `make lab-soak` the long cases (SIPWATCH_LAB_SOAK_S,
# default 300 s of netem); `make lab-bench` the failover benchmark; `make lab-down` removes a
# lab left up by `python -m testbed.lab up`.
.PHONY: lab lab-soak lab-bench lab-down
lab: setup
	$(PY) -m pytest tests/lab -q -p no:cacheprovider

lab-soak: setup
	$(PY) -m pytest tests/lab -q -p no:cacheprovider -m lab_slow

lab-bench: setup
	$(PY) bench/failover.py -n $(or $(N),10)

lab-down:
	$(PY) -m testbed.lab down
