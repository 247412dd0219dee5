#!/usr/bin/env bash
# How fast can the databases alone store deliveries on this machine? (issue 2, docs/benchmarks.md)
#
# No HTTP, no signature, no worker, no shipgate: rows shaped like the intake's (a 3,100-byte
# incompressible body, as the benchmark payload compresses to, a random delivery id and body
# hash), committed durably in batches as the group commit does, into:
#   full  the real schema (every migration under migrations/), as shipgate stores a delivery
#   min   only what deduplication needs: a sequence, the unique delivery id, the unique body
#         hash, the body
#   log   the same table without the two unique indexes (an append-only log: no deduplication)
#
# SQLite: one writing connection (Python's sqlite3: executemany, a C loop running the one-row
# INSERT once per row, where shipgate sends one multi-row INSERT per batch), WAL,
# synchronous = FULL, a fresh file under target/, with its WAL checkpointed either as shipgate
# does it ("beside": a second connection runs a PASSIVE checkpoint every 10 ms, the writer's own
# only past 20,000 pages) or as SQLite does by default ("inline": the writer's commit checkpoints
# every 1,000 pages). PostgreSQL: pgbench, CLIENTS connections, each transaction one
# multi-row INSERT … ON CONFLICT DO NOTHING of BATCH rows, a fresh database on the local server.
# Rows/s is the storage's ceiling: shipgate's intake stores no faster than this, whatever its
# HTTP side does, and it shares the machine with the load generator besides. CPU µs/row is what
# the storage spends per row: SQLite, the Python process's CPU time during the inserts (both
# threads, Python's own per-row work included); PostgreSQL, the whole machine's busy time during
# the pgbench run (/proc/stat; pgbench, and the server making each row's id, hash and body,
# included) over the rows. Both are upper bounds of the storage's own cost.
# Each figure is the middle run by rows/s (for an even REPEAT, the lower of the two middle runs).
#
# usage: bench/ceiling.sh
# Environment: ROWS=100000 (SQLite rows per run), BATCHES="26 50", SCHEMAS="full min log",
#   CHECKPOINTS="beside inline" (SQLite),
#   REPEAT=3 (runs per figure, the median is printed), CLIENTS="4" DURATION=10 (pgbench),
#   PGPORT=5432 PGUSER=postgres PGADMIN_DB=test, SKIP_PG=1 (SQLite only)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROWS=${ROWS:-100000}
BATCHES=${BATCHES:-"26 50"}
SCHEMAS=${SCHEMAS:-"full min log"}
CHECKPOINTS=${CHECKPOINTS:-"beside inline"}
REPEAT=${REPEAT:-3}
CLIENTS=${CLIENTS:-4}
DURATION=${DURATION:-10}
PGPORT=${PGPORT:-5432}
PGUSER=${PGUSER:-postgres}
PGADMIN_DB=${PGADMIN_DB:-test}
mkdir -p "$REPO/target"
WORK=$(mktemp -d "$REPO/target/ceiling.XXXXXX")
PGDB=""
cleanup() {
    rm -rf "$WORK"
    if [ -n "$PGDB" ]; then
        psql -X -q -h 127.0.0.1 -p "$PGPORT" -U "$PGUSER" -d "$PGADMIN_DB" \
            -c "DROP DATABASE IF EXISTS \"$PGDB\" WITH (FORCE)" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

# median of "rows/s cpu" pairs, by rows/s: prints "rows/s cpu"
median() { sort -n | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}'; }
row() { # row DATABASE SCHEMA CHECKPOINTS BATCH RUN...   (each RUN "rows/s cpu")
    local db=$1 schema=$2 ck=$3 batch=$4; shift 4
    local m; m=$(printf '%s\n' "$@" | median)
    echo "| $db | $schema | $ck | $batch | ${m% *} | ${m#* } | $(printf '%s\n' "$@" | awk '{print $1}' | paste -sd' ') |"
}

echo "| database | schema | checkpoints | batch | rows/s (median of $REPEAT) | CPU µs/row | runs (rows/s) |"
echo "|---|---|---|---:|---:|---:|---|"

for ck in $CHECKPOINTS; do
for schema in $SCHEMAS; do
    for batch in $BATCHES; do
        runs=()
        for _ in $(seq "$REPEAT"); do
            runs+=("$(python3 - "$REPO/migrations/sqlite" "$WORK/s.db" "$schema" "$ROWS" "$batch" "$ck" <<'PY'
import hashlib, os, sqlite3, sys, threading, time, uuid
migrations, path, schema, n, batch, ck = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
for suffix in ("", "-wal", "-shm"):
    if os.path.exists(path + suffix):
        os.unlink(path + suffix)
c = sqlite3.connect(path, isolation_level=None)
for pragma in ("journal_mode = WAL", "synchronous = FULL", "temp_store = MEMORY"):
    c.execute("PRAGMA " + pragma)
if schema == "full":
    for f in sorted(os.listdir(migrations)):
        c.executescript(open(os.path.join(migrations, f)).read())
    # The row, then its body in delivery_bodies (migration 0018), as the intake stores them.
    sql = ("INSERT INTO deliveries (id, event, action, installation_id, repository, subject, received_at, "
           "body_sha256, blocked, state, attempts, next_attempt_at) VALUES (?, 'issue_comment', 'created', 1, "
           "'Codertocat/Hello-World', 'issue:Codertocat/Hello-World#1', ?, ?, 1, 'pending', 0, ?) "
           "ON CONFLICT DO NOTHING RETURNING seq")
    row = lambda i, u, h, b: (u, i, h, i)
else:
    unique = "UNIQUE" if schema == "min" else ""
    c.execute(f"CREATE TABLE d (seq INTEGER PRIMARY KEY, id TEXT NOT NULL {unique}, "
              f"body_sha256 TEXT NOT NULL {unique}, body BLOB NOT NULL)")
    sql = "INSERT INTO d (id, body_sha256, body) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
    row = lambda i, u, h, b: (u, h, b)
rows, bodies = [], []
for i in range(n):
    body = os.urandom(3100)
    rows.append(row(i, str(uuid.uuid4()), hashlib.sha256(body).hexdigest(), body))
    bodies.append(body)
def store(k):
    if schema != "full":
        c.executemany(sql, rows[k:k + batch])
        return
    for r, body in zip(rows[k:k + batch], bodies[k:k + batch]):
        seq = c.execute(sql, r).fetchone()
        if seq:
            c.execute("INSERT INTO delivery_bodies (seq, body, body_lz4) VALUES (?, '', ?)", (seq[0], body))
done = threading.Event()
def checkpointer():
    other = sqlite3.connect(path, isolation_level=None)
    while not done.wait(0.010):
        other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    other.close()
if ck == "beside":
    c.execute("PRAGMA wal_autocheckpoint = 20000")
    t = threading.Thread(target=checkpointer)
    t.start()
start, cpu = time.perf_counter(), time.process_time()
for k in range(0, n, batch):
    c.execute("BEGIN IMMEDIATE")
    store(k)
    c.execute("COMMIT")
elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
done.set()
if ck == "beside":
    t.join()
print(round(n / elapsed), round(cpu / n * 1e6))
c.close()
for suffix in ("", "-wal", "-shm"):
    if os.path.exists(path + suffix):
        os.unlink(path + suffix)
PY
)")
        done
        row SQLite "$schema" "$ck" "$batch" "${runs[@]}"
    done
done
done

[ -n "${SKIP_PG:-}" ] && exit 0
command -v pgbench >/dev/null || { echo "ceiling.sh: pgbench not found; PostgreSQL skipped (SKIP_PG=1 to silence)" >&2; exit 1; }
psql_db() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" -U "$PGUSER" -d "$1" "${@:2}"; }
for schema in $SCHEMAS; do
    for batch in $BATCHES; do
        runs=()
        for _ in $(seq "$REPEAT"); do
            PGDB="shipgate_ceiling_$$"
            psql_db "$PGADMIN_DB" -c "CREATE DATABASE \"$PGDB\"" >/dev/null
            # 1,000 incompressible 3,100-byte bodies to copy from (made before the clock starts).
            psql_db "$PGDB" -c "CREATE TABLE bodies (i INT PRIMARY KEY, body BYTEA NOT NULL); \
                INSERT INTO bodies SELECT i, (SELECT decode(string_agg(md5(random()::text || i || j), ''), 'hex') \
                FROM generate_series(1, 194) j) FROM generate_series(0, 999) i" >/dev/null
            body="(SELECT body FROM bodies WHERE i = (g * 37 + CAST(:r AS int)) % 1000)"
            hash="encode(sha256(random()::text::bytea), 'hex')"
            if [ "$schema" = full ]; then
                for f in "$REPO"/migrations/postgres/*.sql; do psql_db "$PGDB" -f "$f" >/dev/null; done
                # chr(58) is ':', which pgbench would read as a variable.
                # The rows, then their bodies in delivery_bodies (migration 0018), in one statement.
            insert="WITH d AS (INSERT INTO deliveries (id, event, action, installation_id, repository, subject, \
received_at, body_sha256, blocked, state, attempts, next_attempt_at) SELECT gen_random_uuid()::text, 'issue_comment', \
'created', 1, 'Codertocat/Hello-World', 'issue' || chr(58) || 'Codertocat/Hello-World#1', g, $hash, 1, \
'pending', 0, g FROM generate_series(1, $batch) g ON CONFLICT DO NOTHING RETURNING seq, received_at AS g) \
INSERT INTO delivery_bodies (seq, body, body_lz4) SELECT seq, '', $body FROM d;"
            else
                unique=$([ "$schema" = min ] && echo UNIQUE || true)
                psql_db "$PGDB" -c "CREATE TABLE d (seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL $unique, \
                    body_sha256 TEXT NOT NULL $unique, body BYTEA NOT NULL)" >/dev/null
                insert="INSERT INTO d (id, body_sha256, body) SELECT gen_random_uuid()::text, $hash, $body \
FROM generate_series(1, $batch) g ON CONFLICT DO NOTHING;"
            fi
            printf '\\set r random(0, 999)\n%s\n' "$insert" >"$WORK/pg.sql"
            busy0=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat)
            if ! pgbench -h 127.0.0.1 -p "$PGPORT" -U "$PGUSER" -n -M prepared -c "$CLIENTS" -j 2 -T "$DURATION" \
                -f "$WORK/pg.sql" "$PGDB" >"$WORK/pgbench.log" 2>&1; then
                echo "ceiling.sh: pgbench failed ($schema, batch $batch):" >&2
                tail -n 5 "$WORK/pgbench.log" >&2
                exit 1
            fi
            tps=$(awk '/^tps/ {print $3; exit}' "$WORK/pgbench.log")
            [ -n "$tps" ] || { echo "ceiling.sh: no tps in pgbench's output ($schema, batch $batch)" >&2; exit 1; }
            busy1=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat)
            hz=$(getconf CLK_TCK)
            runs+=("$(awk -v t="$tps" -v b="$batch" -v d="$DURATION" -v busy=$((busy1 - busy0)) -v hz="$hz" \
                'BEGIN {printf "%.0f %.0f", t * b, busy / hz / (t * b * d) * 1e6}')")
            psql_db "$PGADMIN_DB" -c "DROP DATABASE \"$PGDB\" WITH (FORCE)" >/dev/null
            PGDB=""
        done
        row "PostgreSQL ($CLIENTS clients)" "$schema" "—" "$batch" "${runs[@]}"
    done
done
