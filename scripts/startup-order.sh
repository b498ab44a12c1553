#!/usr/bin/env bash
# Regenerates crates/opsgate/startup-order.txt: the functions an `opsgate` release binary runs to
# start, answer its first tools/list (and, for `serve`, a first tools/call), idle and stop, which
# the release link places next to each other at the front of .text (crates/opsgate/build.rs).
# Why: Linux 6.18 maps a binary's code in whole page-cache folios (up to 2 MB), so start-up code
# spread over 25 MB of .text kept about 15 MB of it resident; grouped, about 4 MB.
#
# Run it after a change of dependencies, features, toolchain or release profile (any of which
# renames most symbols; scripts/bench.sh reports how much of the file still matches the binary).
# It builds the release binary, runs it under valgrind's callgrind (installed if missing) in the
# configurations scripts/bench.sh measures, and writes every function of the binary that ran.
# Takes about two minutes after the build.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
target_dir=${CARGO_TARGET_DIR:-target}
order="$root/crates/opsgate/startup-order.txt"

missing=()
for tool in valgrind curl nm python3 git; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    packages=$(printf '%s\n' "${missing[@]}" | sed 's/^nm$/binutils/' | tr '\n' ' ')
    apt-get update -qq && apt-get install -y --no-install-recommends $packages >/dev/null
fi

cargo build --release -p opsgate
bin="$root/$target_dir/release/opsgate"

work=$(mktemp -d)
# Debian's valgrind is a wrapper that execs valgrind.bin, so match the output file, not the name.
trap 'pkill -f "callgrind-out-file=$work/" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/home"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
meta='{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"startup-order","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}'

# post METHOD PARAMS [NAME]: one 2026-07-28 request to the server under measurement.
post() {
    local headers=(-H 'content-type: application/json' -H 'accept: application/json, text/event-stream'
        -H 'MCP-Protocol-Version: 2026-07-28' -H "Mcp-Method: $1")
    [[ -z ${3:-} ]] || headers+=(-H "Mcp-Name: $3")
    curl -sSf --max-time 60 -X POST "http://127.0.0.1:$port/mcp" "${headers[@]}" \
        -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$1\",\"params\":$2}"
}

# run NAME [--config FILE]: callgrind over `opsgate serve` and then `opsgate stdio`, each with a
# fresh data directory, writing $work/NAME.serve and $work/NAME.stdio.
run() {
    local name=$1
    shift
    local callgrind=(valgrind --tool=callgrind --demangle=no --compress-strings=no --compress-pos=no)
    local data="$work/data-$name-serve"
    mkdir -p "$data"
    (cd "$data" && HOME="$work/home" XDG_CONFIG_HOME="$work/home" "${callgrind[@]}" \
        --callgrind-out-file="$work/$name.serve" "$bin" "$@" --data-dir "$data" \
        serve --listen "127.0.0.1:$port" >"$work/$name.serve.log" 2>&1) &
    local server=$!
    local listed=
    for _ in $(seq 1 240); do
        sleep 0.5
        if post tools/list "{\"_meta\":$meta}" >/dev/null 2>&1; then listed=yes; break; fi
    done
    if [[ -z $listed ]] || ! post tools/call \
        "{\"name\":\"search_context\",\"arguments\":{\"query\":\"deploy checkout\"},\"_meta\":$meta}" search_context >/dev/null; then
        echo "startup-order.sh: opsgate serve ($name) did not answer; its log:" >&2
        cat "$work/$name.serve.log" >&2
        exit 1
    fi
    sleep 2
    pkill -TERM -f "callgrind-out-file=$work/$name.serve" || true
    if ! wait "$server"; then
        echo "startup-order.sh: opsgate serve ($name) did not stop cleanly; its log:" >&2
        cat "$work/$name.serve.log" >&2
        exit 1
    fi

    data="$work/data-$name-stdio"
    mkdir -p "$data"
    printf '%s\n' \
        '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"startup-order","version":"1"}}}' \
        '{"jsonrpc":"2.0","method":"notifications/initialized"}' \
        '{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}' |
        (cd "$data" && HOME="$work/home" XDG_CONFIG_HOME="$work/home" "${callgrind[@]}" \
            --callgrind-out-file="$work/$name.stdio" "$bin" "$@" --data-dir "$data" stdio \
            >/dev/null 2>"$work/$name.stdio.log") ||
        { echo "startup-order.sh: opsgate stdio ($name) failed; its log:" >&2; cat "$work/$name.stdio.log" >&2; exit 1; }
}

run none
run example --config "$root/crates/opsgate-bench/example-config.toml"

# Functions of the binary itself (`ob=` names the object the following `fn=` lines belong to), in
# the order callgrind first lists them, once each, and only names the binary defines: callgrind
# marks a recursive cycle's entries with a ' suffix, and a file-local C function can share its
# name with another file's.
nm --defined-only "$bin" | awk '$2 ~ /^[tTwW]$/ { print $3 }' | sort -u >"$work/defined"
awk '
    /^ob=/ { ours = ($0 ~ /\/opsgate$/) }
    /^fn=/ && ours { name = substr($0, 4); if (!seen[name]++) print name }
' "$work"/none.serve "$work"/example.serve "$work"/none.stdio "$work"/example.stdio >"$work/ran"
awk 'NR == FNR { defined[$0] = 1; next } defined[$0]' "$work/defined" "$work/ran" >"$work/order"

{
    echo "# Generated by scripts/startup-order.sh; do not edit by hand. The release link of the"
    echo "# opsgate binary places these functions first in .text, in this order (crates/opsgate/build.rs)."
    echo "# rustc $(${RUSTC:-rustc} --version | cut -d' ' -f2), commit $(git rev-parse --short HEAD), $(wc -l <"$work/order") functions."
    cat "$work/order"
} >"$order"
echo "startup-order.sh: wrote $order ($(wc -l <"$work/order") of $(wc -l <"$work/ran") functions that ran)"
