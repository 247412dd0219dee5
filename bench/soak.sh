#!/usr/bin/env bash
# The soak under faults (issue 15): two `shipgate serve` replicas on one private PostgreSQL for
# DURATION seconds under a steady signed load of real scenario events (deployment requests with
# their CI, approvals, holds, pushes, /deploy and deployment statuses; red then green CI on main
# and on PRs), against the tests' fake GitHub failing ERROR_RATE of its calls (500/502/503, a 502
# after the work was done, 429 with retry-after, a secondary-limit 403 with retry-after, a 403
# with x-ratelimit-remaining: 0). One replica is killed with `kill -9` every KILL_EVERY seconds
# (alternately) and started again; PostgreSQL is restarted once, at PG_RESTART_AT.
#
# Then, once the load has stopped and the queues have drained, it checks and prints as a table:
# every acknowledged delivery stored and processed exactly once, nothing doubled on the fake
# GitHub (comments, check runs, deployments, incident issues, state labels), `shipgate audit
# verify` intact, the kills and the restart done, the faults injected. Not run in CI.
#
# usage: bench/soak.sh [RESULTS.md]         (default bench/results/soak.md)
#
# The shared PostgreSQL server (127.0.0.1:5432) is never touched: a private one is made with
# initdb in a temporary directory (as the `postgres` user when run as root), on a free port, and
# deleted at the end (KEEP=1 keeps the directory, with the replicas' and PostgreSQL's logs; it is
# also kept when a check fails).
#
# Environment (all optional):
#   DURATION=600        seconds of load
#   KILL_EVERY=30       seconds between two `kill -9` (alternating replicas)
#   ERROR_RATE=0.2      share of the fake GitHub's answers that are injected faults
#   RPS=30              deliveries a second (scenario steps first, filler for the rest)
#   ACTIVE=24           scenarios under way at once
#   STEP_MS=1500        pause between two steps of one scenario (±50%)
#   INSTALLATIONS=8     installations (one repository each) the scenarios are spread over
#   SPACING_MS=100      SHIPGATE_MUTATION_SPACING_MS of the replicas (the App's default is 1000)
#   LEASE_SECS=10       SHIPGATE_LEASE_SECS of the replicas (a killed replica's claims expire)
#   PG_RESTART_AT=315   seconds into the load (default: half-way, between two kills)
#   PG_RESTART_MODE=immediate   pg_ctl restart -m fast | immediate (a crash and recovery)
#   DRAIN_TIMEOUT=900   seconds the queues may take to drain after the load
#   SEED=random         the fake's fault draws and the scenarios' choices
#   PG_PORT=free port   NO_BUILD=1 (use the binaries already built)   KEEP=1
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
OUT=${1:-bench/results/soak.md}
DURATION=${DURATION:-600}
KILL_EVERY=${KILL_EVERY:-30}
ERROR_RATE=${ERROR_RATE:-0.2}
RPS=${RPS:-30}
ACTIVE=${ACTIVE:-24}
STEP_MS=${STEP_MS:-1500}
INSTALLATIONS=${INSTALLATIONS:-8}
SPACING_MS=${SPACING_MS:-100}
LEASE_SECS=${LEASE_SECS:-10}
PG_RESTART_AT=${PG_RESTART_AT:-$((DURATION / 2 + KILL_EVERY / 2))}
PG_RESTART_MODE=${PG_RESTART_MODE:-immediate}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-900}
SEED=${SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
PG_PORT=${PG_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PGBIN/initdb" ] || { echo "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin" >&2; exit 2; }

if [ "${NO_BUILD:-0}" != 1 ]; then
    log "building (release)"
    nice cargo build --release --bin shipgate --example soak >&2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/shipgate-soak.XXXXXX")
chmod 755 "$WORK"
PGDATA=$WORK/pgdata
PGSOCK=$WORK/sock
mkdir -p "$PGSOCK" "$PGDATA"
chmod 700 "$PGDATA"
touch "$WORK/pg.log"
# initdb refuses to run as root: the private server then belongs to `postgres`.
if [ "$(id -u)" = 0 ]; then
    chown postgres "$PGSOCK" "$PGDATA" "$WORK/pg.log"
    AS_PG=(runuser -u postgres --)
else
    AS_PG=()
fi
PG_CTL=("${AS_PG[@]}" "$PGBIN/pg_ctl" -D "$PGDATA")
PG_STARTED=0
RESULT=2
cleanup() {
    if [ "$PG_STARTED" = 1 ]; then "${PG_CTL[@]}" stop -m immediate >/dev/null 2>&1 || true; fi
    if [ "${KEEP:-0}" = 1 ] || [ "$RESULT" != 0 ]; then
        log "kept $WORK (logs: replica-a.log, replica-b.log, pg.log, soak.log)"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

log "private PostgreSQL ($("$PGBIN/postgres" --version)) in $WORK on port $PG_PORT"
"${AS_PG[@]}" "$PGBIN/initdb" -D "$PGDATA" -U postgres -A trust --no-sync >"$WORK/initdb.log" 2>&1 \
    || { cat "$WORK/initdb.log" >&2; exit 2; }
"${PG_CTL[@]}" -l "$WORK/pg.log" -w -t 60 \
    -o "-p $PG_PORT -k $PGSOCK -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
PG_STARTED=1
"$PGBIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres soak
DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/soak"
# pg_ctl restart keeps the options the server was started with (postmaster.opts).
RESTART_CMD="${PG_CTL[*]} -l $WORK/pg.log -w -t 120 restart -m $PG_RESTART_MODE"

COMMAND="DURATION=$DURATION KILL_EVERY=$KILL_EVERY ERROR_RATE=$ERROR_RATE RPS=$RPS ACTIVE=$ACTIVE STEP_MS=$STEP_MS INSTALLATIONS=$INSTALLATIONS SPACING_MS=$SPACING_MS LEASE_SECS=$LEASE_SECS PG_RESTART_AT=$PG_RESTART_AT PG_RESTART_MODE=$PG_RESTART_MODE SEED=$SEED bench/soak.sh"
log "soak: $COMMAND"
STARTED=$(date -u +%Y-%m-%dT%H:%MZ)
set +e
target/release/examples/soak \
    --database-url "$DATABASE_URL" --bin target/release/shipgate --work "$WORK" \
    --duration "$DURATION" --kill-every "$KILL_EVERY" --error-rate "$ERROR_RATE" --rps "$RPS" \
    --active "$ACTIVE" --step-ms "$STEP_MS" --installations "$INSTALLATIONS" --spacing-ms "$SPACING_MS" \
    --lease-secs "$LEASE_SECS" --pg-restart-at "$PG_RESTART_AT" --pg-restart-cmd "$RESTART_CMD" \
    --drain-timeout "$DRAIN_TIMEOUT" --seed "$SEED" --out "$WORK/table.md" 2> >(tee "$WORK/soak.log" >&2)
RESULT=$?
set -e
[ -f "$WORK/table.md" ] || { log "the soak produced no table (exit $RESULT)"; exit "$RESULT"; }

{
    echo "# The soak under faults"
    echo
    echo "\`$COMMAND\` at $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo ' + uncommitted changes'), started $STARTED, $(nproc) cores (shared)."
    echo
    echo "Two \`shipgate serve\` replicas (release build) on one private PostgreSQL ($("$PGBIN/postgres" --version | awk '{print $3}')), GitHub App credentials pointing at the tests' fake GitHub (\`tests/fake_github\`) run as a server for the whole soak; $RPS signed deliveries a second, $ACTIVE scenarios under way at once over $INSTALLATIONS installations; the fake failing ${ERROR_RATE} of its answers; \`kill -9\` of one replica every ${KILL_EVERY} s, started again at once; \`pg_ctl restart -m $PG_RESTART_MODE\` at ${PG_RESTART_AT} s. Replicas: \`SHIPGATE_MUTATION_SPACING_MS=$SPACING_MS\`, \`SHIPGATE_LEASE_SECS=$LEASE_SECS\`, other settings the App's defaults."
    echo
    cat "$WORK/table.md"
} >"$OUT"
log "results in $OUT (exit $RESULT)"
exit "$RESULT"
