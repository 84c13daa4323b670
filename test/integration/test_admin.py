"""test_admin.py -- the admin console, statistics, the HTTP endpoint and the
shutdown commands.

Covers: who may use the console (admin_users, stats_users, the unix-socket
OS-user rule, the pgbouncer alias) and how it answers unknown commands and
driver SETs; SHOW POOLS / CLIENTS / SERVERS / STATS / TOTALS / LATENCY / MEM
and the periodic stats log line; PAUSE / RESUME, KILL_CLIENT / KILL,
DISABLE / ENABLE, RECONNECT / WAIT_CLOSE, SET / SHOW CONFIG / RELOAD; the
console over the extended protocol (it_extended); /metrics (checked with
promcheck.py), /healthz and /readyz; SHUTDOWN WAIT_FOR_CLIENTS and
WAIT_FOR_SERVERS.

"""

import re
import subprocess
import time
import urllib.error
import urllib.request

import psycopg
import pytest

import pgwire
import promcheck
from rawpg import Bg, login_error, next_event, raw_login
from sluicetest import free_port, wait_until

ADMIN_USERS = "admin"


# ---------------------------------------------------------------------------
# Helpers

def _txt(v):
    """A console value as psql would print it (NULL -> '')."""
    return "" if v is None else str(v)


def console(s, user="admin", password=None, tcp=False, notices=None):
    """A console connection: the unix socket by default (Sluice's OS user is an
    admin there without a password), or TCP as USER with PASSWORD."""
    kw = {} if password is None else {"password": password}
    conn = psycopg.connect(s.dsn("sluice", user, unix=not tcp, **kw), autocommit=True,
                           prepare_threshold=None)
    if notices is not None:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    return conn


def run(conn, command):
    """Run one console command on CONN; rows as dicts of text values."""
    cur = conn.execute(command.encode(), prepare=False)
    if cur.description is None:
        return []
    cols = [d.name for d in cur.description]
    return [{k: _txt(v) for k, v in zip(cols, r)} for r in cur.fetchall()]


def columns(s, command):
    with console(s) as c:
        cur = c.execute(command.encode(), prepare=False)
        return [d.name for d in cur.description]


def col1(s, command, column, **filters):
    """The value of COLUMN in the only matching row ('' if none, fails if
    several)."""
    vals = s.col(command, column, **filters)
    assert len(vals) <= 1, f"{command}: several rows match {filters}: {vals}"
    return vals[0] if vals else ""


def admin_error(s, command, user="admin", password=None, tcp=False):
    """Run COMMAND, which must fail; return (sqlstate, 'message detail hint')."""
    with console(s, user, password, tcp) as c:
        with pytest.raises(psycopg.Error) as ei:
            run(c, command)
    d = ei.value.diag
    text = " ".join(x for x in (d.message_primary, d.message_detail, d.message_hint) if x)
    return d.sqlstate, text


def query_is_active(pg, sql):
    return pg.active_queries(sql) == 1


def http_get(port, path):
    """(status, body) of GET http://127.0.0.1:PORT/PATH."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def admin_conf(**extra):
    conf = {"admin_users": ADMIN_USERS}
    conf.update(extra)
    return conf


# ---------------------------------------------------------------------------
# Access

def test_admin_access(sluice, tdir):
    """Who may use the console, and how it answers."""
    (tdir / "main").mkdir()
    (tdir / "main" / "users.txt").write_text(
        '"admin" "admin_secret_pw"\n"mon" "mon_secret_pw"\n"app" "app_pw"\n')
    s = sluice({"auth_type": "md5", "auth_file": "users.txt", "admin_users": ["admin"],
                       "stats_users": "mon"})

    with console(s, "admin", "admin_secret_pw", tcp=True) as c:
        version = run(c, "SHOW VERSION")[0]["version"]
    assert re.match(r"^Sluice [0-9]+\.[0-9]+", version), version
    with psycopg.connect(s.dsn("pgbouncer", "admin", password="admin_secret_pw"),
                         autocommit=True, prepare_threshold=None) as c:
        version = run(c, "SHOW VERSION")[0]["version"]
    assert version.startswith("Sluice "), f"SHOW VERSION through the pgbouncer alias: {version}"

    # Not in admin_users/stats_users: refused before any password is asked
    # (pgwire cannot answer a password request: it would raise RuntimeError).
    e = login_error(s, db="sluice")
    assert e.sqlstate == "28000"
    assert "not allowed" in e.fields.get("M", "")
    with pytest.raises(psycopg.OperationalError) as ei:
        console(s, "admin", "wrong_pw", tcp=True)
    assert "password authentication failed" in str(ei.value)

    # stats_users: SHOW yes, control commands no.
    with console(s, "mon", "mon_secret_pw", tcp=True) as c:
        run(c, "SHOW POOLS")
    state, text = admin_error(s, "PAUSE", "mon", "mon_secret_pw", tcp=True)
    assert state == "42501", text
    assert "admin access needed" in text

    # Unknown commands list the valid ones; harmless driver SETs pass.
    state, text = admin_error(s, "SHOW NONSENSE", "admin", "admin_secret_pw", tcp=True)
    assert state == "42601", text
    assert "SHOW HELP" in text
    assert "KILL_CLIENT" in text, f"the error lists the valid commands: {text}"
    notices = []
    with console(s, "admin", "admin_secret_pw", tcp=True, notices=notices) as c:
        run(c, "SET extra_float_digits = 3")
        run(c, "SET client_encoding TO 'UTF8'")
        enc = run(c, "SHOW client_encoding")
    assert "SET ignored" in notices, f"driver SET: notices {notices}"
    assert "UTF-8" in [v for r in enc for v in r.values()], f"SHOW client_encoding: {enc}"

    # Same OS user over the unix socket: an admin without a password.
    with console(s, "someone_else") as c:
        run(c, "RELOAD")
        state_rows = run(c, "SHOW STATE")
    assert {"key": "active", "value": "yes"} in state_rows, f"SHOW STATE: {state_rows}"
    assert s.scalar("SELECT 'still-works'", password="app_pw") == "still-works", \
        "a normal client after the console checks"


# ---------------------------------------------------------------------------
# SHOW commands and statistics

POOLS_COLUMNS = ("database|user|cl_active|cl_waiting|cl_active_cancel_req|cl_waiting_cancel_req|"
                 "sv_active|sv_active_cancel|sv_being_canceled|sv_idle|sv_used|sv_tested|sv_login|"
                 "maxwait|maxwait_us|pool_mode|load_balance_hosts").split("|")
CLIENTS_COLUMNS = ("type|user|database|replication|state|addr|port|local_addr|local_port|"
                   "connect_time|request_time|wait|wait_us|close_needed|ptr|link|remote_pid|tls|"
                   "application_name|prepared_statements|id").split("|")


def test_admin_show_pools_clients_servers(sluice, pg):
    """SHOW POOLS / CLIENTS / SERVERS while one client runs a query on the only
    server and another waits for it."""
    s = sluice(admin_conf(pool_mode="transaction", default_pool_size=1))
    assert columns(s, "SHOW POOLS") == POOLS_COLUMNS, "SHOW POOLS columns (PgBouncer 1.25)"
    assert columns(s, "SHOW CLIENTS") == CLIENTS_COLUMNS, "SHOW CLIENTS columns"

    a_sql = "SELECT 'a-done' FROM pg_sleep(3)"
    a = Bg(lambda: s.scalar(a_sql))
    wait_until(lambda: query_is_active(pg, a_sql), 10, what="A's query to run")
    b = Bg(lambda: s.scalar("SELECT 'b-done'"))
    wait_until(lambda: col1(s, "SHOW POOLS", "cl_waiting", database="app") == "1", 10,
               what="B to show as waiting")
    assert col1(s, "SHOW POOLS", "cl_active", database="app") == "1", "cl_active (A)"
    assert col1(s, "SHOW POOLS", "sv_active", database="app") == "1", "sv_active"
    assert col1(s, "SHOW POOLS", "sv_idle", database="app") == "0", "sv_idle"
    assert col1(s, "SHOW POOLS", "pool_mode", database="app") == "transaction", "pool_mode"
    assert sorted(s.col("SHOW CLIENTS", "state", database="app")) == ["active", "waiting"], \
        "client states"
    link = s.col("SHOW SERVERS", "link", database="app")
    assert len(link) == 1 and re.match(r"^0x[0-9a-f]+$", link[0]), f"the active server's link: {link}"
    assert col1(s, "SHOW CLIENTS", "ptr", database="app", state="active") == link[0], \
        "server link = the active client's ptr"
    assert s.col("SHOW SERVERS", "state", database="app").count("active") == 1, "one active server"

    assert b.value(15) == "b-done"
    assert a.value(5) == "a-done"
    wait_until(lambda: col1(s, "SHOW POOLS", "sv_idle", database="app") == "1", 5,
               what="the server to be idle afterwards")
    assert col1(s, "SHOW POOLS", "cl_waiting", database="app") == "0", "cl_waiting afterwards"
    # maxwait counted B's wait, and the wait histogram saw it.
    wait_max = int(col1(s, "SHOW LATENCY", "wait_max_us", database="app"))
    assert wait_max > 100000, f"SHOW LATENCY wait_max_us {wait_max} (B waited for A's 3 s query)"


def test_admin_show_stats_totals(sluice):
    """SHOW STATS totals after a known number of transactions; SHOW MEM spare
    buffers; averages and the log_stats line after a stats period."""
    s = sluice(admin_conf(pool_mode="transaction", stats_period=1, log_format="json"))
    r = s.psql(input="".join(f"SELECT {i};\n" for i in range(30)))
    assert r.returncode == 0, f"queries failed: {r.stderr}"
    r = s.psql(input="BEGIN;\nSELECT 1;\nSELECT 2;\nCOMMIT;\n")
    assert r.returncode == 0, f"transaction failed: {r.stderr}"
    # 30 one-statement transactions + 1 of four statements.
    assert col1(s, "SHOW STATS_TOTALS", "xact_count", database="app") == "31", "xact_count"
    assert col1(s, "SHOW STATS_TOTALS", "query_count", database="app") == "34", "query_count"
    assert int(col1(s, "SHOW STATS_TOTALS", "bytes_received", database="app")) > 300
    assert int(col1(s, "SHOW STATS_TOTALS", "bytes_sent", database="app")) > 300
    assert int(col1(s, "SHOW STATS", "total_query_time", database="app")) > 0
    assert col1(s, "SHOW TOTALS", "value", name="total_xact_count") == "31", \
        "SHOW TOTALS total_xact_count"
    assert col1(s, "SHOW LATENCY", "query_count", database="app") == "34", "SHOW LATENCY query_count"

    # Three clients in a transaction at once hold three input buffers; they
    # give them back when done, and a few are kept as spares (the console's
    # own SHOW MEM takes one), counted in memtotal.
    procs = [subprocess.Popen(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                               "-p", str(s.port), "-U", "app", "-d", "app",
                               "-c", "SELECT pg_sleep(0.5)"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, f"a concurrent client failed: {err}"
    with console(s) as c:
        mem = [r for r in run(c, "SHOW MEM") if r["name"] == "iobuf_cache"]
    assert len(mem) == 1, f"SHOW MEM iobuf_cache: {mem}"
    spare, size, total = (int(mem[0][k]) for k in ("free", "size", "memtotal"))
    assert 1 <= spare <= 32, f"SHOW MEM iobuf_cache free (1..32 spare buffers): {spare}"
    assert total >= spare * size, f"SHOW MEM iobuf_cache memtotal {total} counts the spares"

    # The period that held the queries ends within a second: averages and a
    # JSON stats line with the figures as keys.
    wait_until(lambda: re.search(r'"xacts_per_s":"[1-9]', s.log()), 5,
               what="a stats line with transactions")
    wait_until(lambda: '"database":"app","xacts_per_s"' in s.log(), 5, what="a JSON stats line")
    first = next(line for line in s.log().splitlines() if '"xacts_per_s"' in line)
    assert '"wait_us"' in first, f"stats line keys: {first}"


# ---------------------------------------------------------------------------
# Control commands

def test_admin_pause_resume(sluice, pg):
    """PAUSE waits for the running query, closes the servers, holds new
    queries until RESUME; PAUSE/RESUME of one database."""
    s = sluice(admin_conf(pool_mode="transaction"))
    s.scalar("SELECT 1")  # warm-up
    long_sql = "SELECT 'long-done' FROM pg_sleep(2)"
    long = Bg(lambda: s.scalar(long_sql))
    wait_until(lambda: query_is_active(pg, long_sql), 10, what="the long query to run")
    with console(s) as c:
        run(c, "PAUSE")
    # PAUSE returned only once the running query was done.
    assert pg.active_queries(long_sql) == 0, "PAUSE returned before the running query finished"
    assert long.value(2) == "long-done", "PAUSE returned before the running query finished"
    assert pg.backend_count("app", "app") == 0, "backends while paused"
    with console(s) as c:
        assert {"key": "paused", "value": "yes"} in run(c, "SHOW STATE"), "SHOW STATE"
    assert col1(s, "SHOW DATABASES", "paused", name="app") == "1", "SHOW DATABASES paused"
    state, text = admin_error(s, "PAUSE")
    assert "already paused" in text, f"second PAUSE: {state} {text}"

    q = Bg(lambda: s.scalar("SELECT 'resumed'"))
    wait_until(lambda: col1(s, "SHOW POOLS", "cl_waiting", database="app") == "1", 10,
               what="the query to wait")
    time.sleep(0.5)
    assert not q.done(), f"query answered while paused: {q.result!r} {q.error!r}"
    with console(s) as c:
        run(c, "RESUME")
    assert q.value(10) == "resumed", "query after RESUME"

    # PAUSE of one database only.
    with console(s) as c:
        run(c, "PAUSE app")
        assert {"key": "active", "value": "yes"} in run(c, "SHOW STATE"), \
            "PAUSE db leaves the pooler active"
    state, text = admin_error(s, "PAUSE nosuchdb")
    assert state == "3D000", f"PAUSE nosuchdb: {text}"
    with console(s) as c:
        run(c, "RESUME app")
    s.assert_works()


def test_admin_kill_disable(sluice):
    """KILL_CLIENT drops exactly one client; KILL drops every client of a
    database and pauses it; DISABLE refuses new clients."""
    s = sluice(admin_conf())
    h1 = raw_login(s, application_name="holder1")
    h2 = raw_login(s, application_name="holder2")
    try:
        id1 = col1(s, "SHOW CLIENTS", "id", application_name="holder1")
        assert re.match(r"^[0-9]+$", id1), f"holder 1's id: {id1!r}"
        with console(s) as c:
            run(c, f"KILL_CLIENT {id1}")
        assert next_event(h1, 10, code_only=True) == "E:57P01", "holder 1 told it was killed"
        assert len(s.col("SHOW CLIENTS", "id", database="app")) == 1, "clients left after KILL_CLIENT"
        assert s.col("SHOW CLIENTS", "id", application_name="holder1") == [], "holder 1 gone"
        state, text = admin_error(s, "KILL_CLIENT 999999")
        assert "client not found" in text, f"KILL_CLIENT unknown id: {state} {text}"

        with console(s) as c:
            run(c, "KILL app")
        assert next_event(h2, 10, code_only=True) == "E:57P01", "holder 2 killed"
        assert col1(s, "SHOW DATABASES", "paused", name="app") == "1", "KILL pauses the database"
        with console(s) as c:
            run(c, "RESUME app")
    finally:
        h1.close()
        h2.close()

    with console(s) as c:
        run(c, "DISABLE app")
    assert col1(s, "SHOW DATABASES", "disabled", name="app") == "1", "SHOW DATABASES disabled"
    e = login_error(s)
    assert e.sqlstate == "57P03", f"client of a disabled database: {e.line()}"
    with console(s) as c:
        run(c, "ENABLE app")
    s.assert_works()


def test_admin_reconnect(sluice, pg):
    """RECONNECT replaces the backends; WAIT_CLOSE waits for the old ones; a
    server busy during RECONNECT is closed when released."""
    s = sluice(admin_conf(pool_mode="transaction", default_pool_size=1))
    before = s.scalar("SELECT pg_backend_pid()")
    with console(s) as c:
        run(c, "RECONNECT app")
        run(c, "WAIT_CLOSE app")
    wait_until(lambda: pg.backend_gone(before), 10, what=f"old backend {before} to go")
    after = s.scalar("SELECT pg_backend_pid()")
    assert after != before, "backend after RECONNECT"
    assert col1(s, "SHOW SERVERS", "close_needed", database="app") == "0", \
        "close_needed of the new server"

    slow_sql = "SELECT 'slept' FROM pg_sleep(1)"
    slow = Bg(lambda: s.scalar(slow_sql))
    wait_until(lambda: query_is_active(pg, slow_sql), 10, what="the slow query to run")
    with console(s) as c:
        run(c, "RECONNECT")
    assert col1(s, "SHOW SERVERS", "close_needed", database="app") == "1", "close_needed while busy"
    with console(s) as c:
        run(c, "WAIT_CLOSE")
    assert pg.active_queries(slow_sql) == 0, \
        "WAIT_CLOSE returned before the busy server was released"
    assert slow.value(2) == "slept", "WAIT_CLOSE returned before the busy server was released"
    wait_until(lambda: pg.backend_gone(after), 10,
               what=f"busy backend {after} to close after release")


def config_row(s, key):
    with console(s) as c:
        rows = [r for r in run(c, "SHOW CONFIG") if r["key"] == key]
    assert len(rows) == 1, f"SHOW CONFIG {key}: {rows}"
    return rows[0]


def test_admin_set_config_reload(sluice):
    """SET changes reloadable settings (SHOW CONFIG shows it) until RELOAD;
    a broken file fails RELOAD."""
    s = sluice(admin_conf(default_pool_size=20))
    with console(s) as c:
        run(c, "SET default_pool_size = 7")
    r = config_row(s, "default_pool_size")
    assert (r["value"], r["default"], r["changeable"]) == ("7", "20", "yes"), \
        f"SHOW CONFIG value|default|changeable after SET: {r}"
    state, text = admin_error(s, "SET listen_port = 1234")
    assert "restart" in text, f"SET listen_port: {state} {text}"
    state, text = admin_error(s, "SET no_such_setting = 1")
    assert state == "42704", f"SET unknown: {text}"
    state, text = admin_error(s, "SET default_pool_size = many")
    assert state == "22023", f"SET bad value: {text}"
    assert config_row(s, "listen_port")["changeable"] == "no", "listen_port changeable"
    with console(s) as c:
        run(c, "RELOAD")
    assert config_row(s, "default_pool_size")["value"] == "20", "RELOAD restores the file's value"
    with open(s.conf_path, "a") as f:
        f.write("this is not a config\n")
    state, text = admin_error(s, "RELOAD")
    assert state == "F0000", f"RELOAD of a broken file: {text}"
    s.assert_works()


def test_admin_extended_protocol(sluice, build_dir):
    """psycopg 3 and JDBC use the extended protocol on the console too
    (libpq's PQexecParams / PQprepare / PQdescribePrepared via it_extended)."""
    s = sluice(admin_conf())
    s.scalar("SELECT 1")  # warm-up: the app pool exists
    conn = f"host=127.0.0.1 port={s.port} user=admin dbname=sluice"
    r = subprocess.run([str(build_dir / "it_extended"), conn, "x:SET extra_float_digits = 3",
                        "x:SHOW VERSION", "x:SHOW BOGUS", "x:SHOW POOLS", "prep:s1:SHOW DATABASES",
                        "desc:s1", "exec:s1", "s:SHOW STATE"],
                       capture_output=True, text=True, timeout=60)
    out = r.stdout
    assert r.returncode == 0, f"it_extended: {out} {r.stderr}"
    lines = out.splitlines()
    assert "TAG SET" in out, "extended SET"
    assert any(line.startswith("Sluice ") for line in lines), f"extended SHOW VERSION: {out}"
    assert "ERROR 42601" in out, "extended unknown command"
    pools = [line for line in lines if line.startswith("app|app|")]
    assert pools and re.match(r"^app\|app\|0\|0\|", pools[0]), f"extended SHOW POOLS row: {out}"
    assert "COLUMNS name:25 host:25 port:23 database:25" in out, "Describe of a prepared SHOW"
    assert "active|yes" in out, "a simple query after the extended ones"


# ---------------------------------------------------------------------------
# HTTP endpoint

@pytest.mark.fault
def test_metrics_endpoint(sluice, pg):
    """/metrics parses as Prometheus text and counts what happened; /healthz;
    /readyz turns 503 while the database is down and 200 when it is back."""
    hp = free_port()
    s = sluice(admin_conf(pool_mode="transaction", http_port=hp, server_login_retry=1))
    r = s.psql(input="".join(f"SELECT {i};\n" for i in range(25)))
    assert r.returncode == 0, f"queries failed: {r.stderr}"
    status, text = http_get(hp, "/metrics")
    assert status == 200, f"GET /metrics: {status} {text[:500]}"
    try:
        expo = promcheck.parse(text)
    except promcheck.Violation as e:
        pytest.fail(f"/metrics is not valid Prometheus text: line {e.line}: {e.msg}\n{text[:2000]}")
    series = ['sluice_transactions_total{database="app",user="app"}',
              'sluice_queries_total{database="app",user="app"}',
              'sluice_query_duration_seconds_count{database="app",user="app"}',
              'sluice_pool_server_idle_connections{database="app",user="app"}',
              'sluice_query_duration_seconds_bucket{database="app",user="app",le="+Inf"}']
    values = [promcheck.lookup(expo, x) for x in series]
    assert values == ["25", "25", "25", "1", "25"], f"metric values: {dict(zip(series, values))}"
    assert "# TYPE sluice_wait_duration_seconds histogram" in text, "wait histogram"
    assert "sluice_process_resident_memory_bytes" in text, "process memory"
    assert http_get(hp, "/healthz")[0] == 200, "/healthz"
    assert http_get(hp, "/readyz")[0] == 200, "/readyz"
    assert http_get(hp, "/nope")[0] == 404, "unknown path"

    try:
        pg.stop()
        assert not pg.is_up(), "could not stop PostgreSQL"
        wait_until(lambda: http_get(hp, "/readyz")[0] == 503, 10,
                   what="/readyz to turn 503 with the database stopped")
        body = http_get(hp, "/readyz")[1]
    finally:
        pg.ensure_up()
    assert "database app unreachable" in body, f"/readyz reason: {body}"
    wait_until(lambda: http_get(hp, "/readyz")[0] == 200, 15, what="/readyz to recover")
    s.assert_works("after the database restart")


# ---------------------------------------------------------------------------
# Shutdown

def test_admin_shutdown_wait_for_clients(sluice):
    """SHUTDOWN WAIT_FOR_CLIENTS: no new clients, exit when the last one
    leaves, undisturbed meanwhile."""
    s = sluice(admin_conf())
    h = raw_login(s)
    try:
        with console(s) as c:
            run(c, "SHUTDOWN WAIT_FOR_CLIENTS")
        assert s.alive(), "exited while a client was connected"
        with pytest.raises(psycopg.OperationalError):
            s.scalar("SELECT 1")  # a new client must not get in during the shutdown
        # The connected client is not disturbed (nothing arrives for 2 s).
        assert next_event(h, 2, code_only=True) == "HELD", "the connected client was disturbed"
        assert s.alive(), "exited while a client was connected"
        h.send(pgwire.message(b"X"))
    finally:
        h.close()
    s.wait_exit(15)
    assert "no client connection left" in s.log(), "no shutdown line in the log"


def test_admin_shutdown_wait_for_servers(sluice, pg):
    """SHUTDOWN WAIT_FOR_SERVERS: the running query finishes, then Sluice
    exits."""
    s = sluice(admin_conf(pool_mode="transaction"))
    sql = "SELECT 'finished' FROM pg_sleep(1)"
    q = Bg(lambda: s.scalar(sql))
    wait_until(lambda: query_is_active(pg, sql), 10, what="the query to run")
    with console(s) as c:
        run(c, "SHUTDOWN WAIT_FOR_SERVERS")
    assert s.alive(), "exited while a server was busy"
    s.wait_exit(15)
    assert q.value(5) == "finished", "the running query was cut off"
    assert "no server connection left" in s.log(), "no shutdown line in the log"
