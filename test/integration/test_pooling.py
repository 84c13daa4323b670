"""test_pooling.py -- pooling and relaying through Sluice.

Covers: the command line (--version, --help, --check); many clients through
a small transaction pool (it_concurrent, pgbench with 1,000 clients); which
server a client gets in transaction, session and statement mode; per-user
and per-database pool_mode and the "*" database; clients that vanish inside
a transaction, while queued, or mid-query; backends that die while idle;
server_reset_query; tracked settings (TimeZone, client_encoding) following
their client from server to server; COPY IN/OUT of ~50 MB byte for byte;
a slow reader of a huge result with bounded memory.

Interleavings of several clients use raw connections (pgwire.Conn) so that
each statement's server is known; psql and pgbench stay where the old bash
tests used them as real clients (Terminate inside a transaction, COPY,
client encodings, PGOPTIONS/PGTZ).
"""

import contextlib
import hashlib
import io
import os
import re
import signal
import subprocess
import time
import types

import psycopg
import pytest

import pgwire
from pgwire import PgError
from rawpg import bye, raw_login, rst_close, send_query, val
from sluicetest import wait_until


# ---------------------------------------------------------------------------
# Helpers

def psql_argv(s, *args, db="app", user="app"):
    return ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
            "-p", str(s.port), "-U", user, "-d", db, *args]


def psql_ok(s, *args, **kw):
    """psql through the pooler; must succeed; returns stdout without the final newline."""
    r = s.psql(*args, **kw)
    assert r.returncode == 0, f"psql {args}: {r.stderr.strip()}"
    return r.stdout.rstrip("\n")


def psql_bytes(s, *args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run(psql_argv(s, *args), capture_output=True, env=e, timeout=60)
    assert r.returncode == 0, f"psql {args}: {r.stderr!r}"
    return r.stdout


def app_direct(pg, *stmts):
    """Run statements straight on PostgreSQL as app (the tables' owner)."""
    with pg.connect(db="app", user="app") as c:
        for st in stmts:
            c.execute(st)


def figures(line):
    """'max_backends=K errors=E tx=T' -> dict of str."""
    return dict(re.findall(r"(\w+)=(\S+)", line))


def monitor_conninfo(pg):
    return f"host={pg.sock} port={pg.port} dbname=postgres user=postgres"


def pool_cfg(mode, size, **more):
    cfg = {"pool_mode": mode, "default_pool_size": size}
    cfg.update(more)
    return cfg


# ---------------------------------------------------------------------------
# Command line

def test_cli_version_and_check(build_dir, pg, tdir):
    """--version, --help and --check; starting with a bad config fails alike."""
    sl = str(build_dir / "sluice")
    r = subprocess.run([sl, "--version"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, "--version exit status"
    assert re.match(r"^sluice [0-9]+\.[0-9]+", r.stdout + r.stderr), f"--version output: {r.stdout!r}"
    r = subprocess.run([sl, "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, "--help exit status"
    assert "--check" in r.stdout + r.stderr, "--help output"

    bad = tdir / "bad.conf"
    bad.write_text('listen_addr = "127.0.0.1";\n'
                   "listen_port = 70000;\n"
                   'pool_mode = "bogus";\n'
                   "databases = (\n"
                   '  { name = "app"; conninfo = "host=/tmp dbname=app sslmode=prefer"; }\n'
                   ");\n"
                   "no_such_setting = 1;\n")
    r = subprocess.run([sl, "--check", "-c", str(bad)], capture_output=True, text=True, timeout=10)
    out = r.stdout + r.stderr
    assert r.returncode == 1, f"--check exit status on a bad config: {out}"
    for where in ("2: listen_port:", "3: pool_mode:", "5: databases[0].conninfo:", "7: no_such_setting:"):
        assert f"{bad}:{where}" in out, f"--check output lacks {bad}:{where}: {out}"

    # A syntax error names its line too.
    syn = tdir / "syntax.conf"
    syn.write_text('listen_addr = "127.0.0.1";\nlisten_port = ;\n')
    r = subprocess.run([sl, "--check", "-c", str(syn)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1, "--check exit status on a syntax error"
    assert f"{syn}:2:" in r.stdout + r.stderr, f"--check output for a syntax error: {r.stderr}"

    # A good file passes, and starting with a bad one fails the same way.
    good = tdir / "good.conf"
    good.write_text("listen_port = 6432;\n"
                    f'databases = ( {{ name = "app"; conninfo = "host={pg.sock} port={pg.port} dbname=app"; }} );\n')
    r = subprocess.run([sl, "--check", "-c", str(good)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, f"--check exit status on a good config: {r.stdout}{r.stderr}"
    try:
        r = subprocess.run([sl, "-c", str(bad)], capture_output=True, text=True, timeout=10,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail("sluice kept running with a bad config", pytrace=False)
    assert r.returncode == 1, "exit status when starting with a bad config"
    assert f"{bad}:2: listen_port:" in r.stdout + r.stderr, "start-up error output"


# ---------------------------------------------------------------------------
# Many clients

def test_transaction_pool_200_clients(sluice, pg, build_dir, tdir):
    """200 clients, pool of 5, transaction mode: right answers, <= 5 backends."""
    s = sluice(pool_cfg("transaction", 5, max_client_conn=400,
                        log_connections=False, log_disconnections=False))
    r = subprocess.run([str(build_dir / "it_concurrent"),
                        "-c", f"host=127.0.0.1 port={s.port} dbname=app user=app",
                        "-m", monitor_conninfo(pg), "-d", "app", "-u", "app",
                        "-n", "200", "-t", "40"],
                       capture_output=True, text=True, timeout=170)
    out = r.stdout.strip()
    assert r.returncode == 0, f"wrong results or errors through the pool ({out}): {r.stderr[:2000]}"
    f = figures(out)
    assert f.get("errors") == "0", f"it_concurrent: {out}"
    assert f.get("tx") == "8000", f"it_concurrent transactions: {out}"
    maxb = int(f["max_backends"])
    assert maxb <= 5, f"max backends of the pool seen in pg_stat_activity: {out}"
    assert maxb >= 2, f"max backends of the pool (concurrency through the pool): {out}"
    assert pg.backend_count("app", "app") <= 5, "backends after the run"
    assert s.stop() == 0, "sluice exit status"


@pytest.mark.slow
def test_pgbench_1000_clients(sluice, pg, build_dir, tdir):
    """pgbench: 1,000 clients through a pool of 20."""
    import resource
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft >= 2500, f"open files limit {soft} too low for 1,000 clients"
    r = subprocess.run(["pgbench", "-i", "-s", "1", "-q", "-h", pg.sock, "-p", str(pg.port),
                        "-U", "app", "app"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"pgbench -i: {r.stderr}"
    s = sluice(pool_cfg("transaction", 20, max_client_conn=1100,
                        log_connections=False, log_disconnections=False))
    stop = tdir / "stop"
    mon = subprocess.Popen([str(build_dir / "it_concurrent"), "-n", "0", "-m", monitor_conninfo(pg),
                            "-d", "app", "-u", "app", "-s", "120", "-x", str(stop)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        r = subprocess.run(["pgbench", "-h", "127.0.0.1", "-p", str(s.port), "-U", "app",
                            "-c", "1000", "-j", "2", "-T", "10", "-S", "app"],
                           capture_output=True, text=True, timeout=150)
    finally:
        stop.touch()
        mon_out = mon.communicate(timeout=30)[0]
    out = r.stdout + r.stderr
    (tdir / "pgbench.out").write_text(out)
    errs = [ln for ln in out.splitlines() if re.search(r"error|fatal", ln, re.I)][:3]
    assert r.returncode == 0, f"pgbench exit status {r.returncode}: {errs}"
    assert "number of failed transactions: 0 " in out, "pgbench failures"
    m = re.search(r"^number of transactions actually processed: (\d+)", out, re.M)
    assert m and int(m.group(1)) > 0, f"transactions processed: {out[-1500:]}"
    maxb = int(figures(mon_out)["max_backends"])
    assert 1 <= maxb <= 20, f"max backends of the pool during pgbench: {mon_out}"
    s.assert_works()
    subprocess.run(["pgbench", "-i", "-I", "d", "-h", pg.sock, "-p", str(pg.port), "-U", "app", "app"],
                   capture_output=True, timeout=60)


# ---------------------------------------------------------------------------
# Which server a client gets

def test_transaction_mode_switches_backends(sluice, pg):
    """A client's statements move between servers; the most recently released
    idle server is reused first."""
    s = sluice(pool_cfg("transaction", 2))
    A, B = raw_login(s), raw_login(s)
    A.query("BEGIN")
    a = val(A, "SELECT pg_backend_pid()")
    b1 = val(B, "SELECT pg_backend_pid()")
    b2 = val(B, "SELECT pg_backend_pid()")
    A.query("COMMIT")
    b3 = val(B, "SELECT pg_backend_pid()")
    a2 = val(A, "SELECT pg_backend_pid()")
    assert a.isdigit() and b1.isdigit()
    assert a != b1, "B must not run on the server A holds in its transaction"
    assert b1 == b2, "B's second statement (only idle server)"
    assert a == b3, "B after A's COMMIT: the most recently released server"
    assert a == a2, "A after B released that server again"
    assert pg.backend_count("app", "app") <= 2, "backends of the pool"
    bye(A)
    bye(B)


def test_session_mode_keeps_backend(sluice):
    """Session mode: one backend for a client's whole life."""
    s = sluice(pool_cfg("session", 3))
    A = raw_login(s)
    a1 = val(A, "SELECT pg_backend_pid()")
    B = raw_login(s)
    b = val(B, "SELECT pg_backend_pid()")
    bye(B)
    time.sleep(0.5)
    C = raw_login(s)
    c = val(C, "SELECT pg_backend_pid()")
    a2 = val(A, "SELECT pg_backend_pid()")
    bye(C)
    A.query("BEGIN")
    a3 = val(A, "SELECT pg_backend_pid()")
    A.query("COMMIT")
    assert a1.isdigit()
    assert a1 == a2, "A's backend while B and C came and went"
    assert a1 == a3, "A's backend in a later transaction"
    assert a1 != b, "B's backend"
    assert a1 != c, "C's backend"
    assert b == c, "C reuses the server B released"
    bye(A)


def test_statement_mode(sluice):
    """Statement mode refuses transaction blocks, and keeps serving others."""
    s = sluice(pool_cfg("statement", 1))
    A, B = raw_login(s), raw_login(s)
    pa = val(A, "SELECT pg_backend_pid()")
    with pytest.raises(PgError) as ei:
        A.query("BEGIN")
    assert "statement pooling" in ei.value.fields.get("M", ""), ei.value.line()
    assert re.fullmatch(r"[0-9A-Z]{5}", ei.value.sqlstate), "BEGIN answered with an ErrorResponse"
    pb = val(B, "SELECT pg_backend_pid()")
    assert pa == pb, "B on the same (only) server"
    assert val(B, "SELECT now() = statement_timestamp()") == "t", "B is not inside A's transaction"
    assert val(B, "SELECT 'b-works'") == "b-works", "B's query"
    bye(A)
    bye(B)
    r = s.psql("-c", "BEGIN")
    assert r.returncode != 0, "BEGIN succeeded in statement mode (psql)"
    assert "statement pooling" in r.stderr, f"psql BEGIN in statement mode: {r.stderr}"
    s.assert_works("statement mode")


def test_pool_modes_and_wildcard(sluice, pg):
    """Pools are per (database, user); a user's pool_mode wins over the
    database's; the "*" entry serves other database names."""
    s = sluice({"pool_mode": "statement", "default_pool_size": 2,
                "users": [{"name": "postgres", "pool_mode": "session"}],
                "databases": [
                    {"name": "app", "conninfo": f"host={pg.sock} port={pg.port} dbname=app",
                     "pool_mode": "transaction"},
                    {"name": "*", "conninfo": f"host={pg.sock} port={pg.port}"}]})
    A1, A2 = raw_login(s, user="app"), raw_login(s, user="app")
    P1, P2 = raw_login(s, user="postgres"), raw_login(s, user="postgres")
    a1 = val(A1, "SELECT pg_backend_pid()")
    a2 = val(A2, "SELECT pg_backend_pid()")
    A1.query("BEGIN")
    a_user = val(A1, "SELECT current_user")
    A1.query("COMMIT")
    p1 = val(P1, "SELECT pg_backend_pid()")
    p2 = val(P2, "SELECT pg_backend_pid()")
    p1b = val(P1, "SELECT pg_backend_pid()")
    p_user = val(P1, "SELECT current_user")
    W = raw_login(s, user="postgres", db="postgres")
    w = val(W, "SELECT current_database() || '/' || current_user")
    assert a_user == "app", "backend user of app's pool (client's user)"
    assert a1 == a2, "transaction mode (database's pool_mode): one idle server serves both app clients"
    assert p_user == "postgres", "backend user of postgres' pool"
    assert p1 != p2, "session mode (user's pool_mode wins): each postgres client keeps its own server"
    assert p1 == p1b, "session mode: P1 keeps its server"
    assert a1 != p1, "separate pools per user"
    assert w == "postgres/postgres", "wildcard database entry"
    for c in (A1, A2, P1, P2, W):
        bye(c)
    with pytest.raises(psycopg.Error) as ei:
        s.scalar("SELECT 1", db="it_no_such_db")
    assert "does not exist" in str(ei.value), "unknown database through the wildcard"


# ---------------------------------------------------------------------------
# Clients that vanish

@pytest.mark.parametrize("mode,how", [("transaction", "abort"), ("session", "reset")],
                         ids=["transaction_mode", "session_mode"])
def test_disconnect_in_transaction(sluice, pg, mode, how):
    """BEGIN; INSERT; then the client vanishes (transaction mode: closes the
    socket; session mode: TCP RST): the row is rolled back and the next
    client on that backend is not inside a transaction."""
    app_direct(pg, "CREATE TABLE IF NOT EXISTS it_abort (id int, mode text)")
    s = sluice(pool_cfg(mode, 1))
    A = raw_login(s)
    pa = val(A, "SELECT pg_backend_pid()")
    A.query("BEGIN")
    A.query(f"INSERT INTO it_abort VALUES (1, '{mode}')")
    inside = val(A, f"SELECT count(*) FROM it_abort WHERE mode = '{mode}'")
    if how == "abort":
        A.close()
    else:
        rst_close(A.sock)
    time.sleep(0.5)
    B = raw_login(s)
    pb = val(B, "SELECT pg_backend_pid()")
    cnt = val(B, f"SELECT count(*) FROM it_abort WHERE mode = '{mode}'")
    fresh = val(B, "SELECT now() = statement_timestamp()")
    fresh2 = val(B, "SELECT xact_start = query_start FROM pg_stat_activity WHERE pid = pg_backend_pid()")
    bye(B)
    assert inside == "1", "row count inside A's transaction"
    assert pa.isdigit()
    assert pa == pb, "B is served by the backend A left (pool_size 1)"
    assert cnt == "0", "rows of the abandoned transaction seen by B"
    assert fresh == "t", "B's statement runs in a transaction of its own (now() = statement_timestamp())"
    assert fresh2 == "t", "B's xact_start = query_start"
    assert pg.scalar("SELECT count(*) FROM it_abort WHERE mode = %s", [mode], db="app") == 0, \
        "rows of the abandoned transaction seen directly"
    s.assert_works()


@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_terminate_in_transaction(sluice, pg, mode):
    """The same with a polite goodbye: psql sends Terminate inside a transaction."""
    app_direct(pg, "CREATE TABLE IF NOT EXISTS it_abort (id int, mode text)")
    s = sluice(pool_cfg(mode, 1), name=mode)
    tag = f"terminate-{mode}"
    p1 = psql_ok(s, "-c", "BEGIN", "-c", f"INSERT INTO it_abort VALUES (2, '{tag}')",
                 "-c", "SELECT pg_backend_pid()")
    out = psql_ok(s, "-c", "SELECT pg_backend_pid(), now() = statement_timestamp(), count(*) "
                           f"FROM it_abort WHERE mode = '{tag}'")
    p2, rest = out.split("|", 1)
    assert p1 == p2, f"{mode}: the second client's backend (pool_size 1)"
    assert rest == "t|0", f"{mode}: fresh transaction and no row after Terminate inside a transaction"
    assert s.stop() == 0, f"{mode}: sluice exit status"


def test_waiting_client_disconnect(sluice, pg):
    """A client queued for a server that disconnects before it is served: its
    query must not run later, and the queue goes on to the next client."""
    app_direct(pg, "CREATE TABLE IF NOT EXISTS it_ghost (id int)", "TRUNCATE it_ghost")
    s = sluice(pool_cfg("transaction", 1))
    A, B, C = raw_login(s), raw_login(s), raw_login(s)
    A.query("BEGIN")
    pa = val(A, "SELECT pg_backend_pid()")
    send_query(B, "INSERT INTO it_ghost VALUES (1)")
    time.sleep(0.2)
    B.close()
    time.sleep(0.2)
    send_query(C, "SELECT 'c-served', pg_backend_pid()")
    time.sleep(0.3)
    A.query("COMMIT")
    rows = C.read_result()
    c = rows[0][0] if rows else None
    pc = val(C, "SELECT pg_backend_pid()")
    a = val(A, "SELECT 'a-again'")
    bye(A)
    bye(C)
    assert c == "c-served", "the next waiting client is served"
    assert a == "a-again", "A after its COMMIT"
    time.sleep(0.3)
    assert pg.scalar("SELECT count(*) FROM it_ghost", db="app") == 0, \
        "rows inserted by a client that disconnected while waiting for a server"
    assert pa == pc, "C gets the server A released (it must not be thrown away)"
    s.assert_works()


def test_idle_server_terminated(sluice, pg):
    """A backend that dies while idle in the pool is replaced for the next client."""
    s = sluice(pool_cfg("transaction", 1))
    p1 = s.scalar("SELECT pg_backend_pid()")
    assert pg.terminate(p1) is True, "pg_terminate_backend"
    wait_until(lambda: pg.scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [p1]) == 0,
               timeout=10, what=f"backend {p1} to go after pg_terminate_backend")
    time.sleep(0.3)
    p2 = s.scalar("SELECT pg_backend_pid()")
    assert isinstance(p2, int)
    assert p1 != p2, "a new backend replaces the terminated one"
    assert pg.backend_count("app", "app") <= 1, "backends of the pool"


def test_client_killed_mid_query(sluice, pg, tdir):
    """A client killed while its query runs: the busy server is not handed to
    anyone else, the row is not visible, the pool serves the next client."""
    app_direct(pg, "CREATE TABLE IF NOT EXISTS it_killed (id int)")
    pg.query("TRUNCATE it_killed", db="app")
    s = sluice(pool_cfg("transaction", 1))
    sleeper = "SELECT pg_sleep(4)"
    with open(tdir / "killed.out", "wb") as out:
        p = subprocess.Popen(psql_argv(s, "-c", "BEGIN", "-c", "INSERT INTO it_killed VALUES (1)",
                                       "-c", sleeper),
                             stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        wait_until(lambda: pg.active_queries(sleeper) == 1, timeout=10,
                   what="the client's query to start")
        bpid = pg.scalar("SELECT pid FROM pg_stat_activity WHERE usename = 'app' AND query = %s",
                         [sleeper])
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    row = s.query("SELECT pg_backend_pid(), now() = statement_timestamp(), "
                  "(SELECT count(*) FROM it_killed)")[0]
    assert row[0] != bpid, "backend of the next client (the busy one must not be reused)"
    assert row[1:] == (True, 0), "next client: fresh transaction, no row"
    assert pg.scalar("SELECT count(*) FROM it_killed", db="app") == 0, \
        "rows of the killed client's transaction"
    assert pg.backend_count("app", "app") <= 2, "backends (the old one may still be finishing pg_sleep)"


# ---------------------------------------------------------------------------
# Server state between clients

def test_session_reset_query(sluice):
    """Session mode: server_reset_query (DISCARD ALL) runs when a client leaves."""
    s = sluice(pool_cfg("session", 1, server_reset_query="DISCARD ALL"))
    p1 = psql_ok(s, "-c", "SET work_mem = '77MB'", "-c", "PREPARE it_stmt AS SELECT 1",
                 "-c", "CREATE TEMP TABLE it_tmp (x int)", "-c", "SELECT pg_backend_pid()")
    row = s.query("SELECT pg_backend_pid(), current_setting('work_mem'), "
                  "(SELECT count(*) FROM pg_prepared_statements), to_regclass('pg_temp.it_tmp') IS NULL")[0]
    assert str(row[0]) == p1, "second client's backend (pool_size 1)"
    assert row[1:] == ("4MB", 0, True), "work_mem, prepared statements, temp table after DISCARD ALL"


HOUR_SQL = "SELECT to_char(timestamptz '2020-01-01 00:00:00+00', 'HH24')"


def test_tracked_settings_startup_options(sluice, pg):
    """Transaction mode: each client sees the TimeZone of its startup packet
    on a shared server."""
    default = pg.scalar("SHOW TimeZone", db="app")
    assert default != "Asia/Tokyo", "the cluster's default TimeZone must not be Asia/Tokyo"
    s = sluice(pool_cfg("transaction", 1))
    A = raw_login(s, options="-c TimeZone=Asia/Tokyo")
    B = raw_login(s, options="-c TimeZone=America/New_York")
    C = raw_login(s)
    a1, b1, c1 = (val(x, "SHOW TimeZone") for x in (A, B, C))
    pids = [val(x, "SELECT pg_backend_pid()") for x in (A, B, C)]
    A.query("BEGIN")
    a2 = val(A, "SHOW TimeZone")
    ahour = val(A, HOUR_SQL)
    A.query("COMMIT")
    b2 = val(B, "SHOW TimeZone")
    c2 = val(C, "SHOW TimeZone")
    a3 = val(A, "SHOW TimeZone")
    chour = val(C, HOUR_SQL)
    b3 = val(B, "SHOW TimeZone")
    for x in (A, B, C):
        bye(x)
    assert pids[0].isdigit() and pids[0] == pids[1] == pids[2], \
        f"all three clients share the one server: {pids}"
    assert [a1, a2, a3] == ["Asia/Tokyo"] * 3, "A's TimeZone"
    assert [b1, b2, b3] == ["America/New_York"] * 3, "B's TimeZone"
    assert [c1, c2] == [default] * 2, "C's (default) TimeZone"
    assert ahour == "09", "A's timestamptz output"
    assert chour == pg.scalar(HOUR_SQL, db="app"), "C's timestamptz output"


def test_tracked_settings_set_and_encoding(sluice, pg):
    """Settings changed with SET, and client_encoding, follow their client;
    libpq's PGOPTIONS and PGTZ too, one client after the other."""
    default = pg.scalar("SHOW TimeZone", db="app")
    s = sluice(pool_cfg("transaction", 1))
    A = raw_login(s, client_encoding="LATIN1")
    B = raw_login(s)
    A.query("SET TimeZone = 'Pacific/Auckland'")
    b_tz = val(B, "SHOW TimeZone")
    b_enc = B.query("SELECT convert_to(chr(233), 'UTF8')::text, current_setting('client_encoding')")[0]
    a_tz = val(A, "SHOW TimeZone")
    a_enc = val(A, "SHOW client_encoding")
    B.query("BEGIN")
    B.query("SET LOCAL TimeZone = 'Asia/Tokyo'")
    B.query("ROLLBACK")
    a_tz2 = val(A, "SHOW TimeZone")
    b_tz2 = val(B, "SHOW TimeZone")
    bye(A)
    bye(B)
    assert [a_tz, a_tz2] == ["Pacific/Auckland"] * 2, "A's TimeZone after SET"
    assert [b_tz, b_tz2] == [default] * 2, "B's TimeZone while A had SET its own"
    assert a_enc == "LATIN1", "A's client_encoding"
    assert b_enc == ["\\xc3a9", "UTF8"], "B's client_encoding (UTF8) after A's LATIN1"
    assert psql_ok(s, "-c", "SHOW client_encoding") == "UTF8", "a UTF8 client after a LATIN1 one"
    assert psql_bytes(s, "-c", "SELECT chr(233)", env={"PGCLIENTENCODING": "LATIN1"}) == b"\xe9\n", \
        "bytes of e-acute for a LATIN1 client"
    assert psql_bytes(s, "-c", "SELECT chr(233)") == b"\xc3\xa9\n", \
        "bytes of e-acute for a UTF8 client on the same server"

    # libpq clients: PGOPTIONS and PGTZ, one after the other on the same server.
    assert psql_ok(s, "-c", "SHOW TimeZone", env={"PGOPTIONS": "-c TimeZone=Asia/Tokyo"}) == \
        "Asia/Tokyo", "PGOPTIONS client"
    assert psql_ok(s, "-c", "SHOW TimeZone", env={"PGTZ": "Europe/Paris"}) == "Europe/Paris", "PGTZ client"
    assert psql_ok(s, "-c", "SHOW TimeZone") == default, "plain client after them"


# ---------------------------------------------------------------------------
# Relaying large data

def _md5(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@pytest.mark.slow
def test_copy_in_out_50mb(sluice, pg, tdir):
    """COPY IN and COPY OUT of ~50 MB through the pooler, byte for byte."""
    src, out1, out2 = tdir / "copy.src", tdir / "copy.out1", tdir / "copy.out2"
    app_direct(pg, "DROP TABLE IF EXISTS it_copy", "CREATE TABLE it_copy (id int, payload text)")
    try:
        with pg.connect(db="app") as c, open(src, "wb") as f:
            with c.cursor().copy(
                    r"COPY (SELECT g, md5(g::text) || md5((g * 7)::text) || E'\\t\\\\' || "
                    r"repeat(chr(65 + g % 26), g % 13) FROM generate_series(1, 620000) g) TO STDOUT") as cp:
                for data in cp:
                    f.write(data)
        assert src.stat().st_size >= 45_000_000, "size of the COPY data"
        s = sluice(pool_cfg("transaction", 2))

        with open(src, "rb") as f:
            r = subprocess.run(psql_argv(s, "-c", "COPY it_copy FROM STDIN"), stdin=f,
                               capture_output=True, timeout=150)
        assert r.returncode == 0, f"COPY FROM STDIN through the pooler failed: {r.stderr!r}"
        assert s.scalar("SELECT count(*) FROM it_copy") == 620000, "rows after COPY IN"
        with open(out1, "wb") as f:
            r = subprocess.run(psql_argv(s, "-c", "COPY (SELECT * FROM it_copy ORDER BY id) TO STDOUT"),
                               stdout=f, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=150)
        assert r.returncode == 0, f"COPY TO STDOUT through the pooler failed: {r.stderr[:300]!r}"
        assert _md5(out1) == _md5(src), \
            f"md5 of COPY OUT (TO STDOUT) vs the input ({out1.stat().st_size} bytes)"

        # The other way round with psql's \copy (COPY ... FROM STDIN / TO STDOUT too).
        r = s.psql("-c", "TRUNCATE it_copy", "-c", f"\\copy it_copy FROM '{src}'", timeout=150)
        assert r.returncode == 0, f"\\copy FROM failed: {r.stderr}"
        r = s.psql("-c", f"\\copy (SELECT * FROM it_copy ORDER BY id) TO '{out2}'", timeout=150)
        assert r.returncode == 0, f"\\copy TO failed: {r.stderr}"
        assert _md5(out2) == _md5(src), "md5 of \\copy TO vs the input"

        # A COPY that fails half-way leaves the pool usable.
        r = s.psql("-c", "COPY it_copy FROM STDIN", input="1\tok\nnot-a-number\tbad\n")
        assert r.returncode != 0 and "invalid input syntax" in r.stderr, f"COPY with a bad row: {r.stderr}"
        assert s.scalar("SELECT count(*) FROM it_copy") == 620000, "rows after the failed COPY"
        s.assert_works()
    finally:
        for p in (src, out1, out2):
            with contextlib.suppress(OSError):
                p.unlink()
        app_direct(pg, "DROP TABLE IF EXISTS it_copy")


def test_slow_reader_bounded_memory(sluice):
    """A client that stops reading a huge result: all rows arrive, RSS stays flat."""
    s = sluice(pool_cfg("transaction", 2))
    args = types.SimpleNamespace(host="127.0.0.1", port=s.port, user="app", db="app",
                                 rows=1000000, stall=3.0, rss_pid=s.pid)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        pgwire.mode_slow_reader(args)
    out = buf.getvalue().strip()
    assert out.startswith("OK rows=1000000 last=1000000 "), f"slow reader result: {out}"
    f = figures(out)
    before, peak = int(f["rss_before_kb"]), int(f["rss_max_kb"])
    assert before > 0, "RSS before the query (kB)"
    assert peak - before < 8192, f"RSS growth of sluice during the stall (kB; before {before}, max {peak})"
    s.assert_works()
