"""test_prepared.py -- named prepared statements in transaction mode
(max_prepared_statements).

Covers: many libpq clients (it_extended) preparing once and executing on
whichever server is free, and pgbench -M prepared; pipelined Parse/Bind/
Execute with errors and statements run on a server that never saw their
Parse (raw protocol, pgwire); DEALLOCATE ALL / DISCARD ALL; eviction with
max_prepared_statements = 2; DDL that changes a statement's result type;
real drivers with their default settings (asyncpg, the PostgreSQL JDBC
driver).

"""

import os
import pathlib
import shutil
import subprocess

import pytest

import pgwire
from rawpg import bye, raw_login

HERE = pathlib.Path(__file__).resolve().parent
JDBC_JAR = pathlib.Path("/usr/share/java/postgresql.jar")


# ---------------------------------------------------------------------------
# Helpers

def col1(s, command, column, **filters):
    """The value of COLUMN in the only row of a console SHOW result matching
    filters (fails unless exactly one matches)."""
    vals = s.col(command, column, **filters)
    assert len(vals) == 1, f"{command}: expected one row matching {filters}, got {vals}"
    return vals[0]


def x(c, spec):
    """Extended-protocol messages; the answers to every Sync as tokens (see
    pgwire.extended): e.g. '1 2 D:1 C:SELECT_1 Z:I'."""
    return pgwire.extended(c, spec)


def transaction_conf(pool_size, **extra):
    conf = {"pool_mode": "transaction", "default_pool_size": pool_size}
    conf.update(extra)
    return conf


# ---------------------------------------------------------------------------

def test_prepared_libpq_many_clients(sluice, pg, build_dir, tdir):
    """24 libpq clients on a pool of 2, each preparing once and executing its
    statements in many transactions, on whichever server is free; then
    pgbench -M prepared through the same pool."""
    s = sluice(transaction_conf(2, admin_users="admin"))
    conninfo = f"host=127.0.0.1 port={s.port} user=app dbname=app"
    procs = []
    for i in range(24):
        steps = ["prep:pid:SELECT 'pid:' || pg_backend_pid()", f"prep:val:SELECT {i} + 1000"]
        for _ in range(15):
            steps += ["exec:val", "exec:pid", "s:SELECT 1"]
        procs.append(subprocess.Popen([str(build_dir / "it_extended"), conninfo, *steps],
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        outs.append(out)
    failed = [o for p, o in zip(procs, outs) if p.returncode != 0]
    assert not failed, f"a client failed: {failed[0][-1000:]}"
    bad = [line for o in outs for line in o.splitlines() if "ERROR" in line or "CONNECTION" in line]
    assert not bad, f"errors: {bad[:3]}"
    for i, o in enumerate(outs):
        assert o.splitlines().count(str(i + 1000)) == 15, f"client {i}: results of its own statement"
    pids = {line for o in outs for line in o.splitlines() if line.startswith("pid:")}
    assert len(pids) <= 2, f"distinct backend pids (pool of 2): {pids}"
    assert pg.backend_count("app", "app") <= 2, "backends"
    # Two distinct statement texts: prepared at most once per server and
    # client, whatever the number of executions.
    assert int(col1(s, "SHOW STATS_TOTALS", "client_parse_count", database="app")) == 48, \
        "client parses"
    assert int(col1(s, "SHOW STATS_TOTALS", "bind_count", database="app")) == 720, "binds"
    most = max(int(v) for v in s.col("SHOW SERVERS", "prepared_statements", database="app"))
    assert 1 <= most <= 48, f"statements prepared on a server: {most}"

    # pgbench -M prepared: every transaction succeeds through the pool of 2.
    script = tdir / "script.sql"
    script.write_text("\\set x random(1, 1000)\nSELECT :x::int + 1;\nSELECT 2;\n")
    r = subprocess.run(["pgbench", "-n", "-M", "prepared", "-f", str(script), "-h", "127.0.0.1",
                        "-p", str(s.port), "-U", "app", "-c", "20", "-j", "2", "-t", "50", "app"],
                       capture_output=True, text=True, timeout=170)
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"pgbench -M prepared failed: {out[-1500:]}"
    assert "number of failed transactions: 0" in out, out
    assert "number of transactions actually processed: 1000/1000" in out, out


def test_prepared_pipeline_errors(sluice):
    """Pipelined Parse/Bind/Execute with an error in the middle, and a
    statement executed on a server that never saw its Parse."""
    s = sluice(transaction_conf(2))
    a, b = raw_login(s, timeout=20.0), raw_login(s, timeout=20.0)
    try:
        assert x(a, "P s1 SELECT 1 ;; P s2 SELECT 2 ;; B - s1 ;; E - ;; S") == \
            "1 1 2 D:1 C:SELECT_1 Z:I", "two Parses, Bind, Execute"
        assert x(a, "P bad SELEC 1 ;; B - s2 ;; E - ;; S") == "E:42601 Z:I", \
            "a failing Parse: the rest is skipped until Sync"
        assert x(a, "B - s2 ;; E - ;; B - s1 ;; E - ;; S") == \
            "2 D:2 C:SELECT_1 2 D:1 C:SELECT_1 Z:I", "both statements after the error"
        b.query("BEGIN")
        b.query("SELECT pg_backend_pid()")
        assert x(a, "B - s1 ;; E - ;; B - s2 ;; E - ;; S") == \
            "2 D:1 C:SELECT_1 2 D:2 C:SELECT_1 Z:I", \
            "statements on the other server (B holds the first in a transaction)"
        assert x(a, "B - nosuch ;; E - ;; S") == "E:26000 Z:I", "unknown statement"
        assert x(a, "P s3 SELECT 3 ;; D S s3 ;; B - s3 ;; E - ;; C S s1 ;; S") == \
            "1 t T 2 D:3 C:SELECT_1 3 Z:I", "Parse, Describe, Bind, Execute, Close"
        assert x(a, "B - s1 ;; E - ;; S") == "E:26000 Z:I", "the closed statement is gone"
        assert x(a, "B - s3 ;; E - ;; S") == "2 D:3 C:SELECT_1 Z:I", \
            "the other statement still works"
        b.query("COMMIT")
    finally:
        bye(a)
        bye(b)
    s.assert_works()


def test_prepared_deallocate_all(sluice):
    """DEALLOCATE ALL and DISCARD ALL forget the client's statements; names
    can be reused."""
    s = sluice(transaction_conf(1))
    a = raw_login(s, timeout=20.0)
    try:
        assert x(a, "P s1 SELECT 11 ;; B - s1 ;; E - ;; S") == "1 2 D:11 C:SELECT_1 Z:I", \
            "before DEALLOCATE ALL"
        a.query("DEALLOCATE ALL")
        assert x(a, "B - s1 ;; E - ;; S") == "E:26000 Z:I", "after DEALLOCATE ALL"
        assert x(a, "P s1 SELECT 12 ;; B - s1 ;; E - ;; S") == "1 2 D:12 C:SELECT_1 Z:I", \
            "the name prepared again"
        a.query("DISCARD ALL")
        assert x(a, "B - s1 ;; E - ;; S") == "E:26000 Z:I", "after DISCARD ALL"
        assert x(a, "P s1 SELECT 13 ;; B - s1 ;; E - ;; S") == "1 2 D:13 C:SELECT_1 Z:I", \
            "prepared again after DISCARD ALL"
    finally:
        bye(a)


def test_prepared_eviction(sluice, pg):
    """max_prepared_statements = 2: the third statement evicts one on the
    server; every statement keeps working."""
    s = sluice(transaction_conf(1, max_prepared_statements=2, admin_users="admin"))
    a = raw_login(s, timeout=20.0)
    try:
        assert x(a, "P s1 SELECT 1 ;; P s2 SELECT 2 ;; P s3 SELECT 3 ;; S") == "1 1 1 Z:I"
        rounds = [x(a, "B - s1 ;; E - ;; B - s2 ;; E - ;; B - s3 ;; E - ;; S") for _ in range(4)]
    finally:
        bye(a)
    want = "2 D:1 C:SELECT_1 2 D:2 C:SELECT_1 2 D:3 C:SELECT_1 Z:I"
    assert rounds == [want] * 4, "rounds with all three statements right"
    assert col1(s, "SHOW SERVERS", "prepared_statements", database="app") == "2", \
        "statements kept on the server"
    assert int(col1(s, "SHOW STATS_TOTALS", "server_parse_count", database="app")) > 3, \
        "re-prepared after eviction"
    assert pg.scalar("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' "
                     "AND datname = 'app'") == 1, "one backend"


def test_prepared_ddl_change(sluice, pg):
    """DDL that changes a statement's result type: a clear error at worst,
    never a hang, and the statement works again afterwards."""
    pg.query("DROP TABLE IF EXISTS prep_ddl; CREATE TABLE prep_ddl (a int); "
             "INSERT INTO prep_ddl VALUES (7); GRANT ALL ON prep_ddl TO app;", db="app")
    try:
        s = sluice(transaction_conf(1))
        # A socket timeout of 20 s: an answer that does not come is a hang.
        a = raw_login(s, timeout=20.0)
        try:
            answers = [x(a, "P s1 SELECT * FROM prep_ddl ;; B - s1 ;; E - ;; S")]
            pg.query("ALTER TABLE prep_ddl ADD COLUMN b int DEFAULT 3", db="app")
            for _ in range(3):
                answers.append(x(a, "B - s1 ;; E - ;; S"))
        finally:
            bye(a)
        assert len(answers) == 4, "answers (no hang)"
        assert answers[0] == "1 2 D:7 C:SELECT_1 Z:I", "before the DDL"
        assert answers[1] in ("2 D:7 C:SELECT_1 Z:I", "E:0A000 Z:I"), \
            f"after the DDL: expected rows or 0A000, got {answers[1]}"
        assert answers[3] == "2 D:7 C:SELECT_1 Z:I", "the statement works again"
    finally:
        pg.query("DROP TABLE IF EXISTS prep_ddl", db="app")


# ---------------------------------------------------------------------------
# Real drivers with their default settings.  JDBC sends extra_float_digits at
# startup: the usual PgBouncer setting ignores it.

DRIVER_CONF = transaction_conf(2, admin_users="admin", ignore_startup_parameters="extra_float_digits")


def test_prepared_asyncpg(sluice, pg):
    """asyncpg (always prepares named statements, caches them per connection)."""
    s = sluice(DRIVER_CONF)
    # Debian's python3-asyncpg is in the system interpreter's path.
    r = subprocess.run(["/usr/bin/python3", str(HERE / "asyncpg_check.py"), str(s.port), "12", "25"],
                       capture_output=True, text=True, timeout=170)
    out = (r.stdout + r.stderr).strip()
    assert r.returncode == 0, f"asyncpg: {out}"
    assert out == "OK 1200", "asyncpg results"
    assert int(col1(s, "SHOW STATS_TOTALS", "client_parse_count", database="app")) > 20, \
        "named Parses seen"
    assert pg.backend_count("app", "app") <= 2, "backends"


def test_prepared_jdbc(sluice, pg):
    """The PostgreSQL JDBC driver (server-side prepare after 5 executions)."""
    if shutil.which("java") is None:
        pytest.skip("java is not installed (scripts/install-deps.sh installs it)")
    assert JDBC_JAR.exists(), \
        f"PostgreSQL JDBC driver not installed ({JDBC_JAR}): run scripts/install-deps.sh"
    s = sluice(DRIVER_CONF)
    r = subprocess.run(["java", "-cp", str(JDBC_JAR), str(HERE / "JdbcCheck.java"), str(s.port),
                        "8", "20"], capture_output=True, text=True, timeout=170,
                       env=dict(os.environ))
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"JDBC: {out[-2000:]}"
    assert r.stdout.strip().splitlines()[-1] == "OK 320", f"JDBC results: {out[-2000:]}"
    assert int(col1(s, "SHOW STATS_TOTALS", "client_parse_count", database="app")) > 20, \
        "named Parses seen"
    assert pg.backend_count("app", "app") <= 2, "backends"
