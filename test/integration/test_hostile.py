"""test_hostile.py -- hostile or broken clients.

A pooler sits in front of every application instance, so it meets every
broken client, scanner and slow network there is.  None of them may take the
pooler down, make it spin, make it eat memory, or hurt the other clients:

  * 500 slow-loris connections dribbling a startup packet (client_login_timeout)
  * a flood of 10,000 connections against max_client_conn = 2000
  * half-finished TLS handshakes, garbage instead of a ClientHello
  * a client that stops reading a 1 GB result (backpressure, bounded memory)
  * clients vanishing mid-transaction, mid-COPY, mid-pipeline
  * garbage pipelined after a valid query
  * every client message type with nonsense length words

Every test records its figures with record_fault() (FAULT_REPORT) and checks
Sluice itself with Watch (console answers, CPU, RSS) and, where servers are
involved, pools_match_pg.
"""

import collections
import errno
import resource
import selectors
import socket
import ssl
import struct
import threading
import time

import psycopg
import pytest

from pgwire import Conn, message, parse_error_fields, startup_packet
from rawpg import bye, collect, errors_in, raw_login, rst_close
from sluicetest import Watch, pools_match_pg, record_fault, wait_until

pytestmark = pytest.mark.fault

SSL_REQUEST = struct.pack("!II", 8, 80877103)


# ---------------------------------------------------------------------------
# Raw-socket helpers (more in rawpg.py)

def read_exact_raw(sock, n, timeout=10.0):
    sock.settimeout(timeout)
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def recv_until_closed(sock, timeout):
    """Read raw bytes until EOF/reset or timeout: (data, closed, seconds)."""
    t0 = time.monotonic()
    data = b""
    deadline = t0 + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, False, time.monotonic() - t0
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return data, False, time.monotonic() - t0
        except OSError:
            return data, True, time.monotonic() - t0
        if not chunk:
            return data, True, time.monotonic() - t0
        data += chunk


def parse_stream(data):
    """Split raw server bytes into (type, body) messages (incomplete tail dropped)."""
    out, pos = [], 0
    while len(data) - pos >= 5:
        (ln,) = struct.unpack_from("!I", data, pos + 1)
        if ln < 4 or len(data) - pos < 1 + ln:
            break
        out.append((chr(data[pos]), data[pos + 5:pos + 1 + ln]))
        pos += 1 + ln
    return out


class Prober(threading.Thread):
    """A normal client that keeps logging in and running a query every
    `every` seconds while an attack is going on; counts the outcomes."""

    def __init__(self, s, every=0.25, **dsn):
        super().__init__(daemon=True)
        self.s, self.every, self.dsn = s, every, dsn
        self.ok = 0
        self.failures = []
        self.latencies = []
        self._stop_ev = threading.Event()

    def run(self):
        while not self._stop_ev.is_set():
            t = time.monotonic()
            try:
                with psycopg.connect(self.s.dsn(**self.dsn), autocommit=True) as c:
                    v = c.execute("SELECT 'probe'").fetchone()[0]
                if v != "probe":
                    self.failures.append(f"wrong answer {v!r}")
                else:
                    self.ok += 1
                    self.latencies.append(time.monotonic() - t)
            except Exception as e:   # noqa: BLE001 - every failure counts
                self.failures.append(repr(e))
            self._stop_ev.wait(self.every)

    def finish(self):
        self._stop_ev.set()
        self.join(30)
        return {"probe_ok": self.ok, "probe_failed": len(self.failures),
                "probe_max_latency_s": round(max(self.latencies or [0]), 3)}


def all_app_backends_idle(pg):
    rows = pg.query("SELECT state FROM pg_stat_activity WHERE backend_type = 'client backend' "
                    "AND datname = 'app' AND usename = 'app'")
    return all(r[0] == "idle" for r in rows)


# ---------------------------------------------------------------------------
# Slow loris

def test_slow_loris_500_connections(sluice, pg, request):
    """500 connections dribble a startup packet, one byte a second:
    client_login_timeout closes every one of them with 08P01, while normal
    clients keep logging in and Sluice stays cheap."""
    N, TIMEOUT = 500, 5.0
    s = sluice({"client_login_timeout": TIMEOUT, "max_client_conn": 1000,
                "listen_backlog": 1024})
    s.assert_works()
    w = Watch(s)
    pkt = startup_packet([("user", "app"), ("database", "app"), ("application_name", "loris")])
    prober = Prober(s)
    prober.start()

    sel = selectors.DefaultSelector()
    conns = {}
    t_open = time.monotonic()
    for i in range(N):
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        sock.setblocking(False)
        st = {"sock": sock, "sent": 0, "data": b"", "closed_at": None, "t0": time.monotonic()}
        conns[sock.fileno()] = st
        sel.register(sock, selectors.EVENT_READ, st)
    open_s = time.monotonic() - t_open

    def dribble():
        for st in conns.values():
            if st["closed_at"] is None and st["sent"] < len(pkt):
                try:
                    st["sock"].send(pkt[st["sent"]:st["sent"] + 1])
                    st["sent"] += 1
                except OSError:
                    pass

    deadline = time.monotonic() + TIMEOUT + 15
    next_byte = time.monotonic()
    next_sample = time.monotonic() + 1
    open_left = N
    while open_left and time.monotonic() < deadline:
        now = time.monotonic()
        if now >= next_byte:
            dribble()
            next_byte = now + 1.0
        if now >= next_sample:
            w.sample()
            next_sample = now + 1.0
        for key, _ in sel.select(timeout=0.1):
            st = key.data
            try:
                chunk = st["sock"].recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if chunk:
                st["data"] += chunk
                continue
            st["closed_at"] = time.monotonic()
            sel.unregister(st["sock"])
            open_left -= 1
    fig = w.check(max_cpu=1.0)
    probe = prober.finish()
    for st in conns.values():
        st["sock"].close()
    sel.close()

    still_open = sum(1 for st in conns.values() if st["closed_at"] is None)
    ages = sorted(st["closed_at"] - st["t0"] for st in conns.values() if st["closed_at"])
    codes = collections.Counter()
    for st in conns.values():
        errs = [parse_error_fields(b) for t, b in parse_stream(st["data"]) if t == "E"]
        codes[(errs[0].get("C"), "client_login_timeout" in errs[0].get("M", "")) if errs else None] += 1
    record_fault(request, "slow loris x500", client_saw=dict((str(k), v) for k, v in codes.items()),
                 still_open=still_open, min_close_s=round(ages[0], 2) if ages else None,
                 max_close_s=round(ages[-1], 2) if ages else None, open_s=round(open_s, 2),
                 **probe, **fig)
    assert still_open == 0, f"{still_open} slow-loris connections still open after {TIMEOUT + 15}s"
    assert codes == {("08P01", True): N}, f"what the slow clients saw: {dict(codes)}"
    assert ages[0] >= TIMEOUT - 0.5, f"a slow client was closed after {ages[0]:.2f}s (< {TIMEOUT}s)"
    assert ages[-1] <= TIMEOUT + 8, f"a slow client was closed only after {ages[-1]:.2f}s"
    assert not prober.failures, f"normal clients failed during the attack: {prober.failures[:3]}"
    assert prober.ok >= 10, f"only {prober.ok} normal queries during the attack"
    assert probe["probe_max_latency_s"] < 5.0, probe
    s.assert_works()
    pools_match_pg(s, pg)


# ---------------------------------------------------------------------------
# Connection flood

def flood(port, n, pkt, deadline_s=150.0, window=1000):
    """Open n connections as fast as reasonable, each sending pkt; returns
    (held sockets that got ReadyForQuery, Counter of outcomes, first errors)."""
    sel = selectors.DefaultSelector()
    todo = n
    inflight = 0
    held = []
    outcomes = collections.Counter()
    errors = {}
    deadline = time.monotonic() + deadline_s

    def finish(sock, st, outcome, keep=False):
        nonlocal inflight
        sel.unregister(sock)
        inflight -= 1
        outcomes[outcome] += 1
        if keep:
            held.append(sock)
        else:
            sock.close()

    while (todo or inflight) and time.monotonic() < deadline:
        while todo and inflight < window:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            rc = sock.connect_ex(("127.0.0.1", port))
            todo -= 1
            inflight += 1
            st = {"data": b"", "sent": False}
            if rc not in (0, errno.EINPROGRESS):
                inflight -= 1
                outcomes[f"connect:{errno.errorcode.get(rc, rc)}"] += 1
                sock.close()
                continue
            sel.register(sock, selectors.EVENT_WRITE, st)
        for key, ev in sel.select(timeout=0.2):
            sock, st = key.fileobj, key.data
            if not st["sent"]:
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    finish(sock, st, f"connect:{errno.errorcode.get(err, err)}")
                    continue
                try:
                    sock.send(pkt)
                except OSError as e:
                    finish(sock, st, f"send:{e.errno}")
                    continue
                st["sent"] = True
                sel.modify(sock, selectors.EVENT_READ, st)
                continue
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            st["data"] += chunk
            msgs = parse_stream(st["data"])
            errs = [parse_error_fields(b) for t, b in msgs if t == "E"]
            if errs:
                key_ = f"error:{errs[0].get('C')}"
                errors.setdefault(key_, errs[0].get("M"))
                finish(sock, st, key_)
            elif any(t == "Z" for t, _ in msgs):
                finish(sock, st, "ready", keep=True)
            elif not chunk:
                finish(sock, st, "closed")
    for key in list(sel.get_map().values()):
        outcomes["unfinished"] += 1
        key.fileobj.close()
    sel.close()
    return held, outcomes, errors


def test_connection_flood_10000_vs_max_client_conn(sluice, pg, request):
    """10,000 connections against max_client_conn = 2000: the excess gets
    53300, the accepted ones log in, PostgreSQL sees only the pool, the
    existing clients and the console keep working, memory stays bounded and
    every descriptor comes back."""
    N, LIMIT = 10000, 2000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = N + 200
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    s = sluice({"max_client_conn": LIMIT, "pool_mode": "transaction", "default_pool_size": 2,
                "listen_backlog": 4096, "log_connections": False, "log_disconnections": False})
    s.assert_works()
    # Two of the 2000 places: a normal client and a console session, open
    # before the flood; they must keep working through it.
    normal = s.connect()
    console = psycopg.connect(s.dsn("sluice", "admin", unix=True), autocommit=True,
                              prepare_threshold=None)
    assert normal.execute("SELECT 1").fetchone()[0] == 1
    w = Watch(s)
    fds0 = s.fd_count()
    pkt = startup_packet([("user", "app"), ("database", "app")])
    t0 = time.monotonic()
    held = []
    try:
        held, outcomes, errors = flood(s.port, N, pkt)
        flood_s = time.monotonic() - t0
        rss_flood = s.rss_kb()
        # The existing clients were not hurt.
        assert normal.execute("SELECT 'normal'").fetchone()[0] == "normal"
        cur = console.execute(b"SHOW POOLS", prepare=False)
        rows = cur.fetchall()
        cols = [d.name for d in cur.description]
        app = [dict(zip(cols, r)) for r in rows if r[0] == "app"][0]
        backends = pg.backend_count()
        # A sample of the accepted ones can run a query (via the small pool).
        sample_ok = 0
        for sock in held[:: max(1, len(held) // 20)]:
            sock.setblocking(True)
            sock.settimeout(20)
            c = Conn.__new__(Conn)
            c.sock, c.buf, c.params, c.closed = sock, bytearray(), {}, False
            if c.query("SELECT 'flooded'") == [["flooded"]]:
                sample_ok += 1
        sampled = len(held[:: max(1, len(held) // 20)])
        fig = w.check(max_cpu=10.0, max_rss_growth_kb=32 * 1024)
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: s.fd_count() <= fds0 + 3, timeout=30, what="Sluice's descriptors to come back")
    fds_after = s.fd_count()
    w.sample()
    s.assert_works()
    normal.close()
    console.close()
    pools_match_pg(s, pg)
    record_fault(request, "connection flood 10000 vs max_client_conn 2000",
                 client_saw=dict(outcomes), refusal_message=errors.get("error:53300"),
                 flood_s=round(flood_s, 1), cl_active=app["cl_active"], pg_backends=backends,
                 rss_during_flood_kb=rss_flood, fds_before=fds0, fds_after=fds_after, **fig)
    assert outcomes["ready"] == LIMIT - 2, f"accepted logins: {dict(outcomes)}"
    assert outcomes["error:53300"] == N - (LIMIT - 2), f"outcomes: {dict(outcomes)}; {errors}"
    assert "max_client_conn" in errors["error:53300"]
    assert app["cl_active"] + app["cl_waiting"] == LIMIT - 1, app   # + the normal client
    assert backends <= 2, f"{backends} PostgreSQL backends for a pool of 2"
    assert sample_ok == sampled


# ---------------------------------------------------------------------------
# TLS abuse

def client_hello():
    """The bytes of a real TLS ClientHello."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


TLS_TIMEOUT = 3.0


def _tls_cases(sluice, pg, request, name, open_cases):
    """Start a TLS-enabled Sluice, open the abusive connections
    open_cases(s) returns ({name: socket}), watch each until it is closed,
    while TLS and plain clients keep working.  Returns (summary, watch)."""
    s = sluice({"client_login_timeout": TLS_TIMEOUT, "client_tls_sslmode": "prefer",
                "client_tls_cert_file": f"{pg.certs}/server.crt",
                "client_tls_key_file": f"{pg.certs}/server.key"})
    s.assert_works()
    w = Watch(s)
    t0 = time.monotonic()
    cases = open_cases(s)
    results = {}

    def watch_case(n, sock):
        data, closed, _ = recv_until_closed(sock, TLS_TIMEOUT + 10)
        results[n] = (data, closed, time.monotonic() - t0)

    threads = [threading.Thread(target=watch_case, args=kv, daemon=True) for kv in cases.items()]
    for th in threads:
        th.start()
    for mode in ("require", "disable"):
        assert s.scalar("SELECT 'x'", sslmode=mode) == "x"
    w.sample()
    time.sleep(max(0.0, t0 + TLS_TIMEOUT / 2 - time.monotonic()))
    with psycopg.connect(s.dsn(sslmode="require"), autocommit=True) as c:
        assert c.execute("SELECT 'tls-during'").fetchone()[0] == "tls-during"
        assert c.pgconn.ssl_in_use
    w.sample()
    for th in threads:
        th.join(TLS_TIMEOUT + 15)
    fig = w.figures()
    summary = {}
    for n, (data, closed, secs) in results.items():
        errs = [parse_error_fields(b) for t, b in parse_stream(data) if t == "E"] \
            if data[:1] == b"E" else []
        summary[n] = {"closed": closed, "after_s": round(secs, 2),
                      "error": errs[0].get("C") if errs else None, "bytes": len(data)}
    for sock in cases.values():
        try:
            sock.close()
        except OSError:
            pass
    record_fault(request, name, client_saw=summary, **fig)
    w.sample()
    s.assert_works()
    assert s.scalar("SELECT 'x'", sslmode="require") == "x"
    pools_match_pg(s, pg)
    for n, r in summary.items():
        assert r["closed"], f"{n}: still open {TLS_TIMEOUT + 10:.0f}s later ({r})"
        assert r["after_s"] <= TLS_TIMEOUT + 3, f"{n}: closed only after {r['after_s']}s"
    return summary, w


def _ssl_requested(s, data=SSL_REQUEST, expect=b"S"):
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    sock.sendall(data)
    if expect:
        ans = read_exact_raw(sock, 1)
        assert ans == expect, f"SSLRequest answered {ans!r}"
    return sock


def test_tls_garbage_instead_of_handshake(sluice, pg, request):
    """After 'S': garbage or zeros instead of a ClientHello are refused at
    once; plaintext smuggled after the SSLRequest gets 08P01 at once; a
    finished handshake without a startup packet is closed by
    client_login_timeout with 08P01.  TLS and plain clients are unaffected."""

    def open_cases(s):
        cases = {}
        cases["garbage_instead_of_client_hello"] = _ssl_requested(s)
        cases["garbage_instead_of_client_hello"].sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 4)
        cases["zeros_instead_of_client_hello"] = _ssl_requested(s)
        cases["zeros_instead_of_client_hello"].sendall(b"\0" * 64)
        cases["plaintext_after_ssl_request"] = _ssl_requested(
            s, SSL_REQUEST + startup_packet([("user", "app")]), expect=None)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        cases["handshake_then_silence"] = ctx.wrap_socket(_ssl_requested(s))
        return cases

    summary, w = _tls_cases(sluice, pg, request, "TLS: garbage instead of a handshake", open_cases)
    for n in ("garbage_instead_of_client_hello", "zeros_instead_of_client_hello",
              "plaintext_after_ssl_request"):
        assert summary[n]["after_s"] < TLS_TIMEOUT - 1, f"{n} not refused at once: {summary[n]}"
    assert summary["plaintext_after_ssl_request"]["error"] == "08P01", summary
    assert summary["handshake_then_silence"]["after_s"] >= TLS_TIMEOUT - 0.5, summary
    w.check(max_cpu=1.0)


def test_tls_stalled_handshake(sluice, pg, request):
    """SSLRequest answered 'S', then silence, or half a ClientHello and
    silence: client_login_timeout closes the connection, Sluice does not
    spin, others are unaffected."""
    hello = client_hello()

    def open_cases(s):
        cases = {"ssl_request_then_silence": _ssl_requested(s),
                 "half_client_hello": _ssl_requested(s)}
        cases["half_client_hello"].sendall(hello[:len(hello) // 2])
        return cases

    summary, w = _tls_cases(sluice, pg, request, "TLS: stalled handshake", open_cases)
    for n, r in summary.items():
        assert r["after_s"] >= TLS_TIMEOUT - 0.5, f"{n}: closed before the timeout: {r}"
    w.check(max_cpu=1.0)


def test_garbage_after_ssl_request_without_tls(sluice, pg, request):
    """TLS off: the SSLRequest is answered N; a client that starts a TLS
    handshake anyway (a ClientHello where the startup packet belongs) gets
    08P01 and is closed at once."""
    s = sluice({"client_login_timeout": 3})
    w = Watch(s)
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    sock.sendall(SSL_REQUEST)
    assert read_exact_raw(sock, 1) == b"N"
    sock.sendall(client_hello())
    data, closed, secs = recv_until_closed(sock, 10)
    sock.close()
    errs = [parse_error_fields(b) for t, b in parse_stream(data) if t == "E"]
    fig = w.check(max_cpu=0.5)
    s.assert_works()
    pools_match_pg(s, pg)
    record_fault(request, "ClientHello after SSLRequest answered N",
                 client_saw=[(e.get("C"), e.get("M")) for e in errs], closed=closed,
                 after_s=round(secs, 2), **fig)
    assert closed and secs < 2.0, (closed, secs)
    assert errs and errs[0]["C"] == "08P01", errs


# ---------------------------------------------------------------------------
# A client that stops reading a 1 GB result

def test_client_stops_reading_1gb_result(sluice, pg, request):
    """The client sends a query with ~1 GB of result and reads nothing:
    Sluice applies backpressure (the backend waits in ClientWrite), its RSS
    stays under 64 MB; when the client vanishes the backend is released and
    service is normal."""
    s = sluice({"pool_mode": "transaction", "default_pool_size": 2})
    s.assert_works()
    sql = "SELECT repeat('x', 1000) FROM generate_series(1, 1000000) AS hostile_big"
    c = raw_login(s, timeout=15.0, rcvbuf=65536)
    assert c.query("SELECT 1") == [["1"]]
    w = Watch(s)
    c.send(message(b"Q", sql.encode() + b"\0"))
    t0 = time.monotonic()

    def backend_state():
        rows = pg.query("SELECT pid, state, wait_event FROM pg_stat_activity "
                        "WHERE query = %s", [sql])
        return rows[0] if rows else None

    st = wait_until(lambda: (lambda r: r if r and r[2] == "ClientWrite" else None)(backend_state()),
                    timeout=30, what="the backend to wait in ClientWrite")
    blocked_after = time.monotonic() - t0
    w.hold(3, every=0.5)
    st2 = backend_state()
    rss_max = w.rss_max
    fig = w.check(max_cpu=1.0)
    assert st2 is not None and st2[1] == "active" and st2[2] == "ClientWrite", st2
    assert rss_max < 64 * 1024, f"Sluice's RSS reached {rss_max} kB"
    # Meanwhile the other server of the pool serves others.
    s.assert_works("pooler during the stalled result")
    # The client vanishes.
    t1 = time.monotonic()
    rst_close(c.sock)
    wait_until(lambda: backend_state() is None or backend_state()[1] != "active",
               timeout=60, what="the stalled backend to be released")
    released_s = time.monotonic() - t1
    wait_until(lambda: all_app_backends_idle(pg), timeout=30, what="every app backend idle")
    pools_match_pg(s, pg)
    s.assert_works()
    w2 = Watch(s)
    w2.sample()
    record_fault(request, "client stops reading 1 GB result",
                 client_saw="nothing read (RST after 3 s)", blocked_after_s=round(blocked_after, 2),
                 backend_wait=f"{st[1]}/{st[2]}", released_after_s=round(released_s, 2),
                 rss_final_kb=s.rss_kb(), **fig)


# ---------------------------------------------------------------------------
# Clients vanishing in the middle of something

def _vanish_round(s, pg, fault, how, marker):
    c = raw_login(s, timeout=15.0)
    if fault == "transaction":
        c.query("BEGIN")
        c.query(f"INSERT INTO hostile_vanish VALUES ({marker})")
    elif fault == "copy":
        c.send(message(b"Q", b"COPY hostile_vanish FROM STDIN\0"))
        msgs, _ = collect(c, 10, stop_on=("G", "E", "Z"))
        assert msgs and msgs[-1][0] == "G", f"no CopyInResponse: {msgs}"
        # One whole row, then a CopyData message cut half-way.
        c.send(message(b"d", f"{marker}\n".encode()) + b"d" + struct.pack("!I", 104) + b"12")
        time.sleep(0.1)
    elif fault == "pipeline":
        ins = f"INSERT INTO hostile_vanish VALUES ({marker})".encode()
        data = (message(b"P", b"\0" + ins + b"\0" + struct.pack("!H", 0)) +
                message(b"B", b"\0\0" + struct.pack("!HHH", 0, 0, 0)) +
                message(b"E", b"\0" + struct.pack("!I", 0)) +
                message(b"P", b"s2\0SELECT pg_sleep(0.2)\0" + struct.pack("!H", 0)) +
                message(b"H"))
        c.send(data)
        msgs, _ = collect(c, 10, stop_on=("1",))
        msgs2, _ = collect(c, 10, stop_on=("C", "E"))
        assert [m[0] for m in msgs + msgs2][-3:] == ["1", "2", "C"], msgs + msgs2
    if how == "rst":
        rst_close(c.sock)
    else:
        c.sock.close()


@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_clients_vanish_mid_work(sluice, pg, request, mode):
    """A client vanishes (FIN or RST) inside a transaction, half-way through
    COPY FROM STDIN, and with an extended-protocol pipeline not yet synced:
    its work is rolled back, the server comes back clean (idle, no open
    transaction, no COPY state) or is closed, and SHOW POOLS matches
    pg_stat_activity."""
    with pg.connect(db="app", user="app") as c:
        c.execute("DROP TABLE IF EXISTS hostile_vanish")
        c.execute("CREATE TABLE hostile_vanish (v int)")
    s = sluice({"pool_mode": mode, "default_pool_size": 1, "query_wait_timeout": 20})
    s.assert_works()
    w = Watch(s)
    seen = {}
    marker = 100
    try:
        for fault in ("transaction", "copy", "pipeline"):
            for how in ("fin", "rst"):
                marker += 1
                t0 = time.monotonic()
                pids0 = set(pg.backend_pids())
                _vanish_round(s, pg, fault, how, marker)
                wait_until(lambda: all_app_backends_idle(pg), timeout=20,
                           what=f"app backends idle after a vanish {fault}/{how}")
                pools_match_pg(s, pg)
                # The next client gets a clean server.
                c = raw_login(s, timeout=15.0)
                rows = c.query("SELECT now() = statement_timestamp(), "
                               f"(SELECT count(*) FROM hostile_vanish WHERE v = {marker})")
                again = c.query("SELECT 'next-client'")
                bye(c)
                seen[f"{fault}/{how}"] = {"clean": rows[0][0], "rows_left": rows[0][1],
                                          "server": "kept" if pids0 & set(pg.backend_pids())
                                          else "closed",
                                          "recovered_s": round(time.monotonic() - t0, 2)}
                assert rows == [["t", "0"]], \
                    f"{fault}/{how}: next client saw (fresh transaction, rows kept) = {rows[0]}"
                assert again == [["next-client"]]
                w.sample()
        fig = w.check(max_cpu=1.0)
        pools_match_pg(s, pg)
        record_fault(request, f"clients vanish mid-work ({mode})", client_saw=seen, **fig)
    finally:
        with pg.connect(db="app", user="app") as c:
            c.execute("DROP TABLE IF EXISTS hostile_vanish")


# ---------------------------------------------------------------------------
# Garbage after a valid query

@pytest.mark.parametrize("garbage", [
    pytest.param(b"Y" + struct.pack("!I", 8) + b"junk", id="invalid-type"),
    pytest.param(b"Q" + struct.pack("!I", 2) + b"junk", id="length-2"),
    pytest.param(b"\xff\xfe\xfd\xfc\xfb\xfa\xf9", id="binary-noise"),
])
def test_garbage_pipelined_after_valid_query(sluice, pg, request, garbage):
    """A valid Query and, in the same write, bytes that are no valid
    message: the query's result arrives in full (PostgreSQL's order), then
    FATAL 08P01 (for a nonsense length word a bare close is accepted too,
    as PostgreSQL does), then the connection closes; nobody else notices."""
    s = sluice({"pool_mode": "transaction", "default_pool_size": 1})
    s.assert_works()
    w = Watch(s)
    c = raw_login(s, timeout=15.0)
    c.send(message(b"Q", b"SELECT 'valid', pg_sleep(0.2)\0") + garbage)
    msgs, closed = collect(c, 15)
    c.close()
    types = [t for t, _ in msgs]
    errs = errors_in(msgs)
    fig = w.check(max_cpu=0.5)
    s.assert_works()
    wait_until(lambda: all_app_backends_idle(pg), timeout=20, what="app backends idle")
    pools_match_pg(s, pg)
    record_fault(request, "garbage pipelined after a valid query", client_saw=types,
                 errors=[(e.get("C"), e.get("M")) for e in errs], closed=closed, **fig)
    assert types[:4] == ["T", "D", "C", "Z"], f"the valid query's result did not come first: {types}"
    assert msgs[1][1][6:11] == b"valid"
    if garbage[:1] == b"Y":
        assert types[4:] == ["E"] and errs[0]["C"] == "08P01", f"after the result: {types[4:]} {errs}"
    else:
        assert types[4:] in ([], ["E"]) and all(e["C"] == "08P01" for e in errs), types[4:]
    assert closed


# ---------------------------------------------------------------------------
# Every message type with nonsense lengths

MSG_BODIES = {
    "Q": b"SELECT 1\0",
    "P": b"\0SELECT 1\0" + struct.pack("!H", 0),
    "B": b"\0\0" + struct.pack("!HHH", 0, 0, 0),
    "E": b"\0" + struct.pack("!I", 0),
    "D": b"S\0",
    "C": b"S\0",
    "S": b"",
    "H": b"",
    "F": struct.pack("!IHHH", 2026, 0, 0, 0),
    "d": b"hello\n",
    "c": b"",
    "f": b"nope\0",
    "X": b"",
    "p": b"secret\0",
}
# Well-formed, or ignored by PostgreSQL (copy messages outside COPY): no
# error is owed for these.
HARMLESS = {("S", "4"), ("H", "4"), ("X", "4"), ("c", "4"), ("d", "4"), ("f", "4"),
            ("d", "short"), ("f", "short")}


def _length_case(s, mtype, lname):
    body = MSG_BODIES[mtype]
    real = len(body) + 4
    if lname == "short":
        data = mtype.encode() + struct.pack("!I", real - 1) + body
    elif lname == "4":
        data = mtype.encode() + struct.pack("!I", 4)
    else:
        data = mtype.encode() + struct.pack("!I", int(lname)) + body
    if mtype == "B":
        # A Bind needs a statement, or PostgreSQL stops at its name.
        data = message(b"P", b"\0SELECT 1\0" + struct.pack("!H", 0)) + data
    c = raw_login(s, timeout=15.0)
    t0 = time.monotonic()
    c.send(data)
    harmless = (mtype, lname) in HARMLESS
    msgs, closed = collect(c, 0.5 if harmless else 8, stop_on=("E",))
    if msgs and msgs[-1][0] == "E":
        more, closed = collect(c, 0.3)
        msgs += more
    secs = time.monotonic() - t0
    errs = errors_in(msgs)
    if closed:
        outcome = "closed" if not errs else f"error {errs[0].get('C')} + close"
    elif errs:
        outcome = f"error {errs[0].get('C')}"
    else:
        outcome = "quiet" if not msgs else "answer " + "".join(t for t, _ in msgs)
    rst_close(c.sock)
    return outcome, errs, round(secs, 2)


def test_message_length_matrix(sluice, pg, request):
    """Each client message type with length words 0, 3, 4, 2^31-1 and one
    byte short of its real length, after a successful login: a clear
    08P01 error or a clean close, never a crash, hang or a huge allocation;
    the pooler keeps serving others throughout."""
    s = sluice({"pool_mode": "transaction", "default_pool_size": 2,
                "log_connections": False, "log_disconnections": False})
    s.assert_works()
    other = s.connect()
    w = Watch(s)
    results, bad = {}, []
    for mtype in MSG_BODIES:
        for lname in ("0", "3", "4", str(2 ** 31 - 1), "short"):
            outcome, errs, secs = _length_case(s, mtype, lname)
            key = f"{mtype}/{lname}"
            results[key] = outcome
            assert s.alive(), f"Sluice died on {key}: {s.tail()}"
            rss = s.rss_kb()
            w.rss_max = max(w.rss_max, rss)
            if rss > 64 * 1024:
                bad.append(f"{key}: RSS {rss} kB")
            if (mtype, lname) in HARMLESS:
                if mtype == "X" and outcome != "closed":
                    bad.append(f"{key}: Terminate answered {outcome}")
            elif not (outcome.startswith("error 08P01") or outcome == "closed"):
                bad.append(f"{key}: {outcome} {[e.get('M') for e in errs]}")
            assert other.execute("SELECT 'other'").fetchone()[0] == "other", key
        w.sample()
    fig = w.check(max_cpu=3.0)
    wait_until(lambda: all_app_backends_idle(pg), timeout=20, what="app backends idle")
    pools_match_pg(s, pg)
    other.close()
    s.assert_works()
    record_fault(request, "message type x length matrix", client_saw=results, **fig)
    assert not bad, "\n".join(bad)
