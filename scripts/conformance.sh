#!/usr/bin/env bash
# Runs the official MCP conformance suite against opsgate's fixture server (the
# `conformance_server` example of opsgate-server: the suite's fixture tools, resources and
# prompts on opsgate's own registry, pipeline, audit and HTTP app), for both protocol revisions
# opsgate speaks: 2025-11-25 (sessions) and 2026-07-28 (stateless).
#
# Needs Node 22 or newer first on PATH and the suite installed; scripts/test.sh sets both up.
#   CONFORMANCE_BIN  the suite's CLI (default .tools/conformance/node_modules/.bin/conformance)
#   CONFORMANCE_OUT  where each run's log and per-scenario checks.json go (default
#                    target/conformance); look there first when a check fails
#
# What fails this script: any check with status FAILURE in either run, scored or not. The
# suite's own exit code ignores the scenarios a requirement set lists as "not scored" (tasks,
# header validation, JSON Schema 2020-12, SSE polling), but its closing `Total: N passed, M
# failed` line counts them, and that line is what CI reads; so both must be clean: exit code 0
# and M = 0. WARNING, INFO and SKIPPED checks do not fail it.
set -euo pipefail
cd "$(dirname "$0")/.."

conformance_bin=${CONFORMANCE_BIN:-.tools/conformance/node_modules/.bin/conformance}
out_dir=${CONFORMANCE_OUT:-target/conformance}
# Per scenario, in milliseconds. The suite's default is 30 s; the slowest scenario takes about
# 3 s here, so this only matters on a machine that is very busy.
scenario_timeout_ms=120000

fail() {
    echo "conformance.sh: $*" >&2
    exit 1
}

[[ -x $conformance_bin ]] || fail "no conformance suite at $conformance_bin (set CONFORMANCE_BIN; scripts/test.sh installs it)"
command -v node >/dev/null 2>&1 || fail "node is not on PATH; the suite needs Node 22 or newer"
node_major=$(node --version | sed -n 's/^v\([0-9]*\)\..*/\1/p')
[[ -n $node_major && $node_major -ge 22 ]] || fail "node $(node --version) is too old; the suite needs 22 or newer first on PATH"

echo "==> building the fixture server"
# The JSON messages name the built executable wherever the target directory is.
server_bin=$(cargo build --example conformance_server -p opsgate-server --message-format=json-render-diagnostics |
    sed -n 's/.*"executable":"\([^"]*conformance_server\)".*/\1/p' | tail -n 1)
[[ -n $server_bin && -x $server_bin ]] || fail "cargo built no conformance_server executable"

rm -rf "$out_dir"
mkdir -p "$out_dir"
server_log="$out_dir/server.log"
server_out="$out_dir/server.out"

"$server_bin" 127.0.0.1:0 >"$server_out" 2>"$server_log" &
server_pid=$!
# SIGTERM lets it finish in-flight calls and check its audit chain; it gets 30 s for that.
stop_server() {
    kill -TERM "$server_pid" 2>/dev/null || return 0
    for _ in $(seq 1 300); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
}
trap stop_server EXIT

# The server prints `listening on http://127.0.0.1:PORT/mcp` once it accepts connections.
url=""
for _ in $(seq 1 300); do
    url=$(sed -n '1s/^listening on //p' "$server_out")
    [[ -n $url ]] && break
    kill -0 "$server_pid" 2>/dev/null || fail "the fixture server exited at start-up; see $server_log"
    sleep 0.1
done
[[ -n $url ]] || fail "the fixture server did not report its address within 30 s; see $server_log"
echo "==> fixture server at $url"

n_failed_runs=0
run_suite() {
    local requirements=$1
    local log="$out_dir/$requirements.log"
    local status=0
    local started=$SECONDS
    echo
    echo "==> conformance suite, requirements $requirements"
    "$conformance_bin" server --url "$url" --requirements "$requirements" --timeout "$scenario_timeout_ms" \
        -o "$out_dir/$requirements" >"$log" 2>&1 || status=$?
    sed -n '/=== SUMMARY ===/,$p' "$log"
    echo "($((SECONDS - started)) s, exit code $status, full log $log)"

    local total n_failed
    total=$(grep -E '^Total: [0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1 || true)
    n_failed=$(sed -n 's/^Total: [0-9]* passed, \([0-9]*\) failed.*/\1/p' <<<"$total")
    if [[ -z $total ]]; then
        echo "conformance.sh: no Total line for $requirements; the suite did not finish" >&2
        n_failed_runs=$((n_failed_runs + 1))
    elif [[ $status -ne 0 || $n_failed -ne 0 ]]; then
        echo "conformance.sh: $requirements has failed checks; see the checks.json files under $out_dir/$requirements" >&2
        n_failed_runs=$((n_failed_runs + 1))
    fi
}

run_suite 2025-11-25
run_suite 2026-07-28

stop_server
trap - EXIT
# On shutdown the server verifies its audit chain: every tool call of both runs is in it.
audit_line=$(grep -E '^audit: ' "$server_log" | tail -n 1 || true)
echo
echo "==> fixture server ${audit_line:-printed no audit summary (see $server_log)}"
if [[ -z $audit_line || $audit_line == *BROKEN* ]]; then
    n_failed_runs=$((n_failed_runs + 1))
fi

if [[ $n_failed_runs -ne 0 ]]; then
    echo "conformance.sh: FAILED" >&2
    exit 1
fi
echo "conformance.sh: both requirement sets pass with no failed checks"
