"""Lifecycle of Sluice and of its connections: shutdown on SIGTERM, reload on
SIGHUP, CancelRequest, the janitor's client and server timeouts, min_pool_size,
server_lifetime, PostgreSQL restarted under load, client and server limits,
the reserve pool and round robin, server_check_query, transaction_timeout,
per-user pool sizes and autodb pools, server_connect_timeout and TCP
keepalive.

"""

import re
import signal
import socket
import struct
import subprocess
import threading
import time

import psycopg
import pytest

import pgwire
from rawpg import Bg, login_error, next_event, raw_login
from sluicetest import wait_until


# ---------------------------------------------------------------------------
# Helpers

def query_outcome(c, sql):
    """Run sql on a logged-in raw connection: 'OK', 'ERROR <sqlstate>
    <message>' or 'CLOSED'."""
    try:
        c.query(sql)
        return "OK"
    except pgwire.PgError as e:
        return f"ERROR {e.sqlstate} {e.fields.get('M', '')}"
    except (pgwire.Closed, OSError):
        return "CLOSED"


def raw_outcome(s, sql, db="app"):
    """Log in (raw protocol) and run sql: see query_outcome.  When Sluice
    fails a client it sends a FATAL ErrorResponse and closes; psycopg then
    reports only the message text, so the SQLSTATE is read here off the
    wire."""
    c = raw_login(s, db=db)
    try:
        return query_outcome(c, sql)
    finally:
        c.close()


def idle_then(s, queries, seconds):
    """Log in (raw protocol), run queries, then stay idle: what arrives within
    `seconds` (see next_event), or, if nothing did, the outcome of one more
    query (see query_outcome)."""
    c = raw_login(s)
    try:
        for q in queries:
            c.query(q)
        ev = next_event(c, seconds)
        if ev != "HELD":
            return ev
        c.sock.settimeout(30)
        return query_outcome(c, "SELECT 1")
    finally:
        c.close()


def query_error(s, sql, db="app", user="app"):
    """Run sql through Sluice on a fresh connection; it must fail: the error."""
    try:
        with s.connect(db, user) as c:
            c.execute(sql)
    except psycopg.Error as e:
        return e
    pytest.fail(f"{sql!r} did not fail", pytrace=False)


def backend_pid(s, db="app"):
    return s.scalar("SELECT pg_backend_pid()", db=db)


def max_while(sample, threads, rounds, interval=0.1):
    """Sample a number every interval for `rounds` samples; the maximum."""
    best = 0
    for _ in range(rounds):
        best = max(best, sample())
        time.sleep(interval)
    for t in threads:
        t.finish()
    return best


# ---------------------------------------------------------------------------
# Signals

def test_sigterm_shutdown(pg, sluice):
    """SIGTERM with clients connected (idle, busy, queued for the one server):
    they get 57P01 (or EOF); Sluice exits 0 quickly and removes its socket."""
    s = sluice({"pool_mode": "transaction", "default_pool_size": 1})
    idle = raw_login(s)

    def busy_client():
        with s.connect() as c:
            c.execute("SELECT pg_sleep(60)")
    busy = Bg(busy_client)
    wait_until(lambda: pg.active_queries("SELECT pg_sleep(60)") == 1, timeout=15,
               what="the busy client's query to start")
    queued = raw_login(s)            # logs in, then waits for the one server
    queued.send(pgwire.message(b"Q", b"SELECT 1\0"))
    time.sleep(0.3)

    t0 = time.monotonic()
    assert s.stop(signal.SIGTERM) == 0, "sluice exit status after SIGTERM"
    assert time.monotonic() - t0 < 5, "seconds to exit after SIGTERM"

    ev = next_event(idle, 10)
    assert re.fullmatch(r"ERROR 57P01 .*|CLOSED", ev), f"idle client at shutdown: {ev}"
    busy.finish(30)
    assert busy.error is not None, "busy client's query succeeded although its pooler shut down"
    assert re.search("terminating connection due to administrator command|"
                     "server closed the connection", str(busy.error)), \
        f"busy client at shutdown: {busy.error}"
    try:
        queued.read_result()
        pytest.fail("queued client got an answer after shutdown", pytrace=False)
    except pgwire.PgError as e:
        assert e.sqlstate == "57P01", f"queued client at shutdown: {e.line()}"
    except (pgwire.Closed, OSError):
        pass
    for c in (idle, queued):
        c.close()
    assert not (s.dir / f".s.PGSQL.{s.port}").exists(), "unix socket file left behind after shutdown"
    assert "shutdown complete" in s.log()


def test_sighup_reload(pg, sluice):
    """SIGHUP: a good file is applied (a database added), a bad one is refused
    and the running configuration kept; SIGINT then exits 0."""
    cfg = {"pool_mode": "session", "default_pool_size": 2}
    s = sluice(cfg)
    app = s.default_db()
    s.write_config(dict(cfg, users=[{"name": "other", "pool_mode": "session"}],
                        databases=[app, dict(app, name="added")]))
    s.reload_and_wait("configuration reloaded")
    assert s.scalar("SELECT current_database()", db="added") == "app", "database added by reload"

    with open(s.conf_path, "a") as f:
        f.write("pool_mode = ;\n")
    s.reload_and_wait("reload failed")
    assert s.alive(), "sluice died on a bad reload"
    assert s.scalar("SELECT 'still-added'", db="added") == "still-added", "after a failed reload"
    assert s.stop(signal.SIGINT) == 0, "sluice exit status after SIGINT"


# ---------------------------------------------------------------------------
# CancelRequest

def test_cancel_request(pg, sluice):
    """psql's Ctrl-C (SIGINT) cancels pg_sleep(30) through the pooler with 57014
    within seconds, on a unix-socket and a TCP backend, and the backend is
    reused afterwards; a cancel with a wrong key does nothing."""
    s = sluice({"pool_mode": "session", "default_pool_size": 1, "databases": [
        {"name": "app", "conninfo": pg.conninfo("app", "app")},
        {"name": "apptcp", "conninfo": pg.conninfo("app", "app", tcp=True, password="app_pw")}]})
    for db in ("app", "apptcp"):
        pid1 = backend_pid(s, db)
        t0 = time.monotonic()
        p = subprocess.Popen(["psql", "-X", "-q", "-At", "-v", "VERBOSITY=verbose", "-h", "127.0.0.1",
                              "-p", str(s.port), "-U", "app", "-d", db, "-c", "SELECT pg_sleep(30)"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_until(lambda: pg.active_queries("SELECT pg_sleep(30)") == 1, timeout=15,
                       what=f"{db}: pg_sleep(30) to start")
            p.send_signal(signal.SIGINT)          # what Ctrl-C does
            out, _ = p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        elapsed = time.monotonic() - t0
        assert "57014" in out, f"{db}: cancelled query's SQLSTATE: {out}"
        assert elapsed < 10, f"{db}: seconds until the cancel took effect: {elapsed:.1f}"
        assert backend_pid(s, db) == pid1, f"{db}: the same backend serves the next client"

    # A cancel with a key nobody has must not touch the running query.
    q = "SELECT pg_sleep(3), 'finished'"
    long = Bg(lambda: s.query(q))
    wait_until(lambda: pg.active_queries(q) == 1, timeout=15, what="the long query to start")
    with socket.create_connection(("127.0.0.1", s.port)) as sk:
        sk.sendall(struct.pack("!iiii", 16, 80877102, 12345, 67890))
        sk.settimeout(5)
        assert sk.recv(1) == b"", "the pooler closes a CancelRequest without a word"
    time.sleep(0.5)
    assert pg.active_queries(q) == 1, "a bogus cancel stopped the query"
    long.finish(30)
    assert long.error is None, f"long query did not finish: {long.error}"
    assert long.result and long.result[0][1] == "finished", long.result


# ---------------------------------------------------------------------------
# Timeouts

def scratch(pg, kind, name, definition=""):
    """Fixture body: a fresh TABLE or SEQUENCE `name` in database app that
    user app may use, dropped afterwards."""
    drop = f"DROP {kind} IF EXISTS {name}"
    pg.query(drop, db="app")
    pg.query(f"CREATE {kind} {name} {definition}".rstrip(), db="app")
    pg.query(f"GRANT ALL ON {kind} {name} TO app", db="app")
    yield
    pg.query(drop, db="app")


@pytest.fixture
def it_tmo(pg):
    yield from scratch(pg, "TABLE", "it_tmo", "(v int)")


def test_client_timeouts(pg, sluice, it_tmo):
    """The janitor's timeouts, each with a short value: the affected client
    gets an ErrorResponse naming the timeout, everything else keeps working."""
    s = sluice({"pool_mode": "transaction", "default_pool_size": 1, "query_wait_timeout": 1,
                "idle_transaction_timeout": 1, "query_timeout": 2, "client_login_timeout": 1})

    # idle_transaction_timeout: the transaction is rolled back, the client told.
    ev = idle_then(s, ["BEGIN", "INSERT INTO it_tmo VALUES (1)"], 3)
    assert ev.startswith("ERROR 25P03 "), f"idle_transaction_timeout SQLSTATE: {ev}"
    assert "idle_transaction_timeout" in ev
    assert pg.scalar("SELECT count(*) FROM it_tmo", db="app") == 0, "idle transaction rolled back"

    # query_wait_timeout: one client holds the only server in a transaction.
    def holder():
        got = []
        with s.connect() as c:
            c.execute("BEGIN")
            got.append(c.execute("SELECT 1").fetchone()[0])
            time.sleep(0.9)
            got.append(c.execute("SELECT 2").fetchone()[0])
            time.sleep(0.9)
            c.execute("COMMIT")
        return got
    h = Bg(holder)
    time.sleep(0.3)
    ev = raw_outcome(s, "SELECT 'served'")
    assert ev.startswith("ERROR 57P03 "), f"query_wait_timeout SQLSTATE: {ev}"
    assert "query_wait_timeout" in ev
    h.finish(30)
    assert h.error is None and h.result == [1, 2], f"the holder was disturbed: {h.error or h.result}"

    # query_timeout: the client is failed and the busy server is not reused.
    pid1 = backend_pid(s)
    ev = raw_outcome(s, "SELECT pg_sleep(10)")
    assert ev.startswith("ERROR 57014 "), f"query_timeout SQLSTATE: {ev}"
    assert "query_timeout" in ev
    assert backend_pid(s) != pid1, "server of a timed-out query is not reused"
    wait_until(lambda: pg.backend_gone(pid1), timeout=10,
               what="the timed-out query's backend to end")

    # client_login_timeout: a connection that never sends a startup packet.
    with socket.create_connection(("127.0.0.1", s.port)) as sk:
        sk.settimeout(10)
        data = b""
        while True:
            chunk = sk.recv(4096)
            if not chunk:
                break
            data += chunk
    assert b"client_login_timeout" in data, f"client_login_timeout named in the ErrorResponse: {data!r}"
    s.assert_works("after the timeouts")


def test_server_timeouts_and_min_pool(pg, sluice):
    """server_idle_timeout closes idle servers down to min_pool_size, which the
    janitor also fills; client_idle_timeout closes idle clients; server_lifetime
    recycles idle servers.  (The backend user md5user is used by this test
    only, so servers of other tests' instances do not count.)"""
    s = sluice({"pool_mode": "transaction", "default_pool_size": 5, "min_pool_size": 2,
                "server_idle_timeout": 1, "client_idle_timeout": 1,
                "databases": [{"name": "app", "conninfo": pg.conninfo("app", "md5user")}]})

    def md5user_backends():
        return pg.backend_count("app", "md5user")

    s.query("SELECT 1")     # the pool exists once a client used it
    wait_until(lambda: md5user_backends() == 2, timeout=10, what="min_pool_size backends")
    # Four concurrent queries need four servers; idle ones above 2 go again.
    clients = [Bg(lambda: s.query("SELECT pg_sleep(0.5)")) for _ in range(4)]
    most = 0
    while any(t.is_alive() for t in clients):
        most = max(most, md5user_backends())
        time.sleep(0.05)
    most = max(most, md5user_backends())
    for t in clients:
        assert t.finish().error is None, t.error
    assert most >= 4, f"servers opened for concurrent clients: {most}"
    wait_until(lambda: md5user_backends() == 2, timeout=10,
               what="idle servers above min_pool_size to close")
    time.sleep(1.5)
    assert md5user_backends() == 2, "min_pool_size kept across server_idle_timeout"

    ev = idle_then(s, ["SELECT 1"], 3)
    assert ev.startswith("ERROR 57P05 "), f"client_idle_timeout SQLSTATE: {ev}"
    s.stop()

    life = sluice({"pool_mode": "transaction", "server_lifetime": 1, "server_idle_timeout": 0},
                  name="life")
    pid1 = backend_pid(life)
    wait_until(lambda: pg.backend_gone(pid1), timeout=10,
               what="server_lifetime to close the old server")
    assert backend_pid(life) != pid1, "a new server after server_lifetime"


# ---------------------------------------------------------------------------
# PostgreSQL restarted under load

@pytest.fixture
def pgbench_tables(pg):
    r = subprocess.run(["pgbench", "-i", "-q", "-s", "1", "-h", pg.sock, "-p", str(pg.port),
                        "-U", "postgres", "app"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"pgbench -i failed: {r.stderr[-1000:]}"
    pg.query("GRANT ALL ON ALL TABLES IN SCHEMA public TO app", db="app")
    yield
    pg.ensure_up()
    pg.query("DROP TABLE IF EXISTS pgbench_accounts, pgbench_branches, pgbench_history, "
             "pgbench_tellers", db="app")


@pytest.mark.slow
@pytest.mark.fault
def test_backend_restart(pg, sluice, tdir, pgbench_tables):
    """PostgreSQL restarted under load: pgbench through Sluice goes on after
    the restart (clients mid-transaction lose it, the others wait), Sluice
    itself keeps running, and no client ever gets another one's answer.  A
    login failure that waiting cannot cure (unknown database) still fails
    fast."""
    s = sluice({"pool_mode": "transaction", "default_pool_size": 4, "server_login_retry": 0.5,
                "query_wait_timeout": 60, "databases": [
                    {"name": "app", "conninfo": pg.conninfo("app", "app")},
                    {"name": "nodb", "conninfo": pg.conninfo("it_no_such_db", "app")}]})
    pgb_out = open(tdir / "pgbench.out", "w")
    t_start = time.monotonic()
    pgb = subprocess.Popen(["pgbench", "-n", "-S", "-c", "16", "-j", "2", "-T", "20", "-P", "1",
                            "-h", "127.0.0.1", "-p", str(s.port), "-U", "app", "app"],
                           stdout=pgb_out, stderr=subprocess.STDOUT)
    # A checking client: every answer must be its own question.
    stop = threading.Event()

    def checker():
        i = 0
        while not stop.is_set():
            i += 1
            try:
                got = s.scalar(f"SELECT {i}")
            except psycopg.Error:
                continue
            if got != i:
                return f"MISMATCH asked {i} got {got!r}"
        return f"checked {i}"
    chk = Bg(checker)
    try:
        time.sleep(4)
        pg.restart()
        restarted_at = time.monotonic() - t_start
        try:
            pgb.wait(60)
        except subprocess.TimeoutExpired:
            pytest.fail("pgbench did not finish", pytrace=False)
    finally:
        if pgb.poll() is None:
            pgb.kill()
            pgb.wait()
        pgb_out.close()
        stop.set()
    chk.finish(30)
    out = (tdir / "pgbench.out").read_text()
    assert "number of transactions actually processed" in out, f"pgbench did not finish: {out[-500:]}"
    assert chk.error is None, f"checking client failed: {chk.error!r}"
    assert chk.result.startswith("checked"), f"answers always belong to their own query: {chk.result}"
    # pgbench progress lines after the restart show transactions again.  (The
    # restart takes seconds on a loaded machine: pgbench runs long enough, and
    # only seconds after both 9 s and the restart's end count.)
    after = 0
    for m in re.finditer(r"^progress: ([0-9.]+) s, ([0-9.]+) tps", out, re.M):
        if float(m.group(1)) >= max(9.0, restarted_at + 1) and float(m.group(2)) > 0:
            after += 1
    assert after >= 2, (f"pgbench progress seconds with tps > 0 after the restart "
                        f"(done at {restarted_at:.1f} s): {after}\n{out}")
    assert s.alive(), "Sluice died during the restart"
    s.assert_works("after the PostgreSQL restart")
    e = query_error(s, "SELECT 1", db="nodb")
    assert "does not exist" in str(e), f"permanent login error reported: {e}"
    t0 = time.monotonic()
    e = query_error(s, "SELECT 1", db="nodb")
    assert "does not exist" in str(e), f"permanent login error reported: {e}"
    assert time.monotonic() - t0 < 5, "permanent login error fails fast"


# ---------------------------------------------------------------------------
# Limits, reserve pool, round robin

def test_client_limits(pg, sluice):
    """Client limits per database and per user refuse the client over the
    limit with 53300 naming the limit; others are not affected."""
    app = {"name": "app", "conninfo": pg.conninfo("app", "app")}
    s = sluice({"max_db_client_connections": 2, "max_user_client_connections": 3,
                "databases": [app, dict(app, name="app2")]})
    held = [raw_login(s), raw_login(s)]
    try:
        e = login_error(s)
        assert e.sqlstate == "53300", f"third client of database app: {e.line()}"
        assert "max_db_client_connections" in e.fields.get("M", ""), e.line()
        assert s.scalar("SELECT 'other-db'", db="app2") == "other-db", \
            "another database is not limited by app's clients"
        held.append(raw_login(s, db="app2"))
        e = login_error(s, db="app2")
        assert e.sqlstate == "53300", f"fourth client of user app: {e.line()}"
        assert "max_user_client_connections" in e.fields.get("M", ""), e.line()
    finally:
        for c in held:
            c.close()


def test_max_db_connections(pg, sluice):
    """max_db_connections caps servers over all pools of a database."""
    s = sluice({"pool_mode": "transaction", "default_pool_size": 5, "max_db_connections": 2,
                "databases": [{"name": "lim", "conninfo": f"host={pg.sock} port={pg.port} dbname=app"}]})
    clients = [Bg(lambda u=("app" if i % 2 == 0 else "md5user"):
                  s.query("SELECT pg_sleep(0.7)", db="lim", user=u, application_name="it_dblimit"))
               for i in range(1, 7)]
    most = max_while(lambda: pg.scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = 'app' AND usename IN ('app', 'md5user') "
        "AND query = 'SELECT pg_sleep(0.7)' AND state = 'active'"), clients, 25)
    for t in clients:
        assert t.error is None, f"a client of the limited database failed: {t.error}"
    assert most <= 2, f"concurrent backends under max_db_connections = 2: {most}"
    assert most >= 1, "backends were used"


def test_reserve_pool_and_round_robin(pg, sluice):
    """The reserve pool opens an extra server only after reserve_pool_timeout;
    round robin hands idle servers out in turn."""
    s = sluice({"pool_mode": "transaction", "default_pool_size": 1, "reserve_pool_size": 1,
                "reserve_pool_timeout": 0.5, "server_round_robin": True,
                "databases": [{"name": "app", "conninfo": pg.conninfo("app", "md5user")}]})
    first = Bg(lambda: s.query("SELECT pg_sleep(2)"))
    wait_until(lambda: pg.active_queries("SELECT pg_sleep(2)", user="md5user") == 1, timeout=15,
               what="the first client's query to start")
    t0 = time.monotonic()
    assert s.scalar("SELECT 'reserve'") == "reserve", "second client served"
    assert time.monotonic() - t0 < 2, "served by the reserve before the first query ended"
    assert first.is_alive(), "served by the reserve before the first query ended"
    assert pg.backend_count("app", "md5user") == 2, "pool size 1 + reserve 1"
    assert first.finish().error is None, first.error
    # Round robin: with two idle servers, consecutive queries alternate.
    a, b, c = backend_pid(s), backend_pid(s), backend_pid(s)
    assert a != b, "round robin: next server"
    assert a == c, "round robin: back to the first"


# ---------------------------------------------------------------------------
# Server checks, transaction_timeout

@pytest.fixture
def it_check_seq(pg):
    yield from scratch(pg, "SEQUENCE", "it_check_seq")


def test_server_check_and_transaction_timeout(pg, sluice, it_check_seq):
    """server_check_query runs before reusing a server idle for
    server_check_delay (0 = always); transaction_timeout ends a transaction
    open too long, cancelling its query."""
    s = sluice({"pool_mode": "transaction", "default_pool_size": 1, "server_check_delay": 0,
                "server_check_query": "SELECT nextval('it_check_seq')", "transaction_timeout": 1})
    s.query("SELECT 1")
    v1 = pg.scalar("SELECT last_value FROM it_check_seq", db="app")
    for _ in range(3):
        s.query("SELECT 1")
    v2 = pg.scalar("SELECT last_value FROM it_check_seq", db="app")
    assert v2 - v1 >= 3, f"server_check_query ran before each reuse ({v1} -> {v2})"

    ev = idle_then(s, ["BEGIN", "SELECT 1"], 2.5)
    assert ev.startswith("ERROR 25P04 "), f"transaction_timeout SQLSTATE: {ev}"

    with pytest.raises(psycopg.Error) as ei:
        with s.connect() as c:
            c.execute("BEGIN")
            c.execute("SELECT pg_sleep(20)")
    assert "transaction_timeout" in str(ei.value), f"transaction_timeout during a query: {ei.value!r}"
    wait_until(lambda: pg.active_queries("SELECT pg_sleep(20)") == 0, timeout=10,
               what="the timed-out query to stop")
    s.assert_works("after transaction_timeout")


def test_server_check_query_failure(pg, sluice):
    """A server failing server_check_query is closed and the client served
    anyway, by a new server."""
    s = sluice({"pool_mode": "transaction", "default_pool_size": 1, "server_check_delay": 0,
                "server_check_query": "SELECT 1/0"}, name="bad")
    pid1 = backend_pid(s)
    pid2 = backend_pid(s)
    assert pid1 != pid2, "a server failing its check is replaced"
    assert "server_check_query failed" in s.log(), "failed check not logged"


# ---------------------------------------------------------------------------
# Per-user pool size, autodb

def test_user_pool_size_and_autodb(pg, sluice):
    """A users entry's pool_size wins over default_pool_size; pools made
    through the "*" entry are closed after autodb_idle_timeout without
    clients, and made again on demand."""
    s = sluice({"pool_mode": "transaction", "default_pool_size": 5, "autodb_idle_timeout": 1,
                "users": [{"name": "app", "pool_size": 1}],
                "databases": [{"name": "app", "conninfo": f"host={pg.sock} port={pg.port} dbname=app"},
                              {"name": "*", "conninfo": f"host={pg.sock} port={pg.port} user=md5user"}]})
    clients = [Bg(lambda: s.query("SELECT pg_sleep(0.6)")) for _ in range(3)]
    most = max_while(lambda: pg.active_queries("SELECT pg_sleep(0.6)"), clients, 15)
    for t in clients:
        assert t.error is None, f"a client of the size-1 user pool failed: {t.error}"
    assert most == 1, "concurrent backends with the user's pool_size = 1"
    assert s.scalar("SELECT current_database() || '/' || current_user", db="postgres") == \
        "postgres/md5user", "wildcard database served"
    assert pg.backend_count("postgres", "md5user") == 1, "wildcard pool's server after use"
    wait_until(lambda: pg.backend_count("postgres", "md5user") == 0, timeout=10,
               what="autodb_idle_timeout to close the wildcard pool's server")
    assert s.scalar("SELECT 'again'", db="postgres") == "again", \
        "wildcard pool made again after it was forgotten"


# ---------------------------------------------------------------------------
# server_connect_timeout, keepalive

class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never says a word."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.held = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.done.is_set():
            try:
                self.held.append(self.sock.accept()[0])
            except (socket.timeout, OSError):
                pass

    def close(self):
        self.done.set()
        self.thread.join(5)
        for c in self.held + [self.sock]:
            c.close()


def test_server_connect_timeout_and_keepalive(pg, sluice):
    """server_connect_timeout: a "database" that accepts TCP and never answers
    makes the login time out; the waiting client is failed by Sluice's own
    timeout, and nothing else is affected.  tcp_keepalive settings are visible
    on the client's socket."""
    silent = SilentServer()
    try:
        s = sluice({"server_connect_timeout": 1, "client_login_timeout": 3, "tcp_keepidle": 77,
                    "databases": [
                        {"name": "silent", "conninfo": f"host=127.0.0.1 port={silent.port} dbname=x user=x"},
                        {"name": "app", "conninfo": pg.conninfo("app", "app")}]})
        e = query_error(s, "SELECT 1", db="silent")
        assert "client_login_timeout" in str(e), \
            f"client of an unresponsive database failed by Sluice's timeout: {e}"
        assert "server_connect_timeout" in s.log(), "server_connect_timeout not logged"
        # keepalive with tcp_keepidle = 77 s on an accepted client socket.
        held = raw_login(s)
        try:
            out = subprocess.run(["ss", "-tnoH", "state", "established", f"( sport = :{s.port} )"],
                                 capture_output=True, text=True, timeout=30)
            text = out.stdout + out.stderr
            assert "keepalive" in text, f"keepalive timer on the client socket: {text}"
            assert re.search(r"keepalive,1min1[0-7]sec", text), f"tcp_keepidle applied: {text}"
        finally:
            held.close()
        s.assert_works("after the unresponsive database")
    finally:
        silent.close()
