#!/usr/bin/env python3
"""pgwire.py - a small raw PostgreSQL wire-protocol client for the Sluice
integration tests (standard library only).

It does what libpq will not: malformed, fragmented or oversized startup
packets, protocol versions libpq never sends, garbage after login, a client
that stops reading in the middle of a large result, and scripted
interleavings of several connections.

Every mode prints one or more result lines on stdout:

    OK ...                        the login (and query, if any) worked
    ERROR C=<sqlstate> M=<msg>    the server sent an ErrorResponse
    CLOSED                        the connection was closed without one

Usage: pgwire.py [--host H] [--port P] [--user U] [--db D] MODE [ARGS]

Modes:
    connect [--hold SECS] [--param k=v ...]
        log in; print OK (or the error).  With --hold, keep the connection
        open (reading) for SECS seconds and print what arrives meanwhile
        (an ErrorResponse, or CLOSED), or "HELD" if nothing did.
    fragmented [--delay SECS]
        send the startup packet one byte at a time, then SELECT 42.
    startup-size N
        send a startup packet of exactly N bytes (padded with a long
        application_name), then SELECT 1.
    bad-length N
        send a startup packet whose length word says N (N < 8 or > 10000),
        followed by a plausible body.
    truncated
        send the first half of a startup packet, then shut down writing.
    version MAJOR MINOR
        send a startup packet with that protocol version.
    no-user
        send a startup packet without a user parameter.
    ssl | gssenc
        send SSLRequest / GSSENCRequest, print the one-byte answer, then (if
        it was 'N') log in in plain text and run SELECT 1.
    garbage [--type CHAR]
        log in, then send a message of an invalid type.
    slow-reader [--rows N] [--stall SECS] [--rss-pid PID]
        log in, send a large query, read nothing for SECS seconds (sampling
        VmRSS of PID meanwhile), then read everything.  Prints
        "OK rows=<n> last=<v> rss_before_kb=<a> rss_max_kb=<b>".
    script
        read a script from stdin, one command per line:
            open NAME [key=value ...]    log in (startup parameters)
            q NAME SQL...                simple query; prints "NAME: a|b" per
                                         row, "NAME: ERROR <sqlstate> <msg>"
            q NAME SQL... > VAR          ... and the first column of the first
                                         row is printed as "VAR=<value>"
                                         (SQL is taken verbatim; `open` takes
                                         shell-style quoting)
            x NAME MSG ;; MSG ...        extended protocol: P name sql, B portal
                                         stmt, E portal, D S|P name, C S|P name,
                                         S, H ("-" = unnamed); prints the answers
                                         to every Sync as tokens
            send NAME SQL...             send a query without reading the answer
            read NAME [> VAR]            read the answer of a `send`
            close NAME                   Terminate, then close
            abort NAME                   close the socket without Terminate
            reset NAME                   close with a TCP RST (SO_LINGER 0)
            sleep SECS
        Connection names are arbitrary words.  A connection that gets a FATAL
        error is marked closed ("NAME: CLOSED").
"""

import argparse
import os
import re
import shlex
import socket
import struct
import sys
import time

PROTO_3_0 = 3 << 16
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104


class Closed(Exception):
    """The server closed the connection."""


class PgError(Exception):
    def __init__(self, fields):
        super().__init__(fields.get("M", ""))
        self.fields = fields

    @property
    def sqlstate(self):
        return self.fields.get("C", "")

    def line(self):
        return "ERROR C=%s M=%s" % (self.fields.get("C", ""), self.fields.get("M", ""))


def parse_error_fields(body):
    fields = {}
    pos = 0
    while pos < len(body) and body[pos] != 0:
        code = chr(body[pos])
        end = body.index(b"\0", pos + 1)
        fields[code] = body[pos + 1:end].decode("utf-8", "replace")
        pos = end + 1
    return fields


def startup_packet(params, version=PROTO_3_0):
    body = struct.pack("!I", version)
    for k, v in params:
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def message(mtype, body=b""):
    return mtype + struct.pack("!I", len(body) + 4) + body


class Conn:
    def __init__(self, host, port, timeout=30.0):
        if host.startswith("/"):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(os.path.join(host, ".s.PGSQL.%d" % port))
        else:
            self.sock = socket.create_connection((host, port), timeout=timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.params = {}
        self.closed = False

    # -- raw I/O --
    def send(self, data):
        self.sock.sendall(data)

    def fill(self, n):
        while len(self.buf) < n:
            try:
                chunk = self.sock.recv(1 << 20)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.closed = True
                raise Closed()
            self.buf += chunk

    def read_byte(self):
        self.fill(1)
        b = self.buf[0]
        del self.buf[:1]
        return b

    def read_msg(self):
        self.fill(5)
        mtype = chr(self.buf[0])
        (length,) = struct.unpack_from("!I", self.buf, 1)
        if length < 4:
            raise RuntimeError("bad message length %d from server" % length)
        self.fill(1 + length)
        body = bytes(self.buf[5:1 + length])
        del self.buf[:1 + length]
        return mtype, body

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True

    # -- protocol --
    def login(self, params, version=PROTO_3_0):
        self.send(startup_packet(params, version))
        return self.finish_login()

    def finish_login(self):
        """Read up to ReadyForQuery; raise PgError on an ErrorResponse."""
        while True:
            mtype, body = self.read_msg()
            if mtype == "R":
                (code,) = struct.unpack_from("!I", body)
                if code != 0:
                    raise RuntimeError("server asked for authentication %d" % code)
            elif mtype == "S":
                k, v = body.split(b"\0")[:2]
                self.params[k.decode()] = v.decode()
            elif mtype == "E":
                raise PgError(parse_error_fields(body))
            elif mtype == "Z":
                return
            # K (BackendKeyData), N (notice), v (NegotiateProtocolVersion)

    def query(self, sql):
        self.send(message(b"Q", sql.encode() + b"\0"))
        return self.read_result()

    def read_result(self):
        """Rows (lists of str/None) up to ReadyForQuery; PgError on error."""
        rows = []
        err = None
        while True:
            try:
                mtype, body = self.read_msg()
            except Closed:
                if err:
                    raise err
                raise
            if mtype == "D":
                rows.append(decode_row(body))
            elif mtype == "E":
                err = PgError(parse_error_fields(body))
            elif mtype == "G":
                self.send(message(b"f", b"COPY IN not supported by pgwire.py\0"))
            elif mtype == "S":
                k, v = body.split(b"\0")[:2]
                self.params[k.decode()] = v.decode()
            elif mtype == "Z":
                if err:
                    raise err
                return rows


def decode_row(body):
    (n,) = struct.unpack_from("!H", body)
    pos = 2
    row = []
    for _ in range(n):
        (ln,) = struct.unpack_from("!i", body, pos)
        pos += 4
        if ln < 0:
            row.append(None)
        else:
            row.append(body[pos:pos + ln].decode("utf-8", "replace"))
            pos += ln
    return row


def base_params(args, extra=()):
    p = []
    if args.user is not None:
        p.append(("user", args.user))
    if args.db is not None:
        p.append(("database", args.db))
    p.extend(extra)
    return p


def report_exc(e):
    if isinstance(e, PgError):
        print(e.line())
    elif isinstance(e, Closed):
        print("CLOSED")
    else:
        print("EXCEPTION %s: %s" % (type(e).__name__, e))


def run_simple(conn, sql, expect):
    rows = conn.query(sql)
    got = rows[0][0] if rows and rows[0] else None
    if got != expect:
        print("WRONG %s returned %r, expected %r" % (sql, got, expect))
        return 1
    print("OK %s" % got)
    return 0


# ---------------------------------------------------------------- modes

def mode_connect(args):
    extra = []
    for kv in args.param or []:
        k, _, v = kv.partition("=")
        extra.append((k, v))
    c = Conn(args.host, args.port)
    try:
        c.login(base_params(args, extra))
    except (PgError, Closed) as e:
        report_exc(e)
        return 0
    print("OK", flush=True)
    if args.hold:
        c.sock.settimeout(args.hold)
        try:
            mtype, body = c.read_msg()
            if mtype == "E":
                print(PgError(parse_error_fields(body)).line())
            else:
                print("MESSAGE %s" % mtype)
        except socket.timeout:
            print("HELD")
        except Closed:
            print("CLOSED")
    c.close()
    return 0


def mode_fragmented(args):
    pkt = startup_packet(base_params(args, [("application_name", "fragmented")]))
    c = Conn(args.host, args.port)
    for i in range(len(pkt)):
        c.send(pkt[i:i + 1])
        time.sleep(args.delay)
    try:
        c.finish_login()
        return run_simple(c, "SELECT 42", "42")
    except (PgError, Closed) as e:
        report_exc(e)
        return 0


def mode_startup_size(args):
    size = args.size
    fixed = startup_packet(base_params(args, [("application_name", "")]))
    pad = size - len(fixed)
    if pad < 0:
        print("EXCEPTION size %d is too small" % size)
        return 2
    pkt = startup_packet(base_params(args, [("application_name", "a" * pad)]))
    assert len(pkt) == size, (len(pkt), size)
    c = Conn(args.host, args.port)
    try:
        c.send(pkt)
        c.finish_login()
        # PostgreSQL truncates application_name to NAMEDATALEN - 1 bytes.
        return run_simple(c, "SELECT current_setting('application_name') = repeat('a', 63)", "t")
    except (PgError, Closed, OSError) as e:
        report_exc(e)
        return 0


def mode_bad_length(args):
    body = startup_packet(base_params(args))[4:]
    c = Conn(args.host, args.port)
    try:
        c.send(struct.pack("!I", args.length) + body)
        c.finish_login()
        print("OK logged in")
    except (PgError, Closed, OSError) as e:
        report_exc(e)
    return 0


def mode_truncated(args):
    pkt = startup_packet(base_params(args))
    c = Conn(args.host, args.port, timeout=10)
    try:
        c.send(pkt[:len(pkt) // 2])
        c.sock.shutdown(socket.SHUT_WR)
        c.finish_login()
        print("OK logged in")
    except (PgError, Closed, OSError) as e:
        report_exc(e)
    return 0


def mode_version(args):
    c = Conn(args.host, args.port)
    try:
        c.login(base_params(args), (args.major << 16) | args.minor)
        return run_simple(c, "SELECT 1", "1")
    except (PgError, Closed, OSError) as e:
        report_exc(e)
        return 0


def mode_no_user(args):
    c = Conn(args.host, args.port)
    try:
        c.login([("database", args.db or "app")])
        print("OK logged in")
    except (PgError, Closed, OSError) as e:
        report_exc(e)
    return 0


def mode_request(args, code, label):
    c = Conn(args.host, args.port)
    c.send(struct.pack("!II", 8, code))
    try:
        answer = chr(c.read_byte())
    except Closed:
        print("CLOSED")
        return 0
    print("%s=%s" % (label, answer))
    if answer != "N":
        return 0
    try:
        c.login(base_params(args))
        return run_simple(c, "SELECT 1", "1")
    except (PgError, Closed, OSError) as e:
        report_exc(e)
        return 0


def mode_garbage(args):
    c = Conn(args.host, args.port)
    try:
        c.login(base_params(args))
    except (PgError, Closed) as e:
        report_exc(e)
        return 1
    c.send(message(args.type.encode(), b"garbage\0"))
    try:
        c.read_result()
        print("OK no error")
    except (PgError, Closed, OSError) as e:
        report_exc(e)
    return 0


def vm_rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def mode_slow_reader(args):
    c = Conn(args.host, args.port, timeout=120)
    try:
        c.login(base_params(args))
        # Warm up the pool: the server exists before the baseline sample.
        c.query("SELECT 1")
    except (PgError, Closed) as e:
        report_exc(e)
        return 1
    rss_before = vm_rss_kb(args.rss_pid) if args.rss_pid else -1
    rss_max = rss_before
    sql = "SELECT g, repeat('x', 100) FROM generate_series(1,%d) g" % args.rows
    c.send(message(b"Q", sql.encode() + b"\0"))
    t_end = time.monotonic() + args.stall
    while time.monotonic() < t_end:
        time.sleep(0.1)
        if args.rss_pid:
            rss_max = max(rss_max, vm_rss_kb(args.rss_pid))
    # Now drain: count DataRows, keep the last one, stop at ReadyForQuery.
    sock = c.sock
    buf = bytearray(c.buf)
    pos = 0
    rows = 0
    last = None
    err = None
    done = False
    while not done:
        while len(buf) - pos >= 5:
            mtype = buf[pos]
            (length,) = struct.unpack_from("!I", buf, pos + 1)
            if len(buf) - pos < 1 + length:
                break
            if mtype == 0x44:  # 'D'
                rows += 1
                last = (pos + 5, pos + 1 + length)
            elif mtype == 0x45:  # 'E'
                err = PgError(parse_error_fields(bytes(buf[pos + 5:pos + 1 + length])))
            elif mtype == 0x5A:  # 'Z'
                done = True
                pos += 1 + length
                break
            pos += 1 + length
        if last is not None and last[1] <= pos:
            last_row = decode_row(bytes(buf[last[0]:last[1]]))
            last = None
        if done:
            break
        del buf[:pos]
        pos = 0
        chunk = sock.recv(1 << 20)
        if not chunk:
            print("CLOSED rows=%d" % rows)
            return 1
        buf += chunk
        if args.rss_pid and rows % 50000 < 1000:
            rss_max = max(rss_max, vm_rss_kb(args.rss_pid))
    if err:
        print(err.line())
        return 1
    lastval = last_row[0] if rows else None
    print("OK rows=%d last=%s rss_before_kb=%d rss_max_kb=%d" % (rows, lastval, rss_before, rss_max))
    return 0


def extended(c, spec):
    """Send extended-protocol messages, read the answers to every Sync.

    spec: messages separated by ' ;; ':  P name sql | B portal stmt |
    E portal | D S|P name | C S|P name | S | H.  Returns the answers, one
    token each: 1 2 3 t n T C:tag I s D:first-value Z:status E:sqlstate.
    """
    data = b""
    syncs = 0
    for m in [x.strip() for x in spec.split(" ;; ") if x.strip()]:
        kind, _, arg = m.partition(" ")
        if kind == "P":
            name, _, sql = arg.partition(" ")
            name = "" if name == "-" else name
            data += message(b"P", name.encode() + b"\0" + sql.encode() + b"\0" + struct.pack("!H", 0))
        elif kind == "B":
            portal, _, stmt = arg.partition(" ")
            portal = "" if portal == "-" else portal
            stmt = "" if stmt == "-" else stmt
            data += message(b"B", portal.encode() + b"\0" + stmt.encode() + b"\0" +
                            struct.pack("!HHH", 0, 0, 0))
        elif kind == "E":
            portal = "" if arg in ("", "-") else arg
            data += message(b"E", portal.encode() + b"\0" + struct.pack("!I", 0))
        elif kind in ("D", "C"):
            what, _, name = arg.partition(" ")
            name = "" if name == "-" else name
            data += message(kind.encode(), what.encode() + name.encode() + b"\0")
        elif kind == "S":
            data += message(b"S")
            syncs += 1
        elif kind == "H":
            data += message(b"H")
        else:
            raise SystemExit("unknown extended message %r" % m)
    c.send(data)
    tokens = []
    while syncs:
        mtype, body = c.read_msg()
        if mtype == "Z":
            syncs -= 1
            tokens.append("Z:" + body.decode())
        elif mtype == "E":
            tokens.append("E:" + PgError(parse_error_fields(body)).sqlstate)
        elif mtype == "C":
            tokens.append("C:" + body.rstrip(b"\0").decode().replace(" ", "_"))
        elif mtype == "D":
            row = decode_row(body)
            tokens.append("D:" + ("" if not row or row[0] is None else row[0]))
        elif mtype in "123tnTIs":
            tokens.append(mtype)
    return " ".join(tokens)


def mode_script(args):
    conns = {}

    def out(s):
        print(s, flush=True)

    def get(name):
        c = conns.get(name)
        if c is None or c.closed:
            raise RuntimeError("connection %s is not open" % name)
        return c

    def show(name, rows, var):
        if var is not None:
            out("%s=%s" % (var, rows[0][0] if rows and rows[0] else ""))
        else:
            for r in rows:
                out("%s: %s" % (name, "|".join("" if v is None else v for v in r)))

    def answer(name, fn, var):
        c = conns[name]
        try:
            show(name, fn(), var)
        except PgError as e:
            out("%s: ERROR %s %s" % (name, e.sqlstate, e.fields.get("M", "")))
            if var is not None:
                out("%s=ERROR %s" % (var, e.sqlstate))
            if e.fields.get("S") == "FATAL" or e.fields.get("V") == "FATAL":
                c.close()
                out("%s: CLOSED" % name)
        except Closed:
            out("%s: CLOSED" % name)
            if var is not None:
                out("%s=CLOSED" % var)

    for lineno, line in enumerate(sys.stdin, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        # "CMD NAME REST": REST is SQL, taken verbatim, with an optional
        # trailing "> VAR".
        parts = line.split(None, 2)
        cmd = parts[0]
        if cmd == "sleep":
            time.sleep(float(parts[1]))
            continue
        name = parts[1]
        rest = parts[2] if len(parts) > 2 else ""
        var = None
        m = re.search(r"\s*>\s*([A-Za-z_][A-Za-z0-9_]*)\s*$", rest)
        if m and cmd in ("q", "read"):
            var = m.group(1)
            rest = rest[:m.start()]
        if cmd == "open":
            params = base_params(args)
            for kv in shlex.split(rest):
                k, _, v = kv.partition("=")
                params = [p for p in params if p[0] != k] + [(k, v)]
            c = Conn(args.host, args.port)
            conns[name] = c
            try:
                c.login(params)
                out("%s: open" % name)
            except PgError as e:
                out("%s: ERROR %s %s" % (name, e.sqlstate, e.fields.get("M", "")))
                c.close()
            except Closed:
                out("%s: CLOSED" % name)
        elif cmd == "q":
            c = get(name)
            answer(name, lambda: c.query(rest), var)
        elif cmd == "send":
            get(name).send(message(b"Q", rest.encode() + b"\0"))
        elif cmd == "read":
            c = get(name)
            answer(name, c.read_result, var)
        elif cmd == "x":
            c = get(name)
            try:
                out("%s: %s" % (name, extended(c, rest)))
            except Closed:
                out("%s: CLOSED" % name)
        elif cmd == "close":
            c = get(name)
            c.send(message(b"X"))
            c.close()
        elif cmd == "abort":
            get(name).close()
        elif cmd == "reset":
            c = get(name)
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
        else:
            raise SystemExit("script line %d: unknown command %r" % (lineno, cmd))
    for c in conns.values():
        if not c.closed:
            try:
                c.send(message(b"X"))
            except OSError:
                pass
            c.close()
    return 0


def main():
    ap = argparse.ArgumentParser(description="raw PostgreSQL protocol test client")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", default="app")
    ap.add_argument("--db", default="app")
    sub = ap.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("connect")
    p.add_argument("--hold", type=float, default=0)
    p.add_argument("--param", action="append")
    p = sub.add_parser("fragmented")
    p.add_argument("--delay", type=float, default=0.002)
    p = sub.add_parser("startup-size")
    p.add_argument("size", type=int)
    p = sub.add_parser("bad-length")
    p.add_argument("length", type=int)
    sub.add_parser("truncated")
    p = sub.add_parser("version")
    p.add_argument("major", type=int)
    p.add_argument("minor", type=int)
    sub.add_parser("no-user")
    sub.add_parser("ssl")
    sub.add_parser("gssenc")
    p = sub.add_parser("garbage")
    p.add_argument("--type", default="Y")
    p = sub.add_parser("slow-reader")
    p.add_argument("--rows", type=int, default=1000000)
    p.add_argument("--stall", type=float, default=3.0)
    p.add_argument("--rss-pid", type=int, default=0)
    sub.add_parser("script")
    args = ap.parse_args()

    try:
        if args.mode == "connect":
            return mode_connect(args)
        if args.mode == "fragmented":
            return mode_fragmented(args)
        if args.mode == "startup-size":
            return mode_startup_size(args)
        if args.mode == "bad-length":
            return mode_bad_length(args)
        if args.mode == "truncated":
            return mode_truncated(args)
        if args.mode == "version":
            return mode_version(args)
        if args.mode == "no-user":
            return mode_no_user(args)
        if args.mode == "ssl":
            return mode_request(args, SSL_REQUEST, "SSL")
        if args.mode == "gssenc":
            return mode_request(args, GSSENC_REQUEST, "GSSENC")
        if args.mode == "garbage":
            return mode_garbage(args)
        if args.mode == "slow-reader":
            return mode_slow_reader(args)
        if args.mode == "script":
            return mode_script(args)
    except (OSError, RuntimeError) as e:
        print("EXCEPTION %s: %s" % (type(e).__name__, e))
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
