"""test_faults_net.py -- network faults between Sluice and PostgreSQL.

Sluice's database `app` is reached over TCP through the fault proxy
(faultproxy.py: conninfo host=127.0.0.1 port=<proxy> password=app_pw); its
database `postgres` goes straight to the cluster's unix socket and is the
healthy pool that must keep working during every fault.

Faults: a blackhole while servers sit idle in the pool (10 s, the whole
link), a blackhole of the idle servers' connections only (new connections
work: stale servers), a blackhole mid-query (10 s; query_timeout ends the
client), a TCP reset while a large result streams, the connection cut inside
a message (cut_after N bytes while a result streams), a slow link (delay and
throttle), and new connections refused for a while.

Each test asserts what the affected client sees (SQLSTATE, message, within
which time, read with a raw protocol client so the SQLSTATE of a FATAL error
is visible), that Sluice stays responsive, quiet and bounded in memory
(Watch), that the healthy pool works throughout, and that service resumes by
itself with SHOW POOLS matching pg_stat_activity (pools_match_pg).

A caveat of the harness: the fault proxy is a user-space process, so its
kernel keeps acknowledging whatever Sluice sends into a "blackhole"; TCP
keepalive and tcp_user_timeout therefore cannot fire there (they would on a
real dropped path).  What Sluice can use is its own timers: query_timeout,
query_wait_timeout, server_connect_timeout, server_check_delay.

Helpers: Wire, Outcome, Bg and warm come from rawpg.py; Watch, LogMark,
cfg_with_other, record_fault, ... from sluicetest.py.
"""

import time

import pytest

from rawpg import Bg, Wire, seen, warm, wire_query
from sluicetest import (LogMark, Watch, assert_quiet_log, cfg_with_other, other_works,
                        pools_match_pg, record_fault, recover, wait_until)

pytestmark = pytest.mark.fault


def net_cfg(pg, p, **settings):
    """Database app through proxy p (TCP, SCRAM); postgres direct."""
    return cfg_with_other(pg, f"host=127.0.0.1 port={p.port} dbname=app user=app password=app_pw",
                          **settings)


def blackhole_existing(p):
    """Blackhole only the connections the proxy holds now, for good: what
    goes into them is swallowed (the proxy's kernel still acknowledges it);
    new connections are forwarded normally.  Models idle pool connections
    whose path died silently (a firewall or NAT that forgot them)."""
    def f():
        for c in list(p._conns):
            for w in c.writers:
                w.write = lambda data: None
                w.write_eof = lambda: None
    p._call(f)


def warnings(mark):
    return [ln for ln in mark.lines() if " WARNING " in ln or " ERROR " in ln or " FATAL " in ln]


def ride_out_blackhole(s, w, mark, bg, t0, what, since=None):
    """While bg runs (at most 12 s after since, default t0) sample the
    console and the healthy pool; then keep sampling until 10 s after t0 (the
    blackhole's start).  Returns (Watch figures, server log lines)."""
    w.hold_while(bg, 12, since=t0 if since is None else since, also=lambda: other_works(s))
    bg.finish(0.5, what)
    w.hold(max(0.0, 10.0 - (time.monotonic() - t0)))
    figures = w.check(max_cpu=1.0)
    return figures, assert_quiet_log(mark, 40, "a 10 s blackhole")


# ---------------------------------------------------------------------------
# Blackholes

KEEPALIVE = {"tcp_keepalive": True, "tcp_keepidle": 1, "tcp_keepintvl": 1, "tcp_keepcnt": 2,
             "tcp_user_timeout": 1000}


def test_net_blackhole_while_idle(request, sluice, pg, proxy):
    """The whole link is blackholed for 10 s while 2 servers sit idle
    (server_check_delay = 1, tcp_user_timeout = 1000 ms, keepalive 1 s).
    A client during the blackhole gets 57P03 within query_wait_timeout (4 s)
    -- not a hang; the healthy pool works; Sluice stays quiet.  Once the link
    is back the next client gets a working server within a bound."""
    p = proxy(pg.port)
    s = sluice(net_cfg(pg, p, server_check_delay=1, query_wait_timeout=4, server_connect_timeout=2,
                       **KEEPALIVE))
    warm(s, 2)
    assert pools_match_pg(s, pg) == 2
    w = Watch(s)
    mark = LogMark(s)
    p.blackhole()
    t0 = time.monotonic()
    w.hold(1.5, every=0.5)                    # the idle servers pass server_check_delay
    c = Bg(lambda: wire_query(s, "SELECT 'during'"), "client during the blackhole")
    figures, nlog = ride_out_blackhole(s, w, mark, c, t0, "the client during the blackhole",
                                       since=c.t0)
    o = c.result
    assert o.state == "57P03" and "query_wait_timeout" in o.msg, f"client during the blackhole: {o!r}"
    assert o.elapsed <= 9.0, f"error after {o.elapsed}s (query_wait_timeout 4)"
    p.normal()
    rec = recover(s, timeout=20)
    assert rec <= 15, f"service resumed {rec}s after the link came back"
    other_works(s)
    pools_match_pg(s, pg)
    pools_match_pg(s, pg, db="postgres")
    record_fault(request, "blackhole 10 s, servers idle", client=seen(o), client_s=o.elapsed,
                 recovery_s=rec, log_lines=nlog, **figures)




def test_net_blackhole_stale_idle_server(request, sluice, pg, proxy):
    """The connection of the pool's only idle server (pool_size 1) dies
    silently (blackholed for good) while new connections work.
    server_check_delay = 1 sends the health check, which is never answered
    (the proxy's kernel acknowledges it, so tcp_user_timeout cannot fire).
    As in PgBouncer, where server_idle_timeout and server_lifetime also apply
    to servers in their check (janitor: check_unused_servers on the tested
    list), a check stuck longer than server_idle_timeout (3 s) must end: the
    waiting client gets a new, working server well within query_wait_timeout
    (8 s), and so does the next client -- the pool does not stay clogged."""
    p = proxy(pg.port)
    s = sluice(net_cfg(pg, p, server_check_delay=1, query_wait_timeout=8, server_idle_timeout=3,
                       default_pool_size=1, **KEEPALIVE))
    warm(s, 1)
    stale = set(pg.backend_pids())
    w = Watch(s)
    mark = LogMark(s)
    blackhole_existing(p)
    time.sleep(1.5)                              # idle > server_check_delay, < server_idle_timeout
    first = wire_query(s, "SELECT pg_backend_pid()")
    w.sample()
    other_works(s)
    pool1 = s.pool()
    second = wire_query(s, "SELECT pg_backend_pid()")
    w.sample()
    pool2 = s.pool()
    figures = w.check(max_cpu=1.0)
    record_fault(request, "stale idle server (its path blackholed), pool_size 1",
                 client1=seen(first), client1_s=first.elapsed, client2=seen(second),
                 client2_s=second.elapsed, sv_tested_after=pool2["sv_tested"],
                 log_lines=len(mark.server_lines()), **figures)
    for o in (first, second):
        assert o.ok, f"a client was not served while new connections work: {o!r}; " \
                     f"SHOW POOLS after it: {pool1 if o is first else pool2}"
        assert int(o.rows[0][0]) not in stale
        assert o.elapsed <= 6.5, f"served only after {o.elapsed}s"
    p.reset_all()                  # let PostgreSQL see the stale connection end
    pools_match_pg(s, pg)


def test_net_blackhole_mid_query(request, sluice, pg, proxy):
    """The link is blackholed for 10 s while a query runs; query_timeout = 3
    ends the client with 57014 ("query_timeout: ...") within a bound; the
    healthy pool works; once the link is back service resumes."""
    p = proxy(pg.port)
    s = sluice(net_cfg(pg, p, query_timeout=3, query_wait_timeout=4, server_connect_timeout=2,
                       cancel_wait_timeout=3, **KEEPALIVE))
    warm(s, 1)
    c = Wire(s)
    w = Watch(s)
    mark = LogMark(s)
    q = Bg(lambda: c.query("SELECT pg_sleep(1), 'late-answer'"), "query in the blackhole")
    wait_until(lambda: pg.active_queries("SELECT pg_sleep(1), 'late-answer'") == 1, timeout=5,
               interval=0.01, what="the query to reach the server")
    p.blackhole()
    t0 = time.monotonic()
    figures, nlog = ride_out_blackhole(s, w, mark, q, t0,
                                       "the client whose query is in the blackhole")
    c.close()
    o = q.result
    assert o.state == "57014" and "query_timeout" in o.msg, f"client: {o!r}"
    assert not o.rows, o
    assert 2.5 <= o.elapsed <= 8.0, f"query_timeout 3 s ended the query after {o.elapsed}s"
    p.normal()
    rec = recover(s, timeout=20)
    assert rec <= 15, f"service resumed {rec}s after the link came back"
    pools_match_pg(s, pg)
    pools_match_pg(s, pg, db="postgres")
    record_fault(request, "blackhole 10 s mid-query", client=seen(o), client_s=o.elapsed,
                 recovery_s=rec, log_lines=nlog, **figures)


# ---------------------------------------------------------------------------
# Resets and cuts while a result streams



def no_splice(o, leftover):
    """The client got whole rows, then either a clean 08006 at a message
    boundary or just the end of the connection after part of a message --
    never an error message spliced into the truncated one."""
    assert o.end == "CLOSED", f"the client did not see the connection end: {o!r}"
    assert b"server connection lost" not in leftover and b"SFATAL" not in leftover, \
        f"an error was spliced into a truncated message: ...{leftover[-120:]!r}"
    if not leftover:
        assert o.state == "08006", f"client at a message boundary: {o!r}"


def test_net_reset_mid_result(request, sluice, pg, proxy):
    """A TCP reset (RST) of the server connection while a 3 MB result of 20 kB
    rows streams (throttled to ~100 kB/s): the client promptly gets the end of
    its connection after the whole rows that arrived -- 08006 (server connection
    lost) when the reset fell between messages, and never an error spliced
    into a half-relayed row; the next query works."""
    p = proxy(pg.port)
    s = sluice(net_cfg(pg, p))
    warm(s, 1)
    c = Wire(s)
    w = Watch(s)
    p.throttle(100_000)
    q = Bg(lambda: c.query("SELECT repeat('x', 20000) FROM generate_series(1, 150)"), "big result")
    wait_until(lambda: p.bytes_down > 200_000, timeout=20, what="the result to stream")
    p.reset_all()
    t = time.monotonic()
    p.normal()
    q.finish(10, "the client of the reset connection")
    elapsed = time.monotonic() - t
    leftover = bytes(c.c.buf)
    c.close()
    o = q.result
    w.sample()
    other_works(s)
    rec = recover(s)
    figures = w.check(max_cpu=1.0)
    pools_match_pg(s, pg)
    record_fault(request, "TCP reset mid-result", client=seen(o), rows_before=len(o.rows),
                 partial_bytes=len(leftover), spliced=b"SFATAL" in leftover,
                 client_s=round(elapsed, 2), recovery_s=rec, **figures)
    assert 0 < len(o.rows) < 150 and all(r == ["x" * 20000] for r in o.rows), \
        f"{len(o.rows)} rows, some damaged" if o.rows else "no rows before the reset"
    assert elapsed < 5, f"the client learnt of the reset after {elapsed:.1f}s"
    no_splice(o, leftover)


@pytest.mark.parametrize("nbytes,width", [
    (3, 500),
    (10007, 500),
    (30011, 20000),
], ids=["in-header", "mid-row", "mid-long-row"])
def test_net_cut_inside_message(request, sluice, pg, proxy, nbytes, width):
    """The server connection is closed (FIN) after N more bytes of a result,
    inside a message.  The client gets only whole, correct rows, then either
    08006 (server connection lost) at a message boundary or the end of the
    connection after part of a row -- never an error spliced into the
    truncated row (a client parser would take it for row data), never a
    hang.  The next query works."""
    p = proxy(pg.port)
    s = sluice(net_cfg(pg, p))
    warm(s, 1)
    c = Wire(s, timeout=15)
    w = Watch(s)
    p.cut_after(nbytes)
    o = c.query(f"SELECT repeat('y', {width}) FROM generate_series(1, 100)")
    leftover = bytes(c.c.buf)
    c.close()
    w.sample()
    other_works(s)
    rec = recover(s)
    figures = w.check(max_cpu=1.0)
    pools_match_pg(s, pg)
    record_fault(request, f"connection cut after {nbytes} bytes of a result ({width} B rows)",
                 client=seen(o), rows_before=len(o.rows), partial_bytes=len(leftover),
                 spliced=b"SFATAL" in leftover, client_s=o.elapsed, recovery_s=rec, **figures)
    assert all(r == ["y" * width] for r in o.rows), "a damaged row reached the client"
    assert len(o.rows) < 100
    no_splice(o, leftover)


# ---------------------------------------------------------------------------
# Slow link, refused connections

def test_net_slow_link(request, sluice, pg, proxy):
    """Every chunk delayed 0.2 s and the link throttled to 40 kB/s: logins
    and queries (a 50 kB result, a new server's login) are slow but correct; Sluice logs no warning and stays
    quiet; the healthy pool is not slowed down."""
    p = proxy(pg.port)
    s = sluice(net_cfg(pg, p, server_connect_timeout=20, query_wait_timeout=30))
    warm(s, 1)
    w = Watch(s)
    mark = LogMark(s)
    p.delay(0.2)
    p.throttle(40_000)
    t = time.monotonic()
    o1 = wire_query(s, "SELECT 'slow' || 1")
    o2 = wire_query(s, "SELECT repeat('s', 1000) || g FROM generate_series(1, 50) g")
    # two at once: the second needs a new server, logged in over the slow link
    a = Wire(s)
    b = Wire(s)
    assert a.query("BEGIN").ok
    ob = b.query("SELECT 'second server'")
    assert a.query("COMMIT").ok
    a.close()
    b.close()
    slow_s = time.monotonic() - t
    t2 = time.monotonic()
    other_works(s)
    other_s = time.monotonic() - t2
    w.sample()
    figures = w.check(max_cpu=1.0)
    p.normal()
    assert o1.ok and o1.rows == [["slow1"]], o1
    assert o2.ok and o2.rows == [["s" * 1000 + str(g)] for g in range(1, 51)], o2
    assert ob.ok and ob.rows == [["second server"]], ob
    assert o1.elapsed >= 0.4, f"the fault was not applied? ({o1.elapsed}s)"
    assert o2.elapsed >= 1.2, f"50 kB at 40 kB/s took {o2.elapsed}s: not throttled?"
    assert other_s < 3, f"the healthy pool took {other_s:.1f}s"
    assert not warnings(mark), f"Sluice warned about a slow link: {warnings(mark)[:3]}"
    rec = recover(s)
    pools_match_pg(s, pg)
    pools_match_pg(s, pg, db="postgres")
    record_fault(request, "slow link (delay 0.2 s, 40 kB/s)", client="ok (correct results)",
                 query_s=o1.elapsed, result_50_rows_s=o2.elapsed, total_s=round(slow_s, 2),
                 other_pool_s=round(other_s, 2), recovery_s=rec, **figures)


def test_net_refuse_new_connections(request, sluice, pg, proxy):
    """The existing server connections are reset and new ones refused (reset
    at once) for 8 s.  A client at the start gets 57P03 after
    query_wait_timeout (6 s), the message naming the login error; a client
    arriving at 5 s is served once connections are allowed again; Sluice
    retries every server_login_retry (1 s), not in a storm."""
    p = proxy(pg.port)
    s = sluice(net_cfg(pg, p, query_wait_timeout=6))
    warm(s, 2)
    w = Watch(s)
    mark = LogMark(s)
    p.refuse(True)
    p.reset_all()
    wait_until(lambda: s.pool_servers() == 0, what="the reset servers to be closed")
    accepted0 = p.accepted
    t0 = time.monotonic()
    early = Bg(lambda: wire_query(s, "SELECT 'early'"), "early client")
    late = None
    while time.monotonic() - t0 < 8:
        if late is None and time.monotonic() - t0 >= 5:
            late = Bg(lambda: wire_query(s, "SELECT 'late'"), "late client")
        w.sample()
        other_works(s)
        time.sleep(0.5)
    attempts = p.accepted - accepted0
    figures = w.check(max_cpu=1.0)
    nlog = assert_quiet_log(mark, 50, "8 s of refused connections")
    p.refuse(False)
    t_allow = time.monotonic()
    early.finish(5, "the early client")
    late.finish(15, "the late client")
    served_after = time.monotonic() - t_allow
    oe, ol = early.result, late.result
    assert oe.state == "57P03" and "query_wait_timeout" in oe.msg, f"early client: {oe!r}"
    assert "last server login error" in oe.msg, f"the login error is not named: {oe.msg}"
    assert 5.0 <= oe.elapsed <= 10.0, f"57P03 after {oe.elapsed}s (query_wait_timeout 6)"
    assert ol.ok and ol.rows == [["late"]], f"late client: {ol!r}"
    assert attempts <= 20, f"{attempts} login attempts in 8 s (server_login_retry 1)"
    rec = recover(s)
    pools_match_pg(s, pg)
    pools_match_pg(s, pg, db="postgres")
    record_fault(request, "new connections refused 8 s", early_client=seen(oe),
                 early_s=oe.elapsed, late_client="ok", late_s=ol.elapsed,
                 late_served_after_allow_s=round(served_after, 2), login_attempts=attempts,
                 recovery_s=rec, log_lines=nlog, **figures)
