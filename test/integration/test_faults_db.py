"""test_faults_db.py -- database faults behind Sluice (the hardening issue:
"a pooler exists to keep the application tier alive while the database has
trouble").

Each test injects one fault into the PostgreSQL cluster Sluice pools for and
asserts:
  * what the affected client sees (SQLSTATE, message, within which time);
  * that Sluice stays responsive (the console answers SHOW POOLS throughout:
    Watch.sample/hold), quiet (CPU time and log growth bounded: no login storm)
    and bounded in memory (Watch.check);
  * that another pool on a healthy path keeps working where one exists;
  * that service resumes by itself, SHOW POOLS matching pg_stat_activity
    afterwards (pools_match_pg).

Faults: database down at start (TCP refused [D3]; unix socket missing [D1]),
stopped mid-run (fast and immediate), restarted under pgbench load, frozen
(SIGSTOP), max_connections exhausted, and backends killed with
pg_terminate_backend while idle in the pool, mid-query, mid-COPY and in the
middle of an extended-protocol exchange or a psycopg pipeline.

The "other" pool in these tests is Sluice's database `postgres` (PostgreSQL's
database postgres, user app): pools_match_pg compares Sluice's pool for
(db, user) with pg_stat_activity rows of the same (db, user), so the two
pools must not share a database.

Every test records its figures with record_fault(); with FAULT_REPORT=FILE
set they are appended to FILE as JSON lines (the lead's report table).
"""

import os
import re
import select
import subprocess
import time

import psycopg
import pytest

from faultproxy import FaultProxy
from pgwire import message
from rawpg import Bg, Wire, seen, wire_query
from sluicetest import (LogMark, Watch, assert_quiet_log, cfg_with_other, free_port, other_works,
                        pools_match_pg, record_fault, recover, sqlstate_of, wait_until)

pytestmark = pytest.mark.fault


# ---------------------------------------------------------------------------
# Database down at start

def _down_at_start(request, sluice, pg, conninfo, make_reachable, name, bound):
    """Common body: clients of a database that cannot be reached get a
    bounded error while Sluice stays alive and quiet over a 10 s outage;
    then make_reachable() and service resumes by itself.  Returns the two
    clients' Outcomes."""
    s = sluice(cfg_with_other(pg, conninfo, query_wait_timeout=5))
    other_works(s)
    w = Watch(s)
    mark = LogMark(s)

    def alive_and_other_works():
        assert s.alive(), f"Sluice died during the outage: {s.tail()}"
        other_works(s)
    t0 = time.monotonic()
    outcomes = []
    for i in range(2):  # one at the start of the outage, one later in it
        c = Bg(lambda: wire_query(s, "SELECT 1"), f"client {i + 1}")
        w.hold_while(c, bound + 7, also=alive_and_other_works)
        c.finish(0.5, f"client {i + 1} of the unreachable database")
        outcomes.append(c.result)
    w.hold(max(0.0, 10.0 - (time.monotonic() - t0)))
    assert s.alive(), f"Sluice died during the outage: {s.tail()}"
    figures = w.check(max_cpu=1.0)
    nlog = assert_quiet_log(mark, 30, "a 10 s outage with server_login_retry = 1")
    other_works(s)
    for o in outcomes:
        assert not o.ok and o.errors, f"a client of an unreachable database got {o!r}"
        assert o.elapsed <= bound + 7, f"error only after {o.elapsed}s"

    make_reachable()
    rec = recover(s)
    pools_match_pg(s, pg)
    pools_match_pg(s, pg, db="postgres")
    record_fault(request, name, client1=seen(outcomes[0]), client1_s=outcomes[0].elapsed,
                 client2=seen(outcomes[1]), client2_s=outcomes[1].elapsed, recovery_s=rec,
                 log_lines=nlog, **figures)
    return outcomes


def test_db_refused_at_start(request, sluice, pg):
    """[D3] The database's TCP port refuses connections from the start;
    query_wait_timeout = 5: a client gets 57P03 after ~5 s, the message
    naming query_wait_timeout and the last login error (connection refused).
    Then something listens on the port again: service resumes."""
    port = free_port()
    conninfo = f"host=127.0.0.1 port={port} dbname=app user=app password=app_pw"
    made = []

    def reachable():
        made.append(FaultProxy("127.0.0.1", pg.port, listen_host="127.0.0.1", port=port).start())
    try:
        outcomes = _down_at_start(request, sluice, pg, conninfo, reachable,
                                  "db refused at start (TCP)", bound=5)
    finally:
        for p in made:
            p.stop()
    for o in outcomes:
        assert o.state == "57P03", f"expected 57P03 from query_wait_timeout, got {o!r}"
        assert "query_wait_timeout" in o.msg, o.msg
        assert "refused" in o.msg.lower(), f"the last login error is not in the message: {o.msg}"
        assert 4.0 <= o.elapsed <= 12.0, f"error after {o.elapsed}s, query_wait_timeout is 5 s"


def test_db_socket_missing_at_start(request, sluice, pg, tdir):
    """[D1] The database is behind a unix socket that does not exist (host =
    an empty directory): the failed login must feed server_login_retry like
    any other; the client gets an error within a bound (57P03 from
    query_wait_timeout, or the login error); Sluice stays alive, quiet and
    small over 10 s.  Then the socket appears (a symlink to the cluster's):
    service resumes."""
    empty = tdir / "nosock"
    empty.mkdir()
    conninfo = f"host={empty} port={pg.port} dbname=app user=app"

    def reachable():
        os.symlink(f"{pg.sock}/.s.PGSQL.{pg.port}", empty / f".s.PGSQL.{pg.port}")
    outcomes = _down_at_start(request, sluice, pg, conninfo, reachable,
                              "db unix socket missing at start", bound=5)
    for o in outcomes:
        assert o.state in ("57P03", "08006"), f"unexpected error {o!r}"
        if o.state == "57P03":
            assert "query_wait_timeout" in o.msg, o.msg
        assert o.elapsed <= 12.0, f"error after {o.elapsed}s, query_wait_timeout is 5 s"


# ---------------------------------------------------------------------------
# Database stopped mid-run

@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_db_stopped_mid_run(request, sluice, pg, mode):
    """pg_ctl stop -m MODE with a client mid-query, one idle in a transaction
    and one idle between transactions; the database stays down ~11 s.
    Mid-query / in-transaction clients get the server's error (57P01) or
    08006; the idle client's next query, during the outage, gets 57P03 after
    query_wait_timeout (10 s), naming the login error; a client that asks
    late in the outage is served once the database is back."""
    s = sluice(cfg_with_other(pg, query_wait_timeout=10))
    idle = Wire(s)
    assert idle.query("SELECT 1").ok
    intx = Wire(s)
    assert intx.query("BEGIN; SELECT 1").ok       # an open transaction holds a server
    busy_c = Wire(s)
    busy = Bg(lambda: busy_c.query("SELECT pg_sleep(60)"), "mid-query client")
    wait_until(lambda: pg.active_queries("SELECT pg_sleep(60)") == 1, timeout=15,
               what="the pg_sleep to run")
    assert pools_match_pg(s, pg) == 2
    w = Watch(s)
    mark = LogMark(s)
    pg.stop(mode)
    assert not pg.is_up()
    t_down = time.monotonic()

    busy.finish(10, "the mid-query client")
    ob = busy.result
    expected = {"57P01"} if mode == "fast" else {"57P01", "57P02", "08006"}
    assert ob.state in expected, f"mid-query client: {ob!r}"
    assert ob.end == "CLOSED", ob
    oi = intx.query("SELECT 2")
    assert oi.state in {"57P01", "57P02", "08006"}, f"client idle in transaction: {oi!r}"
    assert oi.elapsed < 5, oi

    idle_q = Bg(lambda: idle.query("SELECT 'idle'"), "idle client")
    w.hold_while(idle_q, 20)
    idle_q.finish(0.5, "the idle client's query during the outage")
    oq = idle_q.result
    assert oq.state == "57P03", f"idle client's query with the db down: {oq!r}"
    assert "query_wait_timeout" in oq.msg, oq.msg
    assert 9.0 <= oq.elapsed <= 16.0, f"57P03 after {oq.elapsed}s (query_wait_timeout 10)"

    # A client late in the outage waits (query_wait_timeout 10 s) and is
    # served once the database is back (its start takes a few seconds).
    late = Bg(lambda: wire_query(s, "SELECT 'late'"), "late client")
    w.hold(1.0, every=0.5)
    assert late.is_alive(), f"late client finished while the db was down: {late.result!r}"
    outage = time.monotonic() - t_down
    figures = w.check(max_cpu=1.0)
    nlog = assert_quiet_log(mark, 40, "the outage")
    t_up = time.monotonic()
    pg.ensure_up()
    start_s = time.monotonic() - t_up
    late.finish(20, "the late client after the restart")
    assert late.result.ok and late.result.rows == [["late"]], \
        f"late client (database start took {start_s:.1f}s): {late.result!r}"
    served_after = time.monotonic() - t_up
    rec = recover(s)
    other_works(s)
    pools_match_pg(s, pg)
    pools_match_pg(s, pg, db="postgres")
    for c in (idle, intx, busy_c):
        c.close()
    record_fault(request, f"db stop -m {mode} mid-run", mid_query=seen(ob), in_tx=seen(oi),
                 idle_next_query=seen(oq), idle_wait_s=oq.elapsed, late_client="ok",
                 late_wait_s=late.result.elapsed, pg_start_s=round(start_s, 2),
                 late_served_after_up_s=round(served_after, 2), outage_s=round(outage, 1),
                 recovery_s=rec, log_lines=nlog, **figures)


# ---------------------------------------------------------------------------
# Restart under pgbench load

PROGRESS_RE = re.compile(r"progress: ([\d.]+) s, ([\d.]+) tps")


@pytest.mark.slow
def test_db_restart_under_pgbench(request, sluice, pg):
    """pgbench -c 16 through a pool of 4 (transaction pooling); the database
    is stopped (fast) and started again.  At most the 4 clients that were
    mid-transaction get an error (57P01 / server connection lost); the other
    clients wait and resume: transactions flow again after the restart."""
    init = subprocess.run(["pgbench", "-i", "-q", "-s", "1", "-h", pg.sock, "-p", str(pg.port),
                           "-U", "app", "app"], capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    try:
        s = sluice(cfg_with_other(pg, query_wait_timeout=30, max_client_conn=100))
        duration = 22
        bench = subprocess.Popen(["pgbench", "-n", "-c", "16", "-j", "2", "-T", str(duration),
                                  "-P", "1", "-h", "127.0.0.1", "-p", str(s.port), "-U", "app", "app"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        t_start = time.monotonic()
        try:
            wait_until(lambda: s.pool()["sv_active"] >= 1 and s.pool()["cl_waiting"] >= 1,
                       timeout=15, what="pgbench to load the pool")
            time.sleep(3)
            w = Watch(s)
            t_stop = time.monotonic()
            pg.stop("fast")
            w.hold(2, every=0.5)
            waiting = s.pool()["cl_waiting"]
            figures = w.check(max_cpu=1.0)
            pg.ensure_up()
            t_up = time.monotonic()
            out, err = bench.communicate(timeout=duration + 60)
        finally:
            if bench.poll() is None:
                bench.kill()
                bench.wait()
        stop_at, up_at = t_stop - t_start, t_up - t_start
        progress = [(float(a), float(b)) for a, b in PROGRESS_RE.findall(err + out)]
        aborted = sorted({int(n) for n in re.findall(r"client (\d+) (?:script \d+ )?aborted", err)})
        before = [tps for t, tps in progress if t <= stop_at - 1]
        after = [tps for t, tps in progress if t >= up_at + 3]
        assert before and max(before) > 0, f"no load before the stop: {progress}"
        assert waiting >= 8, f"only {waiting} clients were queued while the db was down"
        assert after and max(after) > 0, \
            f"no transactions after the restart (stop at {stop_at:.1f}s, up at {up_at:.1f}s): " \
            f"{progress}\n{err[-2000:]}"
        assert len(aborted) <= 4, \
            f"{len(aborted)} pgbench clients aborted (pool size 4): {aborted}\n{err[-3000:]}"
        reason = re.search(r"terminating connection[^\n]*|server connection lost[^\n]*|"
                           r"server closed the connection[^\n]*", err)
        if aborted:
            assert reason, f"aborted clients without a server error:\n{err[-3000:]}"
        m = re.search(r"number of transactions actually processed: (\d+)", out)
        assert m and int(m.group(1)) > 0, out
        rec = recover(s)
        pools_match_pg(s, pg)
        record_fault(request, "db restart under pgbench -c 16, pool 4",
                     aborted_clients=len(aborted),
                     aborted_error=reason.group(0)[:120] if aborted else "",
                     queued_during_outage=waiting, tps_before=max(before), tps_after=max(after),
                     outage_s=round(t_up - t_stop, 1), xacts=int(m.group(1)), recovery_s=rec,
                     **figures)
    finally:
        pg.query("DROP TABLE IF EXISTS pgbench_accounts, pgbench_branches, pgbench_tellers, "
                 "pgbench_history", db="app")


# ---------------------------------------------------------------------------
# Database frozen (SIGSTOP)

def test_db_frozen(request, sluice, pg):
    """The whole cluster is SIGSTOPped for 10 s.  Through a Sluice with
    query_timeout = 3 a query gets 57014 ("query_timeout: ...") after ~3 s;
    through one with query_timeout = 0 the query waits and completes after
    the thaw.  Both Sluices stay responsive and quiet; afterwards all works."""
    a = sluice(cfg_with_other(pg, query_timeout=3, query_wait_timeout=6), name="qt3")
    b = sluice({"pool_mode": "transaction", "query_timeout": 0, "query_wait_timeout": 30,
                "databases": [{"name": "template1", "conninfo": pg.conninfo("template1", "app")}]},
               name="qt0")
    ca = Wire(a)
    cb = Wire(b, db="template1")
    assert ca.query("SELECT 1").ok and cb.query("SELECT 1").ok
    wa, wb = Watch(a), Watch(b)
    ma, mb = LogMark(a), LogMark(b)
    try:
        pg.freeze()
        t0 = time.monotonic()
        qa = Bg(lambda: ca.query("SELECT 'a'"), "client of qt3")
        qb = Bg(lambda: cb.query("SELECT 'b'"), "client of qt0")
        while time.monotonic() - t0 < 10:
            wa.sample()
            wb.sample()
            time.sleep(0.5)
        assert not qa.is_alive(), "query_timeout = 3 did not end the query within 10 s"
        assert qb.is_alive(), f"the client with query_timeout = 0 did not wait: {qb.result!r}"
        fa = wa.check(max_cpu=1.0)
        fb = wb.check(max_cpu=1.0)
    finally:
        pg.thaw()
    t_thaw = time.monotonic()
    qb.finish(20, "the waiting client after the thaw")
    waited_after_thaw = time.monotonic() - t_thaw
    assert qb.result.ok and qb.result.rows == [["b"]], f"qt0 client: {qb.result!r}"
    oa = qa.result
    assert oa.state == "57014", f"qt3 client: {oa!r}"
    assert "query_timeout" in oa.msg, oa.msg
    assert 2.5 <= oa.elapsed <= 8.0, f"query_timeout 3 s ended the query after {oa.elapsed}s"
    nlog = assert_quiet_log(ma, 40, "a 10 s freeze") + assert_quiet_log(mb, 40, "a 10 s freeze")
    rec = recover(a)
    assert cb.query("SELECT 'b2'").rows == [["b2"]]
    other_works(a)
    pools_match_pg(a, pg)
    pools_match_pg(b, pg, db="template1")
    ca.close()
    cb.close()
    record_fault(request, "db frozen 10 s", qt3_client=seen(oa), qt3_s=oa.elapsed,
                 qt0_client="ok (waited)", qt0_s=qb.result.elapsed,
                 qt0_after_thaw_s=round(waited_after_thaw, 2), recovery_s=rec, log_lines=nlog,
                 **{f"qt3_{k}": v for k, v in fa.items()}, **{f"qt0_{k}": v for k, v in fb.items()})


# ---------------------------------------------------------------------------
# max_connections exhausted

def test_db_max_connections_exhausted(request, sluice, pg):
    """Every connection slot of the cluster (max_connections = 20, no
    superuser reserve) is held by direct non-superuser connections, so
    Sluice's new backend logins fail with 53300 "too many clients".  A client
    of the pool that needs a new server gets a clear error (57P03 naming the
    login error, within query_wait_timeout); the pool that already has a
    server keeps working; when slots free up service resumes."""
    holders = []
    try:
        pg.query("ALTER SYSTEM SET max_connections = 20")
        pg.query("ALTER SYSTEM SET superuser_reserved_connections = 0")
        pg.restart()
        s = sluice(cfg_with_other(pg, query_wait_timeout=5))
        other_works(s)                              # the healthy pool has a server
        refused = None
        for _ in range(40):
            try:
                holders.append(psycopg.connect(host=pg.sock, port=pg.port, dbname="template1",
                                               user="app", autocommit=True, connect_timeout=10))
            except psycopg.OperationalError as e:
                refused = e
                break
        assert refused is not None and "too many clients" in str(refused), \
            f"could not exhaust the slots ({len(holders)} held): {refused}"
        w = Watch(s)
        mark = LogMark(s)
        c = Bg(lambda: wire_query(s, "SELECT 1"), "client needing a new server")
        w.hold_while(c, 15, also=lambda: other_works(s))
        c.finish(0.5, "the client needing a new server")
        figures = w.check(max_cpu=1.0)
        nlog = assert_quiet_log(mark, 40, "slot exhaustion")
        o = c.result
        assert o.state in ("57P03", "53300"), f"client with no free slot: {o!r}"
        assert "too many clients" in o.msg, f"the client is not told why: {o.msg}"
        assert o.elapsed <= 12.0, f"error after {o.elapsed}s (query_wait_timeout 5)"
        held = len(holders)
        for h in holders:
            h.close()
        holders.clear()
        rec = recover(s)
        other_works(s)
        pools_match_pg(s, pg)
        pools_match_pg(s, pg, db="postgres")
        record_fault(request, "max_connections exhausted", held=held, client=seen(o),
                     client_s=o.elapsed, recovery_s=rec, log_lines=nlog, **figures)
    finally:
        for h in holders:
            h.close()
        pg.ensure_up()
        pg.query("ALTER SYSTEM RESET max_connections")
        pg.query("ALTER SYSTEM RESET superuser_reserved_connections")
        pg.restart()
        assert pg.scalar("SHOW max_connections") != "20"


# ---------------------------------------------------------------------------
# Backends killed with pg_terminate_backend

def _terminate(pg, pid):
    """pg_terminate_backend, waiting (up to 10 s) until the backend is gone."""
    assert pg.scalar("SELECT pg_terminate_backend(%s, 10000)", [pid]) is True


def test_terminate_idle_in_pool(request, sluice, pg):
    """Idle servers in the pool are killed one after the other; the next
    client, right after each kill, is never handed the dead server."""
    s = sluice(cfg_with_other(pg))
    w = Watch(s)
    mark = LogMark(s)
    times = []
    for i in range(5):
        pid = s.scalar("SELECT pg_backend_pid()")
        wait_until(lambda: s.pool()["sv_idle"] >= 1, what="the server to be idle")
        _terminate(pg, pid)
        o = wire_query(s, "SELECT pg_backend_pid()")
        assert o.ok, f"round {i}: the next client got a dead server: {o!r}"
        assert int(o.rows[0][0]) != pid
        times.append(o.elapsed)
        w.sample()
    figures = w.check(max_cpu=1.0)
    pools_match_pg(s, pg)
    record_fault(request, "backend terminated idle in pool (x5)", next_client="ok",
                 next_client_max_s=max(times), log_lines=len(mark.server_lines()), **figures)


def test_terminate_mid_query(request, sluice, pg):
    """A backend is killed while its client's query runs: that client gets
    57P01 (admin shutdown); a client in a transaction on another server is
    unaffected; the next transaction works."""
    s = sluice(cfg_with_other(pg))
    other = s.connect(autocommit=False)
    other.execute("CREATE TEMP TABLE keep (a int)")
    other.execute("INSERT INTO keep VALUES (1)")
    victim = Wire(s)
    q = Bg(lambda: victim.query("SELECT pg_sleep(60)"), "victim")
    wait_until(lambda: pg.active_queries("SELECT pg_sleep(60)") == 1, timeout=15,
               what="the pg_sleep to run")
    pid = pg.scalar("SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'")
    w = Watch(s)
    t = time.monotonic()
    _terminate(pg, pid)
    q.finish(10, "the client whose backend was killed")
    elapsed = time.monotonic() - t
    o = q.result
    assert o.state == "57P01", f"victim: {o!r}"
    assert "terminating connection" in o.msg, o.msg
    assert o.end == "CLOSED", o
    w.sample()
    other.execute("INSERT INTO keep VALUES (2)")
    assert other.execute("SELECT count(*) FROM keep").fetchone() == (2,)
    other.commit()
    rec = recover(s)
    figures = w.check(max_cpu=1.0)
    victim.close()
    other.close()
    pools_match_pg(s, pg)
    record_fault(request, "backend terminated mid-query", client=seen(o),
                 client_s=round(elapsed, 2), other_client="unaffected", recovery_s=rec, **figures)


def test_terminate_mid_copy(request, sluice, pg):
    """A backend is killed while its client streams COPY FROM STDIN: the
    client gets the error (57P01 or 08006) instead of hanging; the next
    transaction works."""
    s = sluice(cfg_with_other(pg))
    c = Wire(s)
    o = c.query("BEGIN; CREATE TEMP TABLE ft (a int, b text) ON COMMIT DROP; SELECT pg_backend_pid()")
    assert o.ok, o
    pid = int(o.rows[0][0])
    assert c.query("COPY ft FROM STDIN").end == "G"
    chunk = message(b"d", b"".join(b"%d\t%s\n" % (i, b"x" * 200) for i in range(100)))
    for _ in range(20):
        c.c.send(chunk)
    wait_until(lambda: pg.active_queries("COPY ft FROM STDIN") == 1, what="COPY to be in progress")
    w = Watch(s)
    _terminate(pg, pid)
    t = time.monotonic()
    sent = 20
    while time.monotonic() - t < 15:
        readable, _, _ = select.select([c.c.sock], [], [], 0.02)
        if readable:
            break
        try:
            c.c.send(chunk)
            sent += 1
        except OSError:
            break
    o = c.read()
    elapsed = time.monotonic() - t
    c.close()
    assert o.state in ("57P01", "08006"), f"mid-COPY client: {o!r} ({sent} chunks sent)"
    assert o.end == "CLOSED", o
    assert elapsed < 10, f"error only after {elapsed:.1f}s"
    w.sample()
    rec = recover(s)
    figures = w.check(max_cpu=1.0)
    pools_match_pg(s, pg)
    record_fault(request, "backend terminated mid-COPY", client=seen(o),
                 client_s=round(elapsed, 2), chunks_sent=sent, recovery_s=rec, **figures)


def test_terminate_between_bind_and_sync(request, sluice, pg):
    """A backend is killed in the middle of an extended-protocol exchange
    (Parse, Bind and Flush sent and answered, no Sync yet).  The client's
    Execute + Sync then gets the server's error (57P01) or 08006 and the
    connection ends -- no row, no hang; the next client works."""
    s = sluice(cfg_with_other(pg, default_pool_size=1))
    assert s.scalar("SELECT 1") == 1
    [pid] = pg.backend_pids()
    c = Wire(s)
    c.c.send(message(b"P", b"\0SELECT 'x'\0" + b"\0\0") +
             message(b"B", b"\0\0" + b"\0\0" + b"\0\0" + b"\0\0") + message(b"H"))
    assert c.c.read_msg()[0] == "1"
    assert c.c.read_msg()[0] == "2"
    w = Watch(s)
    _terminate(pg, pid)
    t = time.monotonic()
    try:
        c.c.send(message(b"E", b"\0" + b"\0\0\0\0") + message(b"S"))
    except OSError:
        pass
    o = c.read()
    elapsed = time.monotonic() - t
    c.close()
    assert not o.rows, f"a row came from a dead backend: {o!r}"
    assert o.state in ("57P01", "08006"), f"no error after the backend died: {o!r}"
    assert o.end == "CLOSED", o
    w.sample()
    rec = recover(s)
    figures = w.check(max_cpu=1.0)
    pools_match_pg(s, pg)
    record_fault(request, "backend terminated between Bind and Sync", client=seen(o),
                 client_s=round(elapsed, 2), recovery_s=rec, **figures)


def test_terminate_in_pipeline(request, sluice, pg):
    """A backend is killed while a psycopg pipeline runs (three queries sent,
    the second sleeping): the pipeline raises 57P01 or 08006 instead of
    hanging; the next client works."""
    s = sluice(cfg_with_other(pg, default_pool_size=1))
    assert s.scalar("SELECT 1") == 1
    [pid] = pg.backend_pids()
    conn = s.connect()
    w = Watch(s)

    def run():
        with conn.pipeline() as p:
            cur = conn.cursor()
            cur.execute("SELECT 1")
            cur.execute("SELECT pg_sleep(60)")
            cur.execute("SELECT 3")
            p.sync()
            return cur.fetchall()
    q = Bg(run, "pipeline")
    wait_until(lambda: pg.active_queries("SELECT pg_sleep(60)") == 1, timeout=15,
               what="the pipeline's pg_sleep to run")
    _terminate(pg, pid)
    t = time.monotonic()
    q.finish(10, "the pipeline whose backend was killed")
    elapsed = time.monotonic() - t
    assert isinstance(q.error, psycopg.Error), f"pipeline got {q.result!r}"
    assert sqlstate_of(q.error) in ("57P01", "08006"), f"pipeline: {seen(q.error)}"
    conn.close()
    w.sample()
    rec = recover(s)
    figures = w.check(max_cpu=1.0)
    pools_match_pg(s, pg)
    record_fault(request, "backend terminated in a psycopg pipeline", client=seen(q.error),
                 client_s=round(elapsed, 2), recovery_s=rec, **figures)
