"""test_faults_tcp.py -- a real TCP-level blackhole between Sluice and
PostgreSQL, built from network namespaces (needs root; skipped otherwise).

The user-space fault proxy (faultproxy.py) cannot fake a dead path: its kernel
keeps acknowledging whatever Sluice sends, so TCP keepalive and
tcp_user_timeout never fire there.  Here the path really dies:

    namespace A                               namespace B
    Sluice  --TCP 10.231.W.K+1 -> 10.231.W.K+2:5432-->  fwd.py --unix--> PostgreSQL
    (clients and the console reach Sluice through its unix socket; the
     healthy pool `postgres` goes straight to PostgreSQL's unix socket)

`ip -n B link set <veth> down` drops every packet both ways (netem and tc
actions are not available in this kernel), `... up` restores the path.  The
forwarder (a small asyncio script written into the test directory) joins each
TCP connection to PostgreSQL's unix socket; it runs its own keepalive
(1 s / 1 s / 2 probes, TCP_USER_TIMEOUT 2 s) so that the backends of
connections that died during a blackhole end, and pg_stat_activity settles.

Linux semantics the tests rely on (tcp(7)): TCP_USER_TIMEOUT bounds how long
*sent* data (or keepalive probes) may stay unacknowledged; a socket that sends
nothing -- a server busy in pg_sleep, an idle pooled server -- is only found
dead by keepalive probes.  So the mid-query cases are: a query sent into the
dead path (tcp_user_timeout alone), and a query already running when the path
dies (keepalive, bounded by tcp_user_timeout).

Tests:
  1.  mid-query, 10 s: a query sent into the dead path, tcp_user_timeout
      2000 ms with keepalive off (Sluice sets it on the socket: libpq 15 does
      only with keepalives) and with
      keepalive on (idle 300 s); a query running when the path dies
      (keepalive 1/1/2 + tcp_user_timeout 2000): 08006 within ~2-3 s
  2.  idle servers, keepalive only: Sluice closes them by itself (~3 s)
  3.  idle servers with health checks (server_check_delay 0): a client during
      the outage gets 57P03 from query_wait_timeout, one near its end is served
  4.  link flaps (2 x 3 s down) under a small steady transaction-mode load

Namespace names carry the pid and a counter, addresses are 10.231.<xdist
worker>.<4k>/30: parallel workers and sessions never collide.  The net
fixture deletes the namespaces and kills the forwarder (by PID); Sluice
instances come from the `sluice` fixture (its teardown stops them and checks
stderr and logs).  server_sockets() reads the options of Sluice's server
sockets from copies of its descriptors (pidfd_getfd).

Each asserts what the client saw (read off the wire over Sluice's unix
socket: Wire/Outcome from rawpg), that Sluice stays responsive, quiet and
bounded (Watch), that the healthy pool keeps working, and that service resumes
with SHOW POOLS matching pg_stat_activity (pools_match_pg); figures go to
record_fault.
"""

import ctypes
import itertools
import os
import re
import socket
import subprocess
import threading
import time

import pytest

from rawpg import Bg, Wire, seen, warm, wire_query
from sluicetest import (LogMark, Watch, assert_quiet_log, cfg_with_other, other_works,
                        pools_match_pg, record_fault, recover, unix_open, wait_until)

pytestmark = pytest.mark.fault

IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "ip"
PY = "/usr/bin/python3"

# ---------------------------------------------------------------------------
# The forwarder that runs in namespace B

FWD_SRC = r'''
import asyncio, os, socket, sys

host, port, path, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ka = [int(x) for x in sys.argv[5].split(",")] if len(sys.argv) > 5 and sys.argv[5] != "0" else None


async def pipe(r, w):
    try:
        while True:
            data = await r.read(65536)
            if not data:
                break
            w.write(data)
            await w.drain()
    except Exception:
        pass


async def handle(tr, tw):
    sock = tw.get_extra_info("socket")
    if ka:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, ka[0])
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, ka[1])
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, ka[2])
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, ka[3])
    try:
        ur, uw = await asyncio.open_unix_connection(path)
    except OSError:
        tw.transport.abort()
        return
    t1 = asyncio.ensure_future(pipe(tr, uw))
    t2 = asyncio.ensure_future(pipe(ur, tw))
    await asyncio.wait([t1, t2], return_when=asyncio.FIRST_COMPLETED)
    # One side ended (EOF, reset, ETIMEDOUT): end both at once.
    tw.transport.abort()
    uw.transport.abort()
    for t in (t1, t2):
        t.cancel()


async def main():
    srv = await asyncio.start_server(handle, host, port, reuse_address=True)
    with open(ready, "w") as f:
        f.write(str(os.getpid()))
    async with srv:
        await srv.serve_forever()

asyncio.run(main())
'''

FWD_KA = "1,1,2,2000"     # the forwarder's keepalive idle,intvl,cnt,user_timeout_ms

_seq = itertools.count()


def _worker_index():
    m = re.match(r"gw(\d+)$", os.environ.get("PYTEST_XDIST_WORKER", ""))
    return int(m.group(1)) + 1 if m else 0


def _ip(*args, check=True):
    r = subprocess.run([IP, *args], capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


class NetPath:
    """Two network namespaces joined by a veth pair, the forwarder in B and
    the means to cut and restore the path."""

    def __init__(self, tdir, pg):
        k = next(_seq)
        tag = f"{os.getpid() % 100000}x{k}"
        self.ns_a, self.ns_b = f"sla{tag}", f"slb{tag}"
        self.if_a, self.if_b = f"sva{tag}", f"svb{tag}"
        base = 4 * (k % 64)
        net = f"10.231.{_worker_index() % 256}"
        self.addr_a, self.addr_b = f"{net}.{base + 1}", f"{net}.{base + 2}"
        self.port = 5432
        self.tdir = tdir
        self.pg = pg
        self.fwd = None
        self.made = []
        self.is_down = False

    def setup(self):
        for ns in (self.ns_a, self.ns_b):
            try:
                r = _ip("netns", "add", ns, check=False)
            except FileNotFoundError:
                pytest.skip("the ip command (iproute2) is not installed")
            if r.returncode != 0:
                self.teardown()
                pytest.skip(f"cannot create network namespaces (ip netns add: {r.stderr.strip()})")
            self.made.append(ns)
        _ip("link", "add", self.if_a, "netns", self.ns_a, "type", "veth",
            "peer", "name", self.if_b, "netns", self.ns_b)
        _ip("-n", self.ns_a, "addr", "add", f"{self.addr_a}/30", "dev", self.if_a)
        _ip("-n", self.ns_b, "addr", "add", f"{self.addr_b}/30", "dev", self.if_b)
        for ns, dev in ((self.ns_a, self.if_a), (self.ns_b, self.if_b), (self.ns_a, "lo"),
                        (self.ns_b, "lo")):
            _ip("-n", ns, "link", "set", dev, "up")
        # Static neighbours: with the link down, packets are dropped silently
        # (no ARP failure, so no "No route to host": a dead path, as when a
        # firewall or a router on the way drops everything).
        for ns, dev, peer_ns, peer_dev, addr in ((self.ns_a, self.if_a, self.ns_b, self.if_b,
                                                  self.addr_b),
                                                 (self.ns_b, self.if_b, self.ns_a, self.if_a,
                                                  self.addr_a)):
            mac = _ip("-n", peer_ns, "-o", "link", "show", peer_dev).stdout
            mac = re.search(r"link/ether ([0-9a-f:]{17})", mac).group(1)
            _ip("-n", ns, "neigh", "replace", addr, "lladdr", mac, "dev", dev, "nud", "permanent")
        return self

    def start_fwd(self, ka=FWD_KA):
        script = self.tdir / "fwd.py"
        script.write_text(FWD_SRC)
        ready = self.tdir / "fwd.ready"
        self.fwd = subprocess.Popen(
            [IP, "netns", "exec", self.ns_b, PY, str(script), self.addr_b, str(self.port),
             f"{self.pg.sock}/.s.PGSQL.{self.pg.port}", str(ready), ka],
            stdin=subprocess.DEVNULL, stdout=open(self.tdir / "fwd.out", "ab"),
            stderr=subprocess.STDOUT)
        wait_until(lambda: ready.exists() or self.fwd.poll() is not None, timeout=15,
                   what="the forwarder to listen")
        assert self.fwd.poll() is None, (self.tdir / "fwd.out").read_text(errors="replace")

    def kill_fwd(self):
        if self.fwd is not None and self.fwd.poll() is None:
            self.fwd.kill()
            self.fwd.wait(10)

    def conninfo(self, **extra):
        s = f"host={self.addr_b} port={self.port} dbname=app user=app"
        return " ".join([s] + [f"{k}={v}" for k, v in extra.items()])

    def down(self):
        _ip("-n", self.ns_b, "link", "set", self.if_b, "down")
        self.is_down = True

    def up(self):
        _ip("-n", self.ns_b, "link", "set", self.if_b, "up")
        self.is_down = False

    def teardown(self):
        self.kill_fwd()
        for ns in reversed(self.made):
            _ip("netns", "del", ns, check=False)
        self.made = []


_libc = ctypes.CDLL(None, use_errno=True)
SYS_PIDFD_GETFD = 438


def server_sockets(pid, addr, port):
    """The options of pid's established TCP sockets to addr:port, read from
    copies of its descriptors (pidfd_getfd): a list of dicts."""
    want = f"{socket.inet_aton(addr)[::-1].hex().upper()}:{port:04X}"
    inodes = set()
    with open(f"/proc/{pid}/net/tcp") as f:          # the table of pid's namespace
        next(f)
        for line in f:
            parts = line.split()
            if parts[2] == want and parts[3] == "01":
                inodes.add(parts[9])
    out = []
    pidfd = os.pidfd_open(pid)
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                m = re.match(r"socket:\[(\d+)\]$", os.readlink(f"/proc/{pid}/fd/{fd}"))
            except OSError:
                continue
            if not m or m.group(1) not in inodes:
                continue
            local = _libc.syscall(SYS_PIDFD_GETFD, pidfd, int(fd), 0)
            if local < 0:
                raise OSError(ctypes.get_errno(), "pidfd_getfd")
            with socket.socket(fileno=local) as sk:
                out.append({
                    "user_timeout_ms": sk.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
                    "keepalive": sk.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                    "keepidle": sk.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                })
    finally:
        os.close(pidfd)
    return out


def assert_user_timeout(s, path, ms):
    """Every server socket of s to the path carries TCP_USER_TIMEOUT ms (the
    documented meaning of tcp_user_timeout, whatever tcp_keepalive says)."""
    try:
        socks = server_sockets(s.pid, path.addr_b, path.port)
    except (OSError, AttributeError):     # no pidfd_getfd here: the client's fate tells
        return None
    assert socks, "no server socket found"
    assert all(x["user_timeout_ms"] == ms for x in socks), \
        f"tcp_user_timeout = {ms} but Sluice's server sockets carry {socks}"
    return socks


def start_in_ns(inst, ns, timeout=15):
    """Sluice.start, inside network namespace ns; ready when its unix socket
    accepts (its TCP listener is on the namespace's own 127.0.0.1)."""
    inst.proc = subprocess.Popen([IP, "netns", "exec", ns, inst.bin, "-c", str(inst.conf_path)],
                                 stdin=subprocess.DEVNULL,
                                 stdout=open(inst.dir / "stdout", "ab"),
                                 stderr=open(inst.stderr_path, "ab"))
    inst.pid = inst.proc.pid          # `ip netns exec` execs the command: same PID
    sock = f"{inst.sock}/.s.PGSQL.{inst.port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if inst.proc.poll() is not None:
            pytest.fail(f"sluice {inst.name} exited at start (status {inst.proc.returncode}): "
                        f"{inst.tail()}", pytrace=False)
        if os.path.exists(sock) and unix_open(sock):
            return inst
        time.sleep(0.03)
    pytest.fail(f"sluice {inst.name} does not accept on {sock} after {timeout}s: {inst.tail()}",
                pytrace=False)


@pytest.fixture
def net(sluice, pg, tdir):
    """(make_sluice, path): the namespaces and forwarder are ready;
    make_sluice(**settings) starts Sluice in namespace A with database app
    behind the path (conninfo host=<B> port=5432) and the healthy pool
    postgres on the cluster's unix socket.  Instances come from the `sluice`
    factory, so its teardown stops them and checks their stderr and logs
    (sanitizer reports, passwords)."""
    path = NetPath(tdir, pg)
    try:
        path.setup()
        path.start_fwd()

        def make(**settings):
            inst = sluice(cfg_with_other(pg, path.conninfo(), **settings), wait=False)
            return start_in_ns(inst, path.ns_a)
        yield make, path
    finally:
        if path.is_down:
            try:
                path.up()
            except RuntimeError:
                pass
        path.teardown()


# ---------------------------------------------------------------------------
# 1. Mid-query

def _outage_watch(w, s, t0, seconds):
    """Sample the console and the healthy pool until `seconds` after t0."""
    while time.monotonic() - t0 < seconds:
        w.sample()
        assert s.alive(), f"Sluice died during the blackhole: {s.tail()}"
        other_works(s, unix=True)
        time.sleep(0.5)


MID_QUERY_CASES = {
    # the query is sent after the path died; tcp_user_timeout alone must end it
    "sent-user-timeout-only": {"tcp_keepalive": False, "tcp_user_timeout": 2000},
    # the same with keepalive on but idle 300 s: libpq applies tcp_user_timeout
    "sent-user-timeout": {"tcp_keepalive": True, "tcp_keepidle": 300, "tcp_user_timeout": 2000},
    # the query runs (quiet socket) when the path dies: keepalive finds it
    "running-keepalive": {"tcp_keepalive": True, "tcp_keepidle": 1, "tcp_keepintvl": 1,
                          "tcp_keepcnt": 2, "tcp_user_timeout": 2000},
}


@pytest.mark.parametrize("case", [
    "sent-user-timeout-only",
    "sent-user-timeout",
    "running-keepalive"])
def test_tcp_blackhole_mid_query(request, net, pg, case):
    """The path dies for 10 s around a `SELECT pg_sleep(8)` (query_timeout 0).

    sent-*: the client's server sits idle in its transaction, the path dies,
    then the client sends the query: Sluice's write stays unacknowledged and
    tcp_user_timeout (2000 ms) ends the socket -- with keepalive off
    (user-timeout-only) or on with a 300 s idle time (so only the user
    timeout can act).  running-keepalive: the query already runs (the socket
    is quiet) when the path dies; keepalive 1 s / 1 s / 2 probes with
    tcp_user_timeout 2000 ms finds the dead peer.

    The client gets 08006 "server connection lost: Connection timed out" well
    before the query's natural end (< 6 s); Sluice stays responsive and quiet
    (CPU < 1 s over the 10 s), the healthy pool works, and once the path is
    back the next query gets a new server; pools match."""
    make, path = net
    s = make(query_timeout=0, server_check_delay=300, query_wait_timeout=8,
             server_connect_timeout=3, **MID_QUERY_CASES[case])
    c = Wire(s, unix=True)
    assert c.query("BEGIN; SELECT 1").ok          # the client holds its server
    before = set(pg.backend_pids())
    assert_user_timeout(s, path, 2000)
    w = Watch(s)
    mark = LogMark(s)
    sql = "SELECT pg_sleep(8), 'natural-end'"
    if case.startswith("sent"):
        path.down()
        t0 = time.monotonic()
        q = Bg(lambda: c.query(sql), "query sent into the dead path")
    else:
        q = Bg(lambda: c.query(sql), "query in the blackhole")
        wait_until(lambda: pg.active_queries(sql) == 1, timeout=5, interval=0.01,
                   what="the query to reach the server")
        path.down()
        t0 = time.monotonic()
    w.hold_while(q, 7, since=t0, also=lambda: other_works(s, unix=True), every=0.2)
    q.finish(0.5, "the client whose query is in the blackhole")
    detect = round(time.monotonic() - t0, 2)
    pool_during = s.pool()
    _outage_watch(w, s, t0, 10.0)
    figures = w.check(max_cpu=1.0)
    nlog = assert_quiet_log(mark, 20, "a 10 s blackhole")
    c.close()
    o = q.result
    assert o.state == "08006", f"client: {o!r}"
    assert "server connection lost" in o.msg and "timed out" in o.msg.lower(), \
        f"the message does not name the cause: {o.msg!r}"
    assert not o.rows and o.end == "CLOSED", o
    assert o.elapsed < 6.0, f"error after {o.elapsed}s (tcp_user_timeout 2 s, query ends at 8 s)"
    assert s.pool_servers() == 0 or int(pool_during["sv_active"]) == 0, \
        f"the dead server is still in the pool: {pool_during}"
    logged = [ln for ln in mark.lines() if "closing server connection" in ln]
    assert logged and "timed out" in logged[0].lower(), f"log: {mark.lines()[-5:]}"
    path.up()
    t_up = time.monotonic()
    rec = recover(s, timeout=20.0, unix=True)
    back = s.scalar("SELECT pg_backend_pid()", unix=True)
    assert back not in before, "the next query ran on the dead server's backend"
    other_works(s, unix=True)
    pools_match_pg(s, pg)
    pools_match_pg(s, pg, db="postgres")
    settle = round(time.monotonic() - t_up, 2)
    record_fault(request, f"TCP blackhole 10 s mid-query ({case})", client=seen(o),
                 client_s=o.elapsed, detect_s=detect, recovery_s=rec, pools_settle_s=settle,
                 log_lines=nlog, close_log=logged[0][-120:], **figures)


# ---------------------------------------------------------------------------
# 2. Idle servers, keepalive only

def test_tcp_blackhole_idle_keepalive(request, net, pg):
    """Two servers idle in the pool; the path dies (8 s).  Keepalive 1 s /
    1 s / 2 probes, tcp_user_timeout 0, server_check_delay 300 (no check).
    Without any client asking, Sluice closes the dead idle servers within
    ~3-6 s (SHOW POOLS sv_idle 0; the log says why: timed out); after the path
    returns the next client is served promptly by a new server."""
    make, path = net
    s = make(tcp_keepalive=True, tcp_keepidle=1, tcp_keepintvl=1, tcp_keepcnt=2,
             tcp_user_timeout=0, server_check_delay=300, query_wait_timeout=8,
             server_connect_timeout=3)
    warm(s, 2, unix=True)
    before = set(pg.backend_pids())
    assert len(before) == 2
    w = Watch(s)
    mark = LogMark(s)
    path.down()
    t0 = time.monotonic()
    seen_idle = []

    def gone():
        w.sample()
        p = s.pool()
        seen_idle.append(p["sv_idle"])
        # (sv_login not counted: Sluice may try one login to learn when the
        # database is back)
        return sum(int(p[k]) for k in ("sv_idle", "sv_used", "sv_active", "sv_tested")) == 0
    detected = True
    try:
        wait_until(gone, timeout=9, interval=0.25, what="the dead idle servers to be closed")
    except pytest.fail.Exception:
        detected = False
    detect = round(time.monotonic() - t0, 2)
    _outage_watch(w, s, t0, 8.0)
    figures = w.check(max_cpu=1.0)
    nlog = assert_quiet_log(mark, 20, "an 8 s blackhole")
    closes = [ln for ln in mark.lines() if "closing server connection" in ln]
    path.up()
    t_up = time.monotonic()
    o = wire_query(s, "SELECT pg_backend_pid()", timeout=20, unix=True)
    assert detected, f"the dead idle servers are still in the pool after {detect}s " \
                     f"(sv_idle samples {seen_idle[-5:]}); log: {mark.lines()[-5:]}"
    assert 2.0 <= detect <= 8.0, f"closed after {detect}s (keepalive 1 s + 2 x 1 s)"
    assert len(closes) >= 2 and all("timed out" in ln.lower() for ln in closes), \
        f"the log does not say why the servers were closed: {closes or mark.lines()[-5:]}"
    assert o.ok and int(o.rows[0][0]) not in before, f"next client after the path returned: {o!r}"
    assert o.elapsed <= 5.0, f"next client served only after {o.elapsed}s"
    other_works(s, unix=True)
    pools_match_pg(s, pg)
    pools_match_pg(s, pg, db="postgres")
    record_fault(request, "TCP blackhole 8 s, servers idle, keepalive only", detect_s=detect,
                 next_client=seen(o), next_client_s=o.elapsed,
                 pools_settle_s=round(time.monotonic() - t_up, 2), log_lines=nlog,
                 close_log=closes[0][-120:], **figures)


# ---------------------------------------------------------------------------
# 3. Idle servers with health checks

def test_tcp_blackhole_idle_health_check(request, net, pg):
    """One server idle in the pool; the path dies for 10 s.  server_check_delay
    0 (check before every reuse), tcp_user_timeout 2000 ms, keepalive off,
    server_connect_timeout 2, server_login_retry 1, query_wait_timeout 7.

    doc/config.md: a server that fails the check is closed and the client is
    served by another one; a client that waits longer than query_wait_timeout
    gets 57P03 naming the last server login error.  So: client A (at 1 s) is
    not handed the dead server: it gets 57P03 "query_wait_timeout ...  last
    server login error: ..." after ~7 s; client B (at 8.5 s) waits and is
    served once the path is back (10 s); the next clients are served."""
    make, path = net
    s = make(tcp_keepalive=False, tcp_user_timeout=2000, server_check_delay=0,
             server_connect_timeout=2, server_login_retry=1, query_wait_timeout=7)
    warm(s, 1, unix=True)
    before = set(pg.backend_pids())
    w = Watch(s)
    mark = LogMark(s)
    path.down()
    t0 = time.monotonic()
    w.hold(1.0, every=0.5)
    a = Bg(lambda: wire_query(s, "SELECT pg_backend_pid()", timeout=20, unix=True), "client A")

    def check_failed():
        p = s.pool()
        return int(p["sv_idle"]) + int(p["sv_tested"]) + int(p["sv_active"]) == 0
    wait_until(lambda: w.sample() and check_failed(), timeout=6, interval=0.25,
               what="the failed health check to close the dead server")
    check_s = round(time.monotonic() - t0 - 1.0, 2)
    while time.monotonic() - t0 < 8.5:
        w.sample()
        other_works(s, unix=True)
        time.sleep(0.5)
    b = Bg(lambda: wire_query(s, "SELECT pg_backend_pid()", timeout=20, unix=True), "client B")
    _outage_watch(w, s, t0, 10.0)
    path.up()
    t_up = time.monotonic()
    a.finish(12, "client A")
    b.finish(12, "client B")
    figures = w.check(max_cpu=1.0)
    nlog = assert_quiet_log(mark, 30, "a 10 s blackhole with login retries")
    oa, ob = a.result, b.result
    closes = [ln for ln in mark.lines() if "closing server connection" in ln]
    assert closes and re.search(r"timed out|not answered", closes[0]), \
        f"the log does not say why the checked server was closed: {closes or mark.lines()[-5:]}"
    assert oa.state == "57P03" and "query_wait_timeout" in oa.msg, f"client A: {oa!r}"
    assert "login error" in oa.msg, f"57P03 does not name the login error: {oa.msg!r}"
    assert 6.0 <= oa.elapsed <= 10.0, f"client A's error after {oa.elapsed}s (query_wait_timeout 7)"
    assert ob.ok and int(ob.rows[0][0]) not in before, f"client B (path back at 10 s): {ob!r}"
    rec = recover(s, timeout=20.0, unix=True)
    assert rec <= 5.0
    other_works(s, unix=True)
    pools_match_pg(s, pg)
    pools_match_pg(s, pg, db="postgres")
    record_fault(request, "TCP blackhole 10 s, servers idle, health checks",
                 check_fail_s=check_s, client_a=seen(oa), client_a_s=oa.elapsed,
                 client_b=seen(ob), client_b_s=ob.elapsed,
                 client_b_after_up_s=round(b.t0 + b.elapsed - t_up, 2), recovery_s=rec,
                 close_log=closes[0][-120:], log_lines=nlog, **figures)


# ---------------------------------------------------------------------------
# 4. Flapping link under load

def test_tcp_link_flap_under_load(request, net, pg):
    """Four clients loop short transactions (transaction pooling, pool size
    2, keepalive 1/1/2 and tcp_user_timeout 2000 ms); the path goes down for
    3 s, up, down 3 s again, up.  No client hangs (every request ends within
    its bound); the only errors are 08006 "server connection lost" for
    transactions in flight when the path died; afterwards every client's
    transactions succeed again and pools match."""
    make, path = net
    s = make(default_pool_size=2, tcp_keepalive=True, tcp_keepidle=1, tcp_keepintvl=1,
             tcp_keepcnt=2, tcp_user_timeout=2000, server_check_delay=300,
             server_connect_timeout=2, server_login_retry=1, query_wait_timeout=15)
    stop = threading.Event()
    phase = {"name": "before"}
    results = {i: [] for i in range(4)}
    crashes = []

    def worker(i):
        try:
            loop(i)
        except Exception as e:  # noqa: BLE001 -- reported by the test
            crashes.append((i, phase["name"], repr(e)))

    def loop(i):
        c = None
        while not stop.is_set():
            if c is None:
                c = Wire(s, timeout=20, unix=True)
                if not c.login.ok:
                    results[i].append((phase["name"], c.login))
                    c.close()
                    c = None
                    time.sleep(0.1)
                    continue
            o = c.query(f"BEGIN; SELECT {i}, pg_sleep(0.05); COMMIT")
            results[i].append((phase["name"], o))
            if not o.ok:
                c.close()
                c = None
            time.sleep(0.02)
        if c is not None:
            c.close()
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    w = Watch(s)
    t0 = time.monotonic()
    for flap in (1, 2):
        phase["name"] = f"down{flap}"
        path.down()
        w.hold(3.0, every=0.5)
        phase["name"] = f"up{flap}"
        path.up()
        w.hold(2.5, every=0.5)
    phase["name"] = "after"
    w.hold(2.5, every=0.5)
    figures = w.check(max_cpu=1.5)
    stop.set()
    for t in threads:
        t.join(25)
    hung = [t.name for t in threads if t.is_alive()]
    outs = [(i, ph, o) for i, rs in results.items() for ph, o in rs]
    errors = [(i, ph, o) for i, ph, o in outs if not o.ok]
    late_ok = {i: sum(1 for ph, o in rs if ph == "after" and o.ok) for i, rs in results.items()}
    slowest = max((o.elapsed or 0) for _, _, o in outs)
    record_fault(request, "TCP link flaps 2 x 3 s under load (4 clients, pool 2)",
                 transactions=len(outs), errors=len(errors),
                 error_kinds=sorted({f"{ph}: {seen(o)}"[:120] for _, ph, o in errors})[:6],
                 slowest_request_s=slowest, ok_after_per_client=late_ok, crashes=len(crashes),
                 flap_wall_s=round(time.monotonic() - t0, 1), **figures)
    assert not hung, f"clients still blocked: {hung}"
    assert not crashes, f"client loops failed: {crashes}"
    timeouts = [(i, ph, o) for i, ph, o in errors if o.end == "TIMEOUT"]
    assert not timeouts, f"requests that hung: {timeouts[:3]}"
    bad = [(i, ph, o) for i, ph, o in errors
           if o.state != "08006" or "server connection lost" not in o.msg]
    assert not bad, f"errors other than 08006 for transactions in flight: {bad[:4]}"
    assert len(errors) <= 2 * 2, \
        f"{len(errors)} errors for 2 flaps of a pool of 2: {[seen(o) for _, _, o in errors][:6]}"
    assert not [e for e in errors if e[1] == "after"], f"errors after the flaps: {errors}"
    assert all(n >= 3 for n in late_ok.values()), f"clients not served after the flaps: {late_ok}"
    assert slowest <= 15.0, f"a request took {slowest}s"
    other_works(s, unix=True)
    pools_match_pg(s, pg)
    pools_match_pg(s, pg, db="postgres")
