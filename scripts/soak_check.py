#!/usr/bin/env python3
"""soak_check.py -- helper of scripts/soak.sh (psycopg 3, stdlib).

    soak_check.py cancel --dsn DSN --until EPOCH --out FILE

Until EPOCH (less the longest query), repeatedly: connect (timed, not part
of the cancel measurement), run `SELECT pg_sleep(SLEEP)`, cancel it with
Connection.cancel() (a CancelRequest to Sluice) AFTER seconds after the
query was sent, and again every RETRY seconds while it still runs; then
check that the connection still works (`SELECT 1`).  One tab-separated line
per attempt is appended to FILE:

    n  start  end  outcome  elapsed_s  connect_s  cancels_sent  message

outcome:
    ok             QueryCanceled after the first cancel, the session usable
    retry          QueryCanceled, but only after a repeated cancel (the first
                   found no running query, e.g. the client was still queued
                   for a server)
    not-cancelled  the query ran to completion despite every cancel
    slow           QueryCanceled, but OK_WITHIN seconds or more after the
                   query was sent
    error          another error (message: SQLSTATE and text)
    broken         canceled, but `SELECT 1` afterwards failed
    connect        the connection failed
"""
import argparse
import sys
import threading
import time

import psycopg
from psycopg import errors


def one(dsn, a):
    """One attempt: (outcome, elapsed, connect_s, cancels, message)."""
    t0 = time.time()
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
    except psycopg.Error as e:
        return "connect", time.time() - t0, time.time() - t0, 0, str(e).strip()
    connect_s = time.time() - t0
    sent = [0]
    done = threading.Event()

    def canceller():
        wait = a.after
        while not done.wait(wait):
            try:
                conn.cancel()
            except psycopg.Error:
                pass
            sent[0] += 1
            wait = a.retry

    try:
        with conn:
            th = threading.Thread(target=canceller, daemon=True)
            q0 = time.time()
            th.start()
            outcome, msg = None, ""
            try:
                conn.execute(f"SELECT pg_sleep({a.sleep})")
                outcome = "not-cancelled"
            except errors.QueryCanceled as e:
                outcome = "ok" if sent[0] <= 1 else "retry"
                msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            except psycopg.Error as e:
                outcome = "error"
                msg = f"{getattr(e, 'sqlstate', None) or '-'} {str(e).strip()}"
            finally:
                done.set()
                th.join()
            elapsed = time.time() - q0
            if outcome in ("ok", "retry"):
                if elapsed >= a.ok_within:
                    outcome = "slow"
                try:
                    if conn.execute("SELECT 1").fetchone()[0] != 1:
                        raise RuntimeError("SELECT 1 returned something else")
                except (psycopg.Error, RuntimeError) as e:
                    outcome, msg = "broken", f"SELECT 1 after the cancel: {str(e).strip()}"
            return outcome, elapsed, connect_s, sent[0], msg
    except psycopg.Error as e:   # closing the connection failed
        return "error", time.time() - t0, connect_s, sent[0], str(e).strip()


def cmd_cancel(a):
    n = 0
    with open(a.out, "a", buffering=1) as out:
        while time.time() < a.until - (a.sleep + 2):
            n += 1
            start = time.time()
            outcome, elapsed, connect_s, sent, msg = one(a.dsn, a)
            msg = " ".join(msg.split())[:300]
            out.write(f"{n}\t{start:.3f}\t{time.time():.3f}\t{outcome}\t{elapsed:.2f}"
                      f"\t{connect_s:.2f}\t{sent}\t{msg}\n")
            time.sleep(a.pause)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cancel")
    c.add_argument("--dsn", required=True)
    c.add_argument("--until", type=float, required=True, help="stop at this epoch time")
    c.add_argument("--out", required=True)
    c.add_argument("--after", type=float, default=0.5, help="first cancel, s after the query")
    c.add_argument("--retry", type=float, default=1.0, help="repeat the cancel every RETRY s")
    c.add_argument("--sleep", type=float, default=5.0, help="pg_sleep() of the query")
    c.add_argument("--ok-within", type=float, default=4.0)
    c.add_argument("--pause", type=float, default=1.0, help="s between attempts")
    a = p.parse_args()
    if a.cmd == "cancel":
        cmd_cancel(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
