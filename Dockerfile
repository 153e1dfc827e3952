# sipwatch container image: the package in a venv on Debian 12, run as the daemon.
#
#   podman build --format docker --pull=never \
#       --build-arg BASE=$(deploy/build-base-image) -t localhost/sipwatch .   (or: make image)
# The only network use is at build time: apt (Debian mirror) and pip (PyPI).
#
# BASE defaults to debian:bookworm-slim for machines that can pull it; deploy/build-base-image
# makes an equivalent one locally (mmdebstrap + podman import) where no registry is reachable.
# Build with --format docker: the OCI image format has no HEALTHCHECK and podman drops it.
#
# What each feature needs at run time. The image runs as the unprivileged user `sipwatch`
# (uid/gid 9160); a line that names no capability needs none.
#   SIP probes (UDP/TCP/TLS)   nothing; source ports are ephemeral.
#   HTTP endpoint, :9160       nothing (> 1024; below 1024 in the host network namespace needs
#                              CAP_NET_BIND_SERVICE, so root).
#                              It binds 127.0.0.1 by default: to publish the port, set
#                              [daemon] http_host = "0.0.0.0" (or `sipwatch run --http`).
#   vip (netlink)              nothing to read addresses and links and to subscribe to their
#                              changes, but the host's VIP is only visible from the host network
#                              namespace: --network host (compose: network_mode: host).
#   pbx_process (psutil)       the host PID namespace: --pid host. By pidfile (bind-mount its
#                              directory read-only) or by name: nothing, /proc/PID/stat and
#                              cmdline are world-readable unless /proc is mounted hidepid=.
#                              By listening port, and fd counts: other users' /proc/PID/fd,
#                              i.e. CAP_SYS_PTRACE: --user 0 --cap-add SYS_PTRACE (Docker gives
#                              an added capability to uid 0 only, not to uid 9160).
#   drbd (drbdsetup)           drbd-utils in the image (EXTRA_PACKAGES=drbd-utils) and root:
#                              the kernel's DRBD netlink family wants CAP_SYS_ADMIN.
#   Pacemaker agent (crm_*)    the Pacemaker CLI in the image (EXTRA_PACKAGES=
#                              pacemaker-cli-utils, the cluster's version); the cluster's IPC,
#                              which is libqb: abstract unix sockets (host network namespace)
#                              and /dev/shm buffers (--ipc host); and the right to use it: root,
#                              or the host's haclient group (--group-add <gid>, from `getent
#                              group haclient`: it differs per host); with the CIB's enable-acl
#                              on, also an ACL for uid 9160.
#   sipwatch check -> daemon   the same network namespace as the daemon's HTTP port (or its
#                              socket in /run/sipwatch, a tmpfs owned by uid 9160).
# On a real node that is: --network host --pid host --ipc host --group-add <haclient gid>,
# no capability unless the port lookup (SYS_PTRACE) or drbd (root) is configured; or use the
# systemd unit (deploy/sipwatch.service) instead of a container.
# Config: mount it read-only at /etc/sipwatch/sipwatch.toml. State: /var/lib/sipwatch.

ARG BASE=debian:bookworm-slim
FROM ${BASE}

# Extra Debian packages, e.g. pacemaker-cli-utils for the Pacemaker agent on a cluster node.
ARG EXTRA_PACKAGES=""

# Debian's python3 (3.11 in bookworm) and venv; no compiler: every dependency has a wheel.
# Recommends stay out; apt lists and caches go in the same layer.
RUN set -eux; \
    export DEBIAN_FRONTEND=noninteractive; \
    apt-get update; \
    apt-get install -y --no-install-recommends python3 python3-venv ${EXTRA_PACKAGES}; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log

# A fixed uid/gid so that bind-mounted files and host-side ACLs can name it.
RUN set -eux; \
    groupadd --system --gid 9160 sipwatch; \
    useradd --system --uid 9160 --gid sipwatch --home-dir /var/lib/sipwatch --no-create-home \
        --shell /usr/sbin/nologin sipwatch; \
    install -d -o root -g root -m 0755 /etc/sipwatch; \
    install -d -o sipwatch -g sipwatch -m 0750 /var/lib/sipwatch /run/sipwatch

# Only what the package build needs (see .dockerignore too); /src is removed after install.
COPY pyproject.toml README.md /src/
COPY sipwatch /src/sipwatch
COPY probes /src/probes
COPY policies /src/policies
# The secret `build-ca` (optional) is a CA bundle pip trusts during this step only, for
# builds behind a TLS-intercepting proxy (make image passes the host's bundle):
#   --secret id=build-ca,src=/etc/ssl/certs/ca-certificates.crt
# It is mounted for this RUN and never stored in a layer.
RUN --mount=type=secret,id=build-ca,required=false set -eux; \
    if [ -s /run/secrets/build-ca ]; then export PIP_CERT=/run/secrets/build-ca; fi; \
    python3 -m venv /opt/sipwatch; \
    /opt/sipwatch/bin/pip install --no-cache-dir --disable-pip-version-check --quiet /src; \
    # pip and setuptools are 25 MB the daemon never uses: the image is rebuilt, not patched.
    /opt/sipwatch/bin/pip uninstall --yes --quiet pip setuptools; \
    rm -rf /src; \
    /opt/sipwatch/bin/sipwatch --version

COPY deploy/healthcheck.py /usr/local/lib/sipwatch/healthcheck.py

ENV PATH=/opt/sipwatch/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1

USER sipwatch:sipwatch
WORKDIR /var/lib/sipwatch

# The daemon's HTTP endpoint (/livez /readyz /active /status /metrics), [daemon] http_port.
# It binds 127.0.0.1 by default: publishing the port needs [daemon] http_host = "0.0.0.0".
EXPOSE 9160/tcp

# /livez: sipwatch itself is alive. Set SIPWATCH_LIVEZ_URL when [daemon] http_port is not 9160
# (http_host 0.0.0.0 is fine: the check asks 127.0.0.1).
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["/opt/sipwatch/bin/python", "-I", "/usr/local/lib/sipwatch/healthcheck.py"]

# SIGTERM: the daemon finishes in-flight probes and exits 0. SIGHUP: reload the config.
STOPSIGNAL SIGTERM
ENTRYPOINT ["sipwatch"]
CMD ["run", "--config", "/etc/sipwatch/sipwatch.toml"]
