"""test_startup.py -- how Sluice starts and how clients log in.

Covers: refusing to start on a taken TCP port or unix socket; the client
startup packet (fragmented, oversized, bad lengths, truncated, protocol
versions, SSLRequest/GSSENCRequest, missing user, unknown database,
unsupported and tracked startup parameters, garbage after login);
max_client_conn; unix sockets on both sides, TLS and SCRAM/MD5 to the
backend; refused backend logins reaching the client with the backend's
SQLSTATE.  Raw protocol through pgwire.Conn where libpq will not do it.
"""

import socket
import struct
import subprocess
import time

import psycopg
import pytest

import pgwire
from pgwire import Closed
from rawpg import bye, expect_error, login_error, raw_conn, raw_login, startup_params, val
from sluicetest import libconfig_text, wait_until


TX2 = {"pool_mode": "transaction", "default_pool_size": 2}


# ---------------------------------------------------------------------------
# Listening sockets

def _other_instance_conf(path, pg, port, listen_addr, sock_dir):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(libconfig_text({
        "listen_addr": listen_addr,
        "listen_port": port,
        "unix_socket_dir": str(sock_dir),
        "databases": [{"name": "app", "conninfo": pg.conninfo("app", "app")}],
    }))


def _run_refused(sluice_bin, conf, what):
    try:
        r = subprocess.run([sluice_bin, "-c", str(conf)], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what}: the second sluice must exit, not keep running", pytrace=False)
    assert r.returncode != 0, f"{what}: exit status 0"
    return r.stdout + r.stderr


def test_port_in_use(sluice, pg, tdir):
    """A taken TCP port or unix socket: refuse to start, naming the address;
    the first instance is unharmed."""
    first = sluice(name="first")
    port = first.port

    conf = tdir / "second" / "sluice.conf"
    _other_instance_conf(conf, pg, port, "127.0.0.1", tdir / "second")
    out = _run_refused(first.bin, conf, "TCP port taken")
    assert f"127.0.0.1:{port}" in out, f"error message for a taken port: {out!r}"

    # Same unix socket (no TCP listener): refused as well.
    conf = tdir / "third" / "sluice.conf"
    _other_instance_conf(conf, pg, port, "", first.sock)
    out = _run_refused(first.bin, conf, "unix socket taken")
    assert f"{first.sock}/.s.PGSQL.{port}" in out, f"error message for a taken unix socket: {out!r}"

    # The first instance is unharmed (its socket file included).
    first.assert_works("first sluice")
    assert first.scalar("SELECT 1", unix=True) == 1, "unix socket of the first sluice"
    assert first.stop() == 0, "exit status of the first sluice"


# ---------------------------------------------------------------------------
# The startup packet

def test_startup_fragmented(sluice):
    """A startup packet sent one byte at a time."""
    s = sluice(TX2)
    pkt = pgwire.startup_packet(startup_params(extra=[("application_name", "fragmented")]))
    c = raw_conn(s)
    for i in range(len(pkt)):
        c.send(pkt[i:i + 1])
        time.sleep(0.002)
    c.finish_login()
    assert val(c, "SELECT 42") == "42"
    bye(c)
    s.assert_works("after a fragmented startup")


def _sized_startup(size):
    fixed = pgwire.startup_packet(startup_params(extra=[("application_name", "")]))
    pkt = pgwire.startup_packet(startup_params(extra=[("application_name", "a" * (size - len(fixed)))]))
    assert len(pkt) == size
    return pkt


def test_startup_packet_size_limit(sluice):
    """10,000 bytes is the largest startup packet accepted."""
    s = sluice(TX2)
    c = raw_conn(s)
    c.send(_sized_startup(10000))
    c.finish_login()
    # PostgreSQL truncates application_name to NAMEDATALEN - 1 bytes.
    assert val(c, "SELECT current_setting('application_name') = repeat('a', 63)") == "t", \
        "startup packet of exactly 10,000 bytes"
    bye(c)

    c = raw_conn(s)
    e = expect_error(lambda: (c.send(_sized_startup(10001)), c.finish_login()),
                     "startup packet of 10,001 bytes")
    assert e.sqlstate == "08P01", e.line()
    c.close()
    s.assert_works("after an oversized startup packet")


@pytest.mark.parametrize("length", [7, 2147483647])
def test_startup_bad_length(sluice, length):
    """A length word below 8 or above the limit: 08P01."""
    s = sluice(TX2)
    body = pgwire.startup_packet(startup_params())[4:]
    c = raw_conn(s)
    e = expect_error(lambda: (c.send(struct.pack("!I", length) + body), c.finish_login()),
                     f"startup length {length}")
    assert e.sqlstate == "08P01", e.line()
    c.close()
    s.assert_works("after a bad startup length")


def test_startup_truncated(sluice):
    """Half a startup packet, then EOF: the connection is closed."""
    s = sluice(TX2)
    pkt = pgwire.startup_packet(startup_params())
    c = raw_conn(s, timeout=10)
    c.send(pkt[:len(pkt) // 2])
    c.sock.shutdown(socket.SHUT_WR)
    with pytest.raises(Closed):
        c.finish_login()
    c.close()
    s.assert_works("after a truncated startup packet")


def test_startup_protocol_versions(sluice):
    """2.0 and 4.0 are refused; 3.1 is negotiated down."""
    s = sluice(TX2)
    for major, minor in ((2, 0), (4, 0)):
        e = login_error(s, f"protocol {major}.{minor}", version=(major << 16) | minor)
        assert e.sqlstate == "08P01", e.line()
        assert "unsupported frontend protocol" in e.fields.get("M", ""), e.line()
    c = raw_login(s, version=(3 << 16) | 1)
    assert val(c, "SELECT 1") == "1", "protocol 3.1 (newer minor)"
    bye(c)
    s.assert_works("after bad protocol versions")


def test_startup_no_user(sluice):
    s = sluice(TX2)
    e = login_error(s, "startup without user", user=None)
    assert e.sqlstate == "28000", e.line()
    s.assert_works()


@pytest.mark.parametrize("code,label", [(pgwire.SSL_REQUEST, "SSLRequest"),
                                        (pgwire.GSSENC_REQUEST, "GSSENCRequest")])
def test_startup_encryption_request_refused(sluice, code, label):
    """SSLRequest / GSSENCRequest without TLS configured: 'N', then a plain
    startup on the same connection works."""
    s = sluice(TX2)
    c = raw_conn(s)
    c.send(struct.pack("!II", 8, code))
    assert chr(c.read_byte()) == "N", f"answer to {label}"
    c.login(startup_params())
    assert val(c, "SELECT 1") == "1", f"plain startup after {label}"
    bye(c)


def test_startup_refused_logins(sluice):
    """Unknown database, unsupported startup parameters; tracked ones work."""
    s = sluice(TX2)
    e = login_error(s, "unknown database", db="no_such_db")
    assert e.sqlstate == "3D000", e.line()
    e = login_error(s, "unsupported startup parameter", extra=[("no_such_param", "1")])
    assert e.sqlstate == "08P01", e.line()
    e = login_error(s, "options setting that is not tracked", extra=[("options", "-c work_mem=1MB")])
    assert e.sqlstate == "08P01", e.line()
    c = raw_login(s, extra=[("application_name", "it-app"), ("options", "-c DateStyle=German")])
    bye(c)
    s.assert_works("after refused logins")


@pytest.mark.parametrize("mtype", ["Y", "R"], ids=["invalid-type", "backend-only-type"])
def test_garbage_after_login(sluice, mtype):
    """An invalid message type, or one only a backend sends: 08P01."""
    s = sluice(TX2)
    c = raw_login(s)
    c.send(pgwire.message(mtype.encode(), b"garbage\0"))
    e = expect_error(c.read_result, f"message type {mtype!r} after login")
    assert e.sqlstate == "08P01", e.line()
    c.close()
    s.assert_works("after garbage messages")


# ---------------------------------------------------------------------------
# max_client_conn

def test_max_client_conn(sluice):
    """The client over the limit gets 53300; the others are unharmed, and the
    count of clients goes back down when they leave."""
    s = sluice({"pool_mode": "transaction", "default_pool_size": 2, "max_client_conn": 2})
    h1 = raw_login(s)
    h2 = raw_login(s)
    e = login_error(s, "third client over max_client_conn=2")
    assert e.sqlstate == "53300", e.line()
    with pytest.raises(psycopg.OperationalError) as ei:
        s.scalar("SELECT 1")
    assert "no more connections" in str(ei.value), "libpq client over the limit"
    # The holders are still logged in and served.
    assert val(h1, "SELECT 'h1'") == "h1"
    assert val(h2, "SELECT 'h2'") == "h2"
    # They vanish (no Terminate, as if killed).
    h1.close()
    h2.close()
    wait_until(lambda: s.scalar("SELECT 1") == 1, timeout=10,
               what="the pooler to accept clients after the holders left")
    s.assert_works("after the limit was reached")
    # Two at once fit again.
    a = raw_login(s)
    b = raw_login(s)
    assert (val(a, "SELECT 'a'"), val(b, "SELECT 'b'")) == ("a", "b"), \
        "two clients after the refusals"
    bye(a)
    bye(b)


# ---------------------------------------------------------------------------
# Backend sockets, TLS and authentication

def test_sockets_tls_and_auth(sluice, pg):
    """Unix sockets on both sides; TLS and SCRAM/MD5 over TCP to the backend;
    failed backend logins reach the client as errors and nothing hangs."""
    tcp = f"host=127.0.0.1 port={pg.port} dbname=app"
    vf = f"host=localhost port={pg.port} dbname=app user=app password=app_pw sslmode=verify-full"
    s = sluice({"pool_mode": "transaction", "default_pool_size": 2, "databases": [
        {"name": "unixdb", "conninfo": pg.conninfo("app", "app")},
        {"name": "scram", "conninfo": f"{tcp} user=app password=app_pw"},
        {"name": "md5", "conninfo": f"{tcp} user=md5user password=md5_pw"},
        {"name": "tls", "conninfo": f"{tcp} user=app password=app_pw sslmode=require"},
        {"name": "tlsverify", "conninfo": f"{vf} sslrootcert={pg.certs}/ca.crt"},
        {"name": "tlsbadca", "conninfo": f"{vf} sslrootcert={pg.certs}/client.crt"},
        {"name": "badpw", "conninfo": f"{tcp} user=app password=wrong"},
    ]})
    ssl_sql = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"

    # Client over Sluice's unix socket, backend over PostgreSQL's.
    row = s.query("SELECT current_user, inet_client_addr() IS NULL", db="unixdb", unix=True)[0]
    assert row == ("app", True), "unix client / unix backend (user, no client address)"

    row = s.query(f"SELECT current_user, inet_client_addr(), ({ssl_sql})", db="scram")[0]
    assert (row[0], str(row[1]), row[2]) == ("app", "127.0.0.1", False), "plain TCP backend with SCRAM"

    assert s.scalar("SELECT current_user", db="md5") == "md5user", "TCP backend with MD5 password"

    assert s.scalar(ssl_sql, db="tls") is True, "backend TLS with sslmode=require"
    # Several transactions over the TLS server connection, with bigger results.
    with s.connect(db="tls") as c:
        assert c.execute("SELECT count(*), sum(length(repeat('y', g))) "
                         "FROM generate_series(1, 3000) g").fetchone() == (3000, 4501500)
        assert c.execute("SELECT md5(string_agg(md5(g::text), ',')) = (SELECT md5(string_agg("
                         "md5(h::text), ',')) FROM generate_series(1, 50000) h) "
                         "FROM generate_series(1, 50000) g").fetchone() == (True,)

    assert s.scalar(ssl_sql, db="tlsverify") is True, "backend TLS with sslmode=verify-full"

    # Failed backend logins reach the client as errors; nothing hangs.
    with pytest.raises(psycopg.Error) as ei:
        s.scalar("SELECT 1", db="tlsbadca")
    assert "certificate" in str(ei.value), "error for a server certificate that does not verify"
    with pytest.raises(psycopg.Error) as ei:
        s.scalar("SELECT 1", db="badpw")
    assert "password authentication failed" in str(ei.value), "wrong backend password"
    assert s.scalar("SELECT 'tls-still-works'", db="tls") == "tls-still-works", \
        "TLS pool after the failures"


def test_backend_login_error_sqlstate(sluice, pg):
    """A refused backend login reaches the client with the backend's SQLSTATE,
    whatever the authentication method."""
    tcp = f"host=127.0.0.1 port={pg.port}"
    s = sluice({"pool_mode": "transaction", "databases": [
        {"name": "nodb", "conninfo": pg.conninfo("it_no_such_db", "app")},
        {"name": "nodbtcp", "conninfo": f"{tcp} dbname=it_no_such_db user=app password=app_pw"},
        {"name": "badpw", "conninfo": f"{tcp} dbname=app user=app password=wrong"},
        {"name": "badmd5", "conninfo": f"{tcp} dbname=app user=md5user password=wrong"},
        {"name": "app", "conninfo": pg.conninfo("app", "app")},
    ]})
    e = login_error(s, "backend database missing (unix socket)", db="nodb")
    assert e.sqlstate == "3D000", e.line()
    e = login_error(s, "backend database missing (TCP, SCRAM)", db="nodbtcp")
    assert e.sqlstate == "3D000", e.line()
    for db in ("badmd5", "badpw"):
        e = login_error(s, f"wrong backend password ({db})", db=db)
        assert e.sqlstate == "28P01", e.line()
        assert "password authentication failed" in e.fields.get("M", ""), e.line()
    s.assert_works("after refused backend logins")
