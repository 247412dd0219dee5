#!/usr/bin/env bash
# Ingest on a PostgreSQL history against an empty database, in interleaved pairs (issue 14, item 2).
#
#   bench/ingest_pairs.sh HISTORY_DB [ROUNDS]
#
# HISTORY_DB: a database on the local PostgreSQL that bench/history.rs filled (and bench/scale.sh
# may have measured). Each round vacuums and analyzes the inbox of both databases (this machine's
# PostgreSQL runs with autovacuum off; production keeps it on), starts `serve` on one with the
# start-up audit verification and figures pass off, posts signed deliveries for 10 s at 50
# connections, and reads its peak RSS; the empty database and the history alternate. The empty
# database is created here and dropped at the end. Needs target/release/{shipgate,examples/loadgen}.
# Prints one line per run: round, database, peak RSS, and loadgen's JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
HIST=${1:?usage: bench/ingest_pairs.sh HISTORY_DB [ROUNDS]}
ROUNDS=${2:-3}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
PORT=${PORT:-18777}
EMPTY=shipgate_pairs_empty
admin() { psql -X -q "$PG/test" "$@"; }
admin -c "DROP DATABASE IF EXISTS $EMPTY" -c "CREATE DATABASE $EMPTY"
DATABASE_URL=$PG/$EMPTY target/release/shipgate migrate >/dev/null
for round in $(seq "$ROUNDS"); do
    for db in "$EMPTY" "$HIST"; do
        psql -X -q "$PG/$db" -c "VACUUM ANALYZE deliveries, delivery_bodies"
        SHIPGATE_LISTEN=127.0.0.1:$PORT DATABASE_URL=$PG/$db GITHUB_WEBHOOK_SECRET=bench-secret-123 RUST_LOG=warn \
            SHIPGATE_AUDIT_VERIFY_SECS=0 SHIPGATE_FIGURES_REFRESH_MS=0 \
            SHIPGATE_AUDIT_KEY=test-audit-key-0123456789abcdef0123456789 \
            target/release/shipgate serve >"/tmp/ingest-pairs-$db.log" 2>&1 &
        pid=$!
        for _ in $(seq 600); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/readyz" && break; sleep 0.1; done
        out=$(target/release/examples/loadgen --url "http://127.0.0.1:$PORT/webhook" --secret bench-secret-123 \
            --connections 50 --duration 10 --warmup 2 --payload tests/fixtures/webhooks/issue_comment.created.0.json |
            sed -n 's/^JSON //p')
        hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
        kill "$pid"; wait "$pid" 2>/dev/null || true
        echo "round $round $db peak_rss_kb=$hwm deadlocks=$(grep -c 'deadlock detected' "/tmp/ingest-pairs-$db.log" || true) $out"
    done
done
admin -c "DROP DATABASE IF EXISTS $EMPTY"
