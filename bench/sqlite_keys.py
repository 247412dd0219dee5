#!/usr/bin/env python3
"""What a year's history costs SQLite's intake, and why (issue 14): the intake's write pattern
alone, on the App's own schema, without HTTP, the worker or sqlx.

    bench/sqlite_keys.py fill FILE [ROWS]     a new file, migrated (migrations/sqlite), with ROWS
                                              finished deliveries and their bodies [2,000,000]
    bench/sqlite_keys.py run FILE [SECS] [--ids random|ordered] [--hashes random|ordered]
                                              [--batch N] [--cache-kib N]

`run` stores deliveries of one subject for SECS seconds [8] as the intake does: one multi-row
`INSERT ... ON CONFLICT DO NOTHING RETURNING` per batch of 32 [--batch], the bodies' INSERT, a
commit with `synchronous = FULL` in WAL mode, and a PASSIVE checkpoint on a second connection
every 10 ms, as `ingest::checkpointer` does. It prints rows/s and the time per row of each step,
then deletes what it stored. `--ids`/`--hashes ordered` give the delivery ids / body hashes keys
that grow with time, so that each lands at the end of its unique index instead of at a random
place. Delivery ids are `random` by default, as GitHub's are in the index: a version-1 UUID's text
begins with the low bits of its time. (`bench/loadgen.rs` sends ids that share a prefix per run:
its id index takes 50 append points, like `--ids ordered`.) An empty file for comparison: `fill
FILE 0`. Python's own SQLite, not the App's bundled one; compare files with each other, not with
the App's req/s. Results: docs/benchmarks.md, bench/results/ingest-sqlite-keys-*.md.
"""

import argparse
import glob
import hashlib
import os
import sqlite3
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def connect(path, cache_kib=2000):
    c = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    c.executescript(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000; "
        f"PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 20000; PRAGMA cache_size = -{cache_kib};"
    )
    return c


def fill(path, rows):
    if os.path.exists(path):
        raise SystemExit(f"{path} exists: give a new file")
    c = connect(path)
    for f in sorted(glob.glob(os.path.join(ROOT, "migrations", "sqlite", "*.sql"))):
        with open(f) as sql:
            c.executescript(sql.read())
    c.executescript("PRAGMA synchronous = OFF; PRAGMA cache_size = -1000000;")
    # Chunks of 4,096 finished deliveries of 1,000 repositories and 20 installations, random
    # delivery ids and body hashes, then their bodies (2.2-3.8 KB, incompressible, as the LZ4 of a
    # real one), so that rows, indexes and bodies interleave in the file as the intake leaves them.
    chunk, t0, done = 4096, time.time(), 0
    while done < rows:
        n = min(chunk, rows - done)
        c.executescript(f"""
BEGIN;
WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < {n})
INSERT INTO deliveries (id, event, action, installation_id, repository, subject, received_at, body_sha256,
                        state, outcome, attempts, next_attempt_at, finished_at, blocked)
SELECT lower(hex(randomblob(16))), 'check_run', 'completed', abs(random()) % 20 + 1,
       'org/repo' || (abs(random()) % 1000), 'org/repo' || (abs(random()) % 1000) || '#' || (abs(random()) % 500),
       1700000000000 + ({done} + i) * 1000, lower(hex(randomblob(32))), 'done', 'ok', 1, 0,
       1700000000000 + ({done} + i) * 1000 + 200, 0
FROM r;
INSERT INTO delivery_bodies (seq, body, body_lz4)
SELECT seq, '', randomblob(2200 + abs(random()) % 1600) FROM deliveries
WHERE seq > (SELECT COALESCE(MAX(seq), 0) FROM delivery_bodies);
COMMIT;""")
        done += n
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    print(f"filled {path}: {rows} deliveries in {time.time() - t0:.0f} s, {os.path.getsize(path) / 1e9:.2f} GB")


def run(path, secs, ids, hashes, batch, cache_kib):
    w = connect(path, cache_kib)
    start = w.execute("SELECT COALESCE(MAX(seq), 0) FROM deliveries").fetchone()[0]
    stop = threading.Event()

    def checkpointer():
        r = connect(path)
        while not stop.is_set():
            r.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            time.sleep(0.010)

    th = threading.Thread(target=checkpointer)
    th.start()
    body = os.urandom(1500)
    first = (
        "(?, ?, ?, ?, ?, ?, ?, ?, CASE WHEN EXISTS (SELECT 1 FROM deliveries WHERE subject = ? "
        "AND state IN ('pending', 'running')) THEN 1 ELSE 0 END, 'pending', 0, ?)"
    )
    rest = "(?, ?, ?, ?, ?, ?, ?, ?, 1, 'pending', 0, ?)"
    steps, n, t0, k = [0.0, 0.0, 0.0], 0, time.perf_counter(), 0
    while time.perf_counter() - t0 < secs:
        params = []
        for i in range(batch):
            k += 1
            now = time.time_ns()
            rid = f"~{now:020d}{k:08d}" if ids == "ordered" else str(uuid.uuid4())
            sha = f"~{now:020d}{k:08d}" if hashes == "ordered" else hashlib.sha256(rid.encode() + b"%d" % k).hexdigest()
            params += [rid, "issue_comment", "created", 7, "o/r", "o/r#1", now // 1_000_000, sha]
            if i == 0:
                params.append("o/r#1")
            params.append(now // 1_000_000)
        sql = (
            "INSERT INTO deliveries (id, event, action, installation_id, repository, subject, received_at, "
            "body_sha256, blocked, state, attempts, next_attempt_at) VALUES "
            + ", ".join([first] + [rest] * (batch - 1))
            + " ON CONFLICT DO NOTHING RETURNING seq"
        )
        a = time.perf_counter()
        w.execute("BEGIN IMMEDIATE")
        seqs = w.execute(sql, params).fetchall()
        b = time.perf_counter()
        w.execute(
            "INSERT INTO delivery_bodies (seq, body, body_lz4) VALUES " + ", ".join(["(?, '', ?)"] * len(seqs)),
            [x for s in seqs for x in (s[0], body)],
        )
        c = time.perf_counter()
        w.execute("COMMIT")
        d = time.perf_counter()
        steps[0] += b - a
        steps[1] += c - b
        steps[2] += d - c
        n += len(seqs)
    elapsed = time.perf_counter() - t0
    stop.set()
    th.join()
    per = [s / max(n, 1) * 1e6 for s in steps]
    print(
        f"{os.path.basename(path)} ids={ids} hashes={hashes} batch={batch} cache={cache_kib}KiB: "
        f"{n / elapsed:.0f} rows/s; per row: insert {per[0]:.1f} us, bodies {per[1]:.1f} us, commit {per[2]:.1f} us"
    )
    w.execute(f"DELETE FROM deliveries WHERE seq > {start}")
    w.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fill")
    f.add_argument("file")
    f.add_argument("rows", nargs="?", type=int, default=2_000_000)
    r = sub.add_parser("run")
    r.add_argument("file")
    r.add_argument("secs", nargs="?", type=float, default=8.0)
    r.add_argument("--ids", choices=["random", "ordered"], default="random")
    r.add_argument("--hashes", choices=["random", "ordered"], default="random")
    r.add_argument("--batch", type=int, default=32)
    r.add_argument("--cache-kib", type=int, default=2000)
    a = p.parse_args()
    if a.cmd == "fill":
        fill(a.file, a.rows)
    else:
        run(a.file, a.secs, a.ids, a.hashes, a.batch, a.cache_kib)


if __name__ == "__main__":
    main()
