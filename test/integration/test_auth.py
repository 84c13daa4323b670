"""Client authentication and TLS: auth_file with each password method, HBA
rules (scram, reject, trust, cert, peer, hostssl), client-side TLS (require,
verify-full, channel binding, certificate authentication, verify-ca, bulk data),
server-side TLS settings, backend passwords from password_env and
server_passfile, auth_query, and what SIGHUP reloads (auth_file, TLS
certificates).

"""

import hashlib
import os
import pwd
import shutil
import subprocess

import psycopg
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ---------------------------------------------------------------------------
# Helpers

def login_as(s, user, password, db="app", **kw):
    """Log in through Sluice (TCP) as user with password and run
    SELECT current_user || ':ok': the answer, or the error's text."""
    try:
        with s.connect(db, user, password=password, **kw) as c:
            return c.execute("SELECT current_user || ':ok'").fetchone()[0]
    except psycopg.Error as e:
        return str(e)


def outcome(s, sql, db="app", user="app", **kw):
    """Run sql through Sluice on a fresh connection: the first value of the
    answer as text, or the error's text."""
    try:
        with s.connect(db, user, **kw) as c:
            v = c.execute(sql).fetchone()[0]
            return v if isinstance(v, str) else str(v)
    except psycopg.Error as e:
        return str(e)


def write(path, text, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mode is not None:
        path.chmod(mode)


def no_passwords(s, words=("app_pw", "plain_pw", "md5_pw", "wrong_pw", "some_pw")):
    for path in (s.log_path, s.stderr_path):
        text = path.read_text(errors="replace") if path.exists() else ""
        leaked = [w for w in words if w in text]
        assert not leaked, f"{path.name} of {s.name} holds a password ({', '.join(leaked)})"


def db_entries(pg, *names):
    return [{"name": n, "conninfo": pg.conninfo("app", "app")} for n in names]


# ---------------------------------------------------------------------------
# auth_file, hba, peer

@pytest.mark.parametrize("auth_type", ["scram-sha-256", "md5", "plain"])
def test_client_auth(pg, sluice, tdir, auth_type):
    """Client authentication against an auth_file for each password method:
    the right password logs in (the backend user is the database's forced
    user), a wrong one and an unknown user fail alike with 28P01, and no
    password ever reaches the log."""
    secret = pg.scalar("SELECT rolpassword FROM pg_authid WHERE rolname = 'app'")
    md5 = hashlib.md5(b"md5_pwmd5user").hexdigest()
    write(tdir / "main" / "users.txt",
          f'"app" "{secret}"\n"plainu" "plain_pw"\n"md5user" "md5{md5}"\n')
    s = sluice({"auth_type": auth_type, "auth_file": "users.txt"})
    at = auth_type
    assert login_as(s, "app", "app_pw") == "app:ok", f"{at}: right password (SCRAM secret)"
    assert login_as(s, "plainu", "plain_pw") == "app:ok", f"{at}: right password (plain secret)"
    out = login_as(s, "app", "wrong_pw")
    assert 'password authentication failed for user "app"' in out, f"{at}: wrong password: {out}"
    out = login_as(s, "nosuchuser", "some_pw")
    assert 'password authentication failed for user "nosuchuser"' in out, f"{at}: unknown user: {out}"
    out = login_as(s, "md5user", "md5_pw")
    if at == "scram-sha-256":
        # An md5 secret cannot serve SCRAM: refused like a wrong password.
        assert 'password authentication failed for user "md5user"' in out, f"{at}: md5 secret: {out}"
    else:
        assert out == "app:ok", f"{at}: right password (md5 secret): {out}"
    assert s.stop() == 0, f"{at}: exit status"
    assert s.log().count("(28P01)") >= 2, f"{at}: 28P01 refusals logged"
    no_passwords(s)


def test_client_auth_hba(pg, sluice, tdir):
    """auth_type = hba: the first matching line decides; no match is refused."""
    write(tdir / "main" / "users.txt", '"app" "app_pw"\n"plainu" "plain_pw"\n')
    write(tdir / "main" / "hba.conf",
          "# type  database  user    address        method\n"
          "host    all       plainu  127.0.0.1/32   reject\n"
          "host    app       app     127.0.0.1/32   scram-sha-256\n"
          "local   all       all                    trust\n")
    s = sluice({"auth_type": "hba", "auth_file": "users.txt", "auth_hba_file": "hba.conf",
                "databases": db_entries(pg, "app", "other")})
    assert login_as(s, "app", "app_pw") == "app:ok", "hba: scram line"
    out = login_as(s, "app", "wrong_pw")
    assert "password authentication failed" in out, f"hba: scram line, wrong password: {out}"
    out = login_as(s, "plainu", "plain_pw")
    assert "no authentication rule allows" in out, f"hba: reject line: {out}"
    out = outcome(s, "SELECT 1", db="other", user="app", password="app_pw")
    assert "no authentication rule allows" in out, f"hba: no matching line: {out}"
    out = outcome(s, "SELECT 'local-ok'", db="other", user="plainu", unix=True)
    assert out == "local-ok", f"hba: local trust line: {out}"
    assert s.log().count("(28000)") >= 2, "hba: 28000 refusals logged"


def test_client_auth_peer(pg, sluice, tdir):
    """auth_hba_file `peer`: over the unix socket the OS user must be the user
    name (any other database user is refused); TCP has no local line."""
    me = pwd.getpwuid(os.geteuid()).pw_name
    write(tdir / "main" / "hba.conf", "local all all peer\n")
    s = sluice({"auth_type": "hba", "auth_hba_file": "hba.conf"})
    out = outcome(s, "SELECT 'peer-ok'", user=me, unix=True)
    assert out == "peer-ok", f"peer: OS user {me} as database user {me}: {out}"
    out = outcome(s, "SELECT 1", user=f"not_{me}", unix=True)
    assert "peer authentication failed" in out, f"peer: another user name: {out}"
    out = outcome(s, "SELECT 1", user=me)
    assert "no authentication rule allows" in out, f"peer: TCP has no local line: {out}"


# ---------------------------------------------------------------------------
# TLS

def tls_config(pg, sslmode, **more):
    cfg = {"client_tls_sslmode": sslmode,
           "client_tls_cert_file": f"{pg.certs}/server.crt",
           "client_tls_key_file": f"{pg.certs}/server.key",
           "client_tls_ca_file": f"{pg.certs}/ca.crt"}
    cfg.update(more)
    return cfg


def rows_digest(conn, sql):
    h = hashlib.md5()
    n = 0
    for row in conn.execute(sql):
        h.update(("|".join(str(v) for v in row) + "\n").encode())
        n += 1
    return n, h.hexdigest()


def test_client_tls(pg, sluice, tdir):
    """Client-side TLS under require: verify-full, SCRAM with channel binding,
    plaintext refused, certificate authentication, the unix socket exempt, a
    50 MB result intact."""
    ca = f"{pg.certs}/ca.crt"
    write(tdir / "main" / "users.txt", '"app" "app_pw"\n"plainu" "plain_pw"\n')
    write(tdir / "main" / "hba.conf",
          "hostssl all   app  127.0.0.1/32  cert\n"
          "hostssl all   all  127.0.0.1/32  scram-sha-256\n"
          "local   all   all                trust\n")
    s = sluice(tls_config(pg, "require", auth_type="hba", auth_file="users.txt",
                          auth_hba_file="hba.conf"))
    # psql's \conninfo names the TLS protocol in use.
    r = subprocess.run(["psql", "-X", "-w", "-At",
                        f"host=localhost port={s.port} user=plainu dbname=app sslmode=verify-full "
                        f"sslrootcert={ca}", "-c", r"\conninfo"],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PGPASSWORD="plain_pw"))
    assert "SSL connection (protocol: TLSv1." in r.stdout + r.stderr, \
        f"verify-full from psql: {r.stdout}{r.stderr}"
    out = outcome(s, "SELECT 'cb-ok'", user="plainu", password="plain_pw", host="localhost",
                  sslmode="verify-full", sslrootcert=ca, channel_binding="require")
    assert out == "cb-ok", f"SCRAM-SHA-256-PLUS with channel_binding=require: {out}"
    out = outcome(s, "SELECT 1", user="plainu", password="plain_pw", sslmode="disable")
    assert "SSL required" in out, f"plaintext refused under require: {out}"
    out = outcome(s, "SELECT 'cert-ok'", user="app", host="localhost", sslmode="verify-full",
                  sslrootcert=ca, sslcert=f"{pg.certs}/client.crt", sslkey=f"{pg.certs}/client.key")
    assert out == "cert-ok", f"cert auth with a client certificate for CN=app: {out}"
    out = outcome(s, "SELECT 1", user="app", host="localhost", sslmode="require")
    assert 'certificate authentication failed for user "app"' in out, \
        f"cert auth without a certificate: {out}"
    out = outcome(s, "SELECT 'unix-ok'", user="plainu", unix=True)
    assert out == "unix-ok", f"unix socket exempt from require: {out}"

    big = "SELECT g, repeat('x', 500) FROM generate_series(1, 100000) g"
    with s.connect(user="plainu", password="plain_pw", sslmode="require") as c:
        assert c.pgconn.ssl_in_use
        via_tls = rows_digest(c, big)
    with pg.connect(db="app") as c:
        direct = rows_digest(c, big)
    assert via_tls == direct == (100000, direct[1]), "50 MB result over TLS"
    assert s.stop() == 0, "exit status"


def test_client_tls_verify_ca(pg, sluice):
    """client_tls_sslmode = verify-ca demands a client certificate."""
    s = sluice(tls_config(pg, "verify-ca"), name="ca")
    out = outcome(s, "SELECT 1", sslmode="require")
    assert out != "1", "verify-ca without a client certificate"
    out = outcome(s, "SELECT 'ca-ok'", sslmode="require", sslcert=f"{pg.certs}/client.crt",
                  sslkey=f"{pg.certs}/client.key")
    assert out == "ca-ok", f"verify-ca with a client certificate: {out}"


def test_server_tls_settings(pg, sluice):
    """server_tls_*: databases whose conninfo sets no sslmode use them; a
    conninfo that sets one keeps it."""
    s = sluice({"server_tls_sslmode": "verify-full", "server_tls_ca_file": f"{pg.certs}/ca.crt",
                "databases": [
                    {"name": "app", "conninfo": f"host=localhost port={pg.port} dbname=app user=app "
                                                "password=app_pw"},
                    {"name": "plain", "conninfo": f"host=127.0.0.1 port={pg.port} dbname=app user=app "
                                                  "password=app_pw sslmode=disable"}]})
    ssl_sql = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    assert s.scalar(ssl_sql) is True, "server_tls_sslmode = verify-full applies"
    assert s.scalar(ssl_sql, db="plain") is False, "conninfo sslmode=disable wins"


# ---------------------------------------------------------------------------
# Backend passwords, auth_query

def test_backend_password_sources(pg, sluice, tdir, build_dir, monkeypatch):
    """Backend passwords kept out of the config file: password_env and
    server_passfile (TCP to the cluster needs SCRAM with app's password); an
    unset password_env variable is refused by --check."""
    write(tdir / "main" / "pgpass", f"127.0.0.1:{pg.port}:app:app:app_pw\n", mode=0o600)
    monkeypatch.setenv("IT_APP_PASSWORD", "app_pw")
    s = sluice({"server_passfile": "pgpass", "databases": [
        {"name": "viaenv", "conninfo": f"host=127.0.0.1 port={pg.port} dbname=app", "user": "app",
         "password_env": "IT_APP_PASSWORD"},
        {"name": "viafile", "conninfo": f"host=127.0.0.1 port={pg.port} dbname=app user=app"}]})
    monkeypatch.delenv("IT_APP_PASSWORD")
    assert outcome(s, "SELECT 'env-ok'", db="viaenv") == "env-ok", "password from password_env"
    assert outcome(s, "SELECT 'passfile-ok'", db="viafile") == "passfile-ok", \
        "password from server_passfile"
    bad = tdir / "bad.conf"
    bad.write_text('databases = ( { name = "x"; conninfo = ""; password_env = "IT_SURELY_UNSET_VAR"; } );\n')
    r = subprocess.run([str(build_dir / "sluice"), "--check", "-c", str(bad)],
                       capture_output=True, text=True, timeout=30)
    assert "password_env: names an environment variable that is not set" in r.stdout + r.stderr, \
        f"unset password_env refused: {r.stdout}{r.stderr}"


@pytest.fixture
def it_expired(pg):
    pg.query("DROP ROLE IF EXISTS it_expired")
    pg.query("CREATE ROLE it_expired LOGIN PASSWORD 'exp_pw' VALID UNTIL '2000-01-01'")
    yield
    pg.query("DROP ROLE IF EXISTS it_expired")


def test_auth_query(pg, sluice, it_expired):
    """auth_query through auth_user's pooled connection: secrets come from
    pg_authid; an expired role and an unknown user fail alike; a user name
    shaped like SQL injection is only ever a bound parameter."""
    s = sluice({"auth_type": "scram-sha-256", "auth_user": "postgres", "auth_dbname": "postgres",
                "databases": [{"name": "app", "conninfo": pg.conninfo("app", "app")},
                              {"name": "postgres",
                               "conninfo": f"host={pg.sock} port={pg.port} dbname=postgres"}]})
    assert login_as(s, "app", "app_pw") == "app:ok", "auth_query: right password"
    out = login_as(s, "app", "wrong_pw")
    assert 'password authentication failed for user "app"' in out, f"auth_query: wrong password: {out}"
    out = login_as(s, "it_expired", "exp_pw")
    assert 'password authentication failed for user "it_expired"' in out, \
        f"auth_query: expired role: {out}"
    out = login_as(s, "nosuchuser", "some_pw")
    assert 'password authentication failed for user "nosuchuser"' in out, \
        f"auth_query: unknown user: {out}"
    out = login_as(s, "x'; DROP ROLE app; --", "some_pw")
    assert "password authentication failed" in out, f"auth_query: injection-shaped user name: {out}"
    assert pg.scalar("SELECT count(*) FROM pg_roles WHERE rolname = 'app'") == 1, "role app still exists"
    # Lookups ran on one pooled backend of postgres/postgres, not one per login.
    n = pg.scalar("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                  "AND usename = 'postgres' AND datname = 'postgres' AND pid <> pg_backend_pid()")
    assert n == 1, "auth_user pool backends"


# ---------------------------------------------------------------------------
# Reloads: TLS certificates, auth_file

def test_client_tls_reload_and_hostssl(pg, sluice, tdir):
    """hostssl-only rules refuse plaintext; new certificates take effect on
    reload while connections made with the old ones keep working; a broken
    certificate file on reload keeps the running context."""
    old_ca = f"{pg.certs}/ca.crt"
    new = tdir / "newcerts"
    main = tdir / "main"
    main.mkdir()
    shutil.copy(f"{pg.certs}/server.crt", main / "server.crt")
    shutil.copy(f"{pg.certs}/server.key", main / "server.key")
    write(main / "users.txt", '"app" "app_pw"\n')
    write(main / "hba.conf", "hostssl all all 127.0.0.1/32 scram-sha-256\n")
    s = sluice({"auth_type": "hba", "auth_file": "users.txt", "auth_hba_file": "hba.conf",
                "client_tls_sslmode": "prefer", "client_tls_cert_file": "server.crt",
                "client_tls_key_file": "server.key"})
    out = outcome(s, "SELECT 1", password="app_pw", sslmode="disable")
    assert "no authentication rule allows" in out, f"hostssl-only rules refuse plaintext: {out}"
    # A client that stays connected across the reload.
    held = s.connect(password="app_pw", host="localhost", sslmode="verify-full", sslrootcert=old_ca)
    try:
        assert held.execute("SELECT 'before'").fetchone()[0] == "before"
        r = subprocess.run(["bash", f"{ROOT}/scripts/gen-test-certs.sh", str(new)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"gen-test-certs.sh failed: {r.stderr}"
        shutil.copy(new / "server.crt", main / "server.crt")
        shutil.copy(new / "server.key", main / "server.key")
        s.reload_and_wait()
        out = outcome(s, "SELECT 'new-cert'", password="app_pw", host="localhost",
                      sslmode="verify-full", sslrootcert=new / "ca.crt")
        assert out == "new-cert", f"new certificate after reload: {out}"
        out = outcome(s, "SELECT 1", password="app_pw", host="localhost", sslmode="verify-full",
                      sslrootcert=old_ca)
        assert "certificate verify failed" in out, f"old CA no longer matches: {out}"
        try:
            v = held.execute("SELECT 'after'").fetchone()[0]
        except psycopg.Error as e:
            pytest.fail(f"held client lost its connection across the reload: {e}", pytrace=False)
        assert v == "after"
    finally:
        held.close()
    # A broken certificate file on reload keeps the running context.
    (main / "server.crt").write_text("garbage\n")
    s.reload_and_wait("reload failed")
    out = outcome(s, "SELECT 'kept'", password="app_pw", host="localhost", sslmode="verify-full",
                  sslrootcert=new / "ca.crt")
    assert out == "kept", f"broken certificate on reload keeps the old one: {out}"


def test_auth_file_reload(pg, sluice, tdir):
    """auth_file is re-read on SIGHUP: a changed password applies to new
    logins."""
    users = tdir / "main" / "users.txt"
    write(users, '"app" "first_pw"\n')
    s = sluice({"auth_type": "md5", "auth_file": "users.txt"})
    assert login_as(s, "app", "first_pw") == "app:ok", "password before reload"
    users.write_text('"app" "second_pw"\n')
    s.reload_and_wait()
    assert login_as(s, "app", "second_pw") == "app:ok", "new password after reload"
    out = login_as(s, "app", "first_pw")
    assert "password authentication failed" in out, f"old password after reload: {out}"
