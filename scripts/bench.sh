#!/usr/bin/env bash
# The one benchmark command: builds opsgate and the benchmark in release mode and runs it; the
# benchmark writes BENCHMARKS.md at the repository root, with this command and the machine.
# Arguments go to opsgate-bench (--seconds N, --rounds N, --connections N, --stdio-runs N,
# --federation-seconds N, --context-events N, --ingest-seconds N, --context-senders N,
# --context-store sqlite|postgresql,
# --only federation|context|binary|audit; see `opsgate-bench --help`). The default run takes about fifteen
# minutes after the build, most of it loading a million events into SQLite and then PostgreSQL
# for the operational-context section, which needs about 3 GB free in the temporary directory
# (and PostgreSQL's binaries, else its PostgreSQL half is reported as skipped).
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir=${CARGO_TARGET_DIR:-target}
# Two builds, not one: built together, the benchmark's dependency features would be unified into
# opsgate's, and the binary measured would not be the one `cargo build --release -p opsgate` (the
# README's command) gives users, nor the one crates/opsgate/startup-order.txt was written from.
cargo build --release -p opsgate
cargo build --release -p opsgate-bench

OPSGATE_BENCH_COMMAND="scripts/bench.sh${*:+ $*}" exec "$target_dir/release/opsgate-bench" \
    --opsgate-bin "$target_dir/release/opsgate" --output BENCHMARKS.md "$@"
