"""rawpg.py -- raw-protocol client helpers and background-client helpers for
the integration tests, built on pgwire (the wire protocol) and sluicetest
(Sluice, PG).  The test files import them from here; nothing here is a test.

What it owns:
  * raw connections to a Sluice (pgwire.Conn, TCP or its unix socket):
    raw_conn, startup_params, raw_login, login_error / expect_error (a login
    or request that must end in an ErrorResponse), val, send_query, bye
    (Terminate, then close), rst_close (close with a TCP RST);
  * reading what arrives on one: collect, errors_in, next_event;
  * Outcome / Wire / wire_query: a raw client that records every
    ErrorResponse with its SQLSTATE (psycopg 3.1 reports none for a FATAL
    error followed by the end of the connection), and warm (servers idle in
    a pool);
  * Bg: a client run in a background thread; seen: what a client saw, for
    fault reports.
"""

import socket
import struct
import threading
import time

import psycopg
import pytest

from pgwire import (PROTO_3_0, Closed, Conn, PgError, decode_row, message, parse_error_fields,
                    startup_packet)
from sluicetest import sqlstate_of, wait_until


# ---------------------------------------------------------------------------
# Raw connections

def raw_conn(s, timeout=30.0, unix=False, rcvbuf=None):
    """A pgwire.Conn to Sluice s, not logged in: TCP (127.0.0.1), or its unix
    socket.  rcvbuf: SO_RCVBUF set before connect (TCP only)."""
    if rcvbuf:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", s.port))
        c = Conn.__new__(Conn)
        c.sock, c.buf, c.params, c.closed = sock, bytearray(), {}, False
        return c
    return Conn(s.sock if unix else "127.0.0.1", s.port, timeout=timeout)


def startup_params(user="app", db="app", extra=()):
    """Startup parameters as pgwire sends them: user, database (either left
    out when None), then extra."""
    p = []
    if user is not None:
        p.append(("user", user))
    if db is not None:
        p.append(("database", db))
    p.extend(extra)
    return p


def raw_login(s, user="app", db="app", extra=(), version=PROTO_3_0, timeout=30.0, unix=False,
              rcvbuf=None, **params):
    """A raw connection logged in to Sluice s (raises PgError / Closed).
    Startup parameters: user, database, extra, then params."""
    c = raw_conn(s, timeout=timeout, unix=unix, rcvbuf=rcvbuf)
    c.login(startup_params(user, db, list(extra) + list(params.items())), version)
    return c


def expect_error(fn, what):
    """fn() must raise an ErrorResponse (PgError); return it."""
    try:
        fn()
    except PgError as e:
        return e
    except Closed:
        pytest.fail(f"{what}: connection closed without an ErrorResponse", pytrace=False)
    pytest.fail(f"{what}: succeeded, expected an ErrorResponse", pytrace=False)


def login_error(s, what=None, user="app", db="app", extra=(), version=PROTO_3_0, timeout=30.0,
                unix=False, **params):
    """A raw login (as raw_login) that must be refused with an ErrorResponse:
    the PgError.  The connection is closed."""
    if what is None:
        what = f"login to {db} as {user}"
    c = raw_conn(s, timeout=timeout, unix=unix)
    try:
        return expect_error(lambda: c.login(startup_params(user, db, list(extra) + list(params.items())),
                                            version), what)
    finally:
        c.close()


def val(c, sql):
    """First column of the first row of a simple query on a raw connection."""
    rows = c.query(sql)
    return rows[0][0] if rows and rows[0] else None


def send_query(c, sql):
    """Send a simple query without reading the answer."""
    c.send(message(b"Q", sql.encode() + b"\0"))


def bye(c):
    """Terminate, then close."""
    try:
        c.send(message(b"X"))
    except OSError:
        pass
    c.close()


def rst_close(sock):
    """Close with a TCP RST (SO_LINGER 0)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


# ---------------------------------------------------------------------------
# Reading what arrives

def collect(c, timeout, stop_on=()):
    """Read messages until EOF, timeout, or a message type in stop_on.
    Returns (messages, closed)."""
    msgs = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return msgs, False
        c.sock.settimeout(left)
        try:
            m = c.read_msg()
        except Closed:
            return msgs, True
        except socket.timeout:
            return msgs, False
        except OSError:
            return msgs, True
        msgs.append(m)
        if m[0] in stop_on:
            return msgs, False


def errors_in(msgs):
    """The fields of every ErrorResponse among (type, body) messages."""
    return [parse_error_fields(b) for t, b in msgs if t == "E"]


def next_event(c, timeout, code_only=False):
    """What a logged-in idle raw connection receives next: 'ERROR <sqlstate>
    <message>' (with code_only: 'E:<sqlstate>'), 'CLOSED', 'MESSAGE <type>'
    or 'HELD' (nothing in timeout)."""
    c.sock.settimeout(timeout)
    try:
        mtype, body = c.read_msg()
    except socket.timeout:
        return "HELD"
    except (Closed, OSError):
        return "CLOSED"
    if mtype == "E":
        f = parse_error_fields(body)
        if code_only:
            return "E:" + f.get("C", "")
        return f"ERROR {f.get('C', '')} {f.get('M', '')}"
    return f"MESSAGE {mtype}"


# ---------------------------------------------------------------------------
# A raw client that reports every error with its SQLSTATE

class Outcome:
    """What a wire-protocol client got for one request: every ErrorResponse
    (SQLSTATE, message), the rows, and how it ended ('Z' ReadyForQuery,
    'CLOSED', 'TIMEOUT').  psycopg 3.1 reports no SQLSTATE for a FATAL error
    followed by the end of the connection ("consuming input failed: ..."),
    so tests that assert a SQLSTATE read the protocol themselves."""

    def __init__(self):
        self.errors = []
        self.rows = []
        self.end = None
        self.t0 = time.monotonic()
        self.elapsed = None

    @property
    def state(self):
        return self.errors[0][0] if self.errors else None

    @property
    def msg(self):
        return self.errors[0][1] if self.errors else ""

    @property
    def ok(self):
        return not self.errors and self.end == "Z"

    def brief(self):
        errs = "; ".join(f"{c} {m}" for c, m in self.errors)
        return (f"{errs} [{self.end}, {len(self.rows)} rows]" if errs
                else f"{self.end}, {len(self.rows)} rows")[:240]

    def __repr__(self):
        return f"<Outcome {self.brief()} after {self.elapsed}s>"


class Wire:
    """A raw protocol client of a Sluice (pgwire.Conn, TCP or with unix its
    unix socket): log in, run simple queries, and report every error with its
    SQLSTATE."""

    def __init__(self, s, db="app", user="app", timeout=40.0, unix=False):
        self.c = raw_conn(s, timeout=timeout, unix=unix)
        self.c.send(startup_packet([("user", user), ("database", db)]))
        self.login = self.read()

    def read(self):
        o = Outcome()
        try:
            while True:
                mtype, body = self.c.read_msg()
                if mtype == "E":
                    f = parse_error_fields(body)
                    o.errors.append((f.get("C", ""), f.get("M", "")))
                elif mtype == "D":
                    o.rows.append(decode_row(body))
                elif mtype == "R":
                    if struct.unpack_from("!I", body)[0] != 0:
                        raise RuntimeError("Sluice asked for a password")
                elif mtype == "G":
                    o.end = "G"    # CopyInResponse: the caller streams
                    break
                elif mtype == "Z":
                    o.end = "Z"
                    break
        except Closed:
            o.end = "CLOSED"
        except (socket.timeout, TimeoutError):
            o.end = "TIMEOUT"
        except OSError:
            o.end = "CLOSED"
        o.elapsed = round(time.monotonic() - o.t0, 2)
        return o

    def query(self, sql):
        try:
            send_query(self.c, sql)
        except OSError:
            pass
        return self.read()

    def close(self):
        bye(self.c)


def wire_query(s, sql, db="app", timeout=40.0, unix=False):
    """Log in and run one query; the Outcome of the login if it failed,
    else the query's (elapsed counts from the connection attempt)."""
    t0 = time.monotonic()
    w = Wire(s, db=db, timeout=timeout, unix=unix)
    o = w.login if w.login.end != "Z" or w.login.errors else w.query(sql)
    w.close()
    o.elapsed = round(time.monotonic() - t0, 2)
    return o


def warm(s, n, unix=False):
    """Get n servers idle into the pool of app (n clients in a transaction at
    once)."""
    cs = [Wire(s, unix=unix) for _ in range(n)]
    for c in cs:
        o = c.query("BEGIN; SELECT 1")
        assert o.ok, o
    for c in cs:
        assert c.query("COMMIT").ok
        c.close()
    wait_until(lambda: s.pool()["sv_idle"] >= n, what=f"{n} idle servers")


# ---------------------------------------------------------------------------
# Background clients

class Bg(threading.Thread):
    """Run fn() in a thread, started at once; keep its result or exception
    and its duration."""

    def __init__(self, fn, name="bg"):
        super().__init__(name=name, daemon=True)
        self.fn = fn
        self.result = None
        self.error = None
        self.elapsed = None
        self.t0 = time.monotonic()
        self.start()

    def run(self):
        try:
            self.result = self.fn()
        except BaseException as e:  # noqa: B902 -- reported to the test
            self.error = e
        finally:
            self.elapsed = time.monotonic() - self.t0

    def done(self):
        """fn() has returned or raised."""
        return self.elapsed is not None

    def finish(self, timeout=60, what="background client"):
        """Join; fail if still running after timeout s.  An exception other
        than a psycopg.Error is raised here; a psycopg.Error stays in
        .error for the test to judge."""
        self.join(timeout)
        if self.is_alive():
            pytest.fail(f"{what} still blocked after {time.monotonic() - self.t0:.1f}s", pytrace=False)
        if self.error is not None and not isinstance(self.error, psycopg.Error):
            raise self.error
        return self

    def value(self, timeout, what="background query"):
        """finish(timeout), then fn()'s result; fails if it raised."""
        self.finish(timeout, what)
        if self.error is not None:
            pytest.fail(f"{what} failed: {self.error}", pytrace=False)
        return self.result


def seen(x):
    """What a client saw, for reports: an Outcome, an exception or a value."""
    if isinstance(x, Outcome):
        return x.brief()
    if isinstance(x, BaseException):
        msg = str(x).strip().splitlines()[0] if str(x).strip() else ""
        return f"{sqlstate_of(x)} {msg}"[:200]
    return "ok"
