#!/usr/bin/env bash
# The intake under an unsigned flood (issue 15): peak memory of `shipgate serve` and the signed
# deliveries it still accepts while unsigned clients hold connections and announce large bodies.
#
# usage: bench/flood.sh [RESULTS.md]        (default bench/results/flood.md)
#
# For each scenario a fresh `shipgate serve` (SQLite, dry-run) is started; the flood
# (bench/flood.rs) runs from WARMUP s before the signed load (bench/loadgen.rs, CONNS connections,
# DURATION s) until it ends; the App's peak RSS (VmHWM) is read at the end.
#
# Environment (all optional): DURATION=10 WARMUP=5 CONNS=50 PORT=18490 NO_BUILD=1
#   SCENARIOS="none big=60 big=25,oversized=25,slowhead=25,trickle=25 big=100"
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
OUT=${1:-bench/results/flood.md}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-5}
CONNS=${CONNS:-50}
PORT=${PORT:-18490}
SCENARIOS=${SCENARIOS:-"none big=60 big=25,oversized=25,slowhead=25,trickle=25 big=100"}
SECRET=bench-secret-123
WORK=$(mktemp -d "${TMPDIR:-/tmp}/shipgate-flood.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

if [ "${NO_BUILD:-0}" != 1 ]; then
    log "building (release)"
    cargo build --release --bin shipgate --example flood --example loadgen >&2
fi
cp target/release/shipgate target/release/examples/flood target/release/examples/loadgen "$WORK/"

cat >"$WORK/row.py" <<'PY'
import json, sys
s, f, hwm, name = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if name == "none":
    flood = "none"
else:
    clients = name.replace(",", ", ")
    flood = "%s: %s connections; answers %s; closed unanswered %s" % (
        clients, format(f["connections"], ","), json.dumps(f["answers"]), format(f["closed_without_answer"], ","))
print("| %s | %s | %.1f | %s / %s | %.1f |" % (flood, format(round(s["rps"]), ","), s["p99_ms"], s["non2xx"], s["errors"], hwm / 1024))
PY
rows=()
for scenario in $SCENARIOS; do
    rm -f "$WORK"/s.db*
    DATABASE_URL="sqlite://$WORK/s.db" GITHUB_WEBHOOK_SECRET=$SECRET SHIPGATE_LISTEN=127.0.0.1:$PORT \
        RUST_LOG=error "$WORK/shipgate" serve >"$WORK/serve.log" 2>&1 &
    serve=$!
    PIDS+=("$serve")
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
    flood_json='{}'
    if [ "$scenario" != none ]; then
        "$WORK/flood" --addr 127.0.0.1:$PORT --mix "$scenario" --duration $((WARMUP + DURATION + 3)) >"$WORK/flood.out" &
        flood=$!
        PIDS+=("$flood")
        sleep "$WARMUP"
    fi
    log "$scenario: signed load, $CONNS connections, $DURATION s"
    signed=$("$WORK/loadgen" --url "http://127.0.0.1:$PORT/webhook" --secret $SECRET --connections "$CONNS" \
        --duration "$DURATION" --warmup 2 --payload ../shared/bench/payload.json | sed -n 's/^JSON //p')
    if [ "$scenario" != none ]; then
        wait "$flood" || true
        flood_json=$(sed -n 's/^JSON //p' "$WORK/flood.out")
    fi
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$serve/status")
    kill "$serve"; wait "$serve" 2>/dev/null || true
    rows+=("$(python3 "$WORK/row.py" "$signed" "$flood_json" "$hwm" "$scenario")")
    log "${rows[-1]}"
done

{
    echo "# The intake under an unsigned flood"
    echo
    echo "\`bench/flood.sh\` at $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo ' + uncommitted changes'), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores; SQLite, dry-run; signed load: $CONNS connections for $DURATION s (bench/loadgen.rs); the flood from $WARMUP s before it (bench/flood.rs). Limits: the App's defaults."
    echo
    echo "| unsigned flood (clients) | signed req/s | signed p99 ms | signed non-2xx / errors | peak RSS MB |"
    echo "|---|---:|---:|---:|---:|"
    printf '%s\n' "${rows[@]}"
} >"$OUT"
cat "$OUT"
