#!/usr/bin/env bash
# One memory probe of the intake (issue 14, item 5): starts `serve` on a new SQLite file (or on
# PROBE_DB), posts signed deliveries at 50 connections for 10 s (after 2 s of warm-up), and prints
# the process's peak RSS and what it holds at the end, anonymous and file-backed, with req/s.
#
#   bench/mem_probe.sh LABEL [VAR=VALUE...]      e.g. bench/mem_probe.sh pool8 SHIPGATE_PG_POOL=8
#
# The VAR=VALUE pairs are given to `serve` (LD_PRELOAD too). Run variants interleaved, two or
# more times each: the peak moves by about 1 MB between runs of one binary. Needs
# target/release/{shipgate,examples/loadgen} (or BIN, LOADGEN) and nothing else running.
# LOADGEN_ARGS are added to the generator's (`--ids github`); PROBE_DB is a database to use
# instead of a new SQLite file.
set -euo pipefail
cd "$(dirname "$0")/.."
label=${1:?usage: bench/mem_probe.sh LABEL [VAR=VALUE...]}
shift
BIN=${BIN:-target/release/shipgate}
LOADGEN=${LOADGEN:-target/release/examples/loadgen}
PAYLOAD=${PAYLOAD:-../shared/bench/payload.json}
PORT=${PORT:-18791}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
db=${PROBE_DB:-sqlite://$dir/probe.db}
env "$@" SHIPGATE_LISTEN=127.0.0.1:$PORT DATABASE_URL="$db" GITHUB_WEBHOOK_SECRET=bench-secret-123 RUST_LOG=warn \
    SHIPGATE_AUDIT_KEY=test-audit-key-0123456789abcdef0123456789 "$BIN" serve >"$dir/log" 2>&1 &
pid=$!
for _ in $(seq 600); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/readyz" && break; sleep 0.1; done
rps=$("$LOADGEN" --url "http://127.0.0.1:$PORT/webhook" --secret bench-secret-123 --connections 50 --duration 10 \
    --warmup 2 --payload "$PAYLOAD" --threads 1 ${LOADGEN_ARGS:-} | sed -n 's/^JSON .*"rps":\([0-9.]*\).*/\1/p')
mem=$(awk '/^(VmHWM|RssAnon|RssFile):/ {printf "%s %.1f ", $1, $2 / 1024}' "/proc/$pid/status")
kill "$pid"
wait "$pid" 2>/dev/null || true
echo "$label MB: $mem req/s: $rps"
