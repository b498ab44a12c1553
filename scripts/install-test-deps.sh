#!/usr/bin/env bash
# Installs the real backends the integration tests start (see crates/opsgate-testkit):
# Prometheus, Alertmanager, node_exporter and PostgreSQL, from Debian packages; and what the build
# and the conformance run need (OpenSSL headers, pkg-config, npm), and Python's venv for the
# federation tests.
# Idempotent: installs only what is missing and runs `apt-get update` only when it must.
# Runs as root (CI is root). Packaged services are kept from starting: the tests run their
# own instances on ephemeral loopback ports and a system Prometheus on :9090 would only get
# in the way and cost memory.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
    echo "install-test-deps.sh: must run as root" >&2
    exit 1
fi

missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v prometheus-node-exporter >/dev/null 2>&1 || missing+=(prometheus-node-exporter)

# initdb is not on PATH in Debian's layout; it lives under /usr/lib/postgresql/<major>/bin.
have_initdb() {
    command -v initdb >/dev/null 2>&1 && return 0
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}
have_initdb || missing+=(postgresql)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
# The build links OpenSSL (reqwest's native TLS); npm installs Node 22 and the conformance suite.
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# The federation tests run a Python MCP server from a virtual environment in .tools/.
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
# `opsgate mcp add/remove` are tested in a pseudo-terminal made by util-linux `script`.
command -v script >/dev/null 2>&1 || missing+=(bsdutils)

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-test-deps.sh: all test dependencies present"
    exit 0
fi

echo "install-test-deps.sh: installing ${missing[*]}"

# policy-rc.d returning 101 tells invoke-rc.d "action forbidden", so package postinst scripts
# do not start their services. Keep any pre-existing policy and restore it afterwards.
policy=/usr/sbin/policy-rc.d
backup=""
if [[ -e $policy ]]; then
    backup=$(mktemp)
    cp -p "$policy" "$backup"
fi
restore_policy() {
    if [[ -n $backup ]]; then
        mv -f "$backup" "$policy"
    else
        rm -f "$policy"
    fi
}
trap restore_policy EXIT
printf '#!/bin/sh\nexit 101\n' >"$policy"
chmod 0755 "$policy"

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"

# On a machine with systemd, policy-rc.d is honoured by deb-systemd-invoke, but units may still
# be enabled for the next boot; disable them so a reboot does not bring them back. Without
# systemd (containers, CI) there is nothing to do.
if [[ -d /run/systemd/system ]]; then
    for unit in prometheus prometheus-alertmanager prometheus-node-exporter postgresql; do
        systemctl disable --now "$unit" >/dev/null 2>&1 || true
    done
fi

echo "install-test-deps.sh: done"
