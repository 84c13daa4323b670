"""test_hostile_admin.py -- the admin console under hostile or broken clients.

The console is how an operator sees and steers the pooler during an outage,
so it must survive what any client may do: a password that comes slowly
(defect D2: a login that outlives a janitor tick), garbage messages, huge
commands, a session that kills itself, unknown commands, odd spelling.
The same slow login is tried on an autodb pool (a `*` database), whose pool
the janitor may also want to drop.

Every test records its figures with record_fault() (FAULT_REPORT) and checks
Sluice with Watch; pools_match_pg where servers are involved.
"""

import base64
import hashlib
import hmac
import os
import struct
import time

import pytest

from pgwire import Closed, PgError, decode_row, message, parse_error_fields, startup_packet
from rawpg import collect, errors_in, raw_conn, raw_login
from sluicetest import Watch, pools_match_pg, record_fault

pytestmark = pytest.mark.fault

ADMIN_PW = "admin_secret_pw"
APP_PW = "app_pw"


# ---------------------------------------------------------------------------
# Helpers

def start_with_auth(sluice, tdir, auth_type, extra=None):
    users = tdir / "users.txt"
    users.write_text(f'"admin" "{ADMIN_PW}"\n"app" "{APP_PW}"\n')
    cfg = {"auth_type": auth_type, "auth_file": str(users), "admin_users": ["admin"]}
    cfg.update(extra or {})
    return sluice(cfg)


def console(s, **params):
    """A trusted console session over the unix socket (same OS user)."""
    return raw_login(s, "admin", "sluice", timeout=15, unix=True, **params)


def answer(c, sql, timeout=10):
    """Send a simple query; return (types, errors, rows, closed)."""
    c.send(message(b"Q", sql if isinstance(sql, bytes) else sql.encode() + b"\0"))
    msgs, closed = collect(c, timeout, stop_on=("Z",))
    errs = errors_in(msgs)
    rows = [decode_row(b) for t, b in msgs if t == "D"]
    return [t for t, _ in msgs], errs, rows, closed


def columns(msgs_types_body):
    for t, b in msgs_types_body:
        if t == "T":
            (n,) = struct.unpack_from("!H", b)
            pos, cols = 2, []
            for _ in range(n):
                end = b.index(b"\0", pos)
                cols.append(b[pos:end].decode())
                pos = end + 1 + 18
            return cols
    return None


def console_alive(c):
    types, errs, rows, closed = answer(c, "SHOW VERSION")
    return not closed and not errs and rows and rows[0][0].startswith("Sluice")


def read_auth_request(c):
    mtype, body = c.read_msg()
    if mtype == "E":
        raise PgError(parse_error_fields(body))
    assert mtype == "R", f"expected an authentication request, got {mtype!r}"
    return struct.unpack_from("!I", body)[0], body[4:]


def md5_response(user, password, salt):
    inner = hashlib.md5((password + user).encode()).hexdigest()
    return ("md5" + hashlib.md5(inner.encode() + salt).hexdigest()).encode() + b"\0"


def scram_exchange(c, password, delay2):
    """SCRAM-SHA-256 after AuthenticationSASL; sleeps delay2 before the final
    message.  Leaves the connection after AuthenticationSASLFinal."""
    nonce = base64.b64encode(os.urandom(18)).decode()
    first_bare = f"n=,r={nonce}"
    first = ("n,," + first_bare).encode()
    c.send(message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first))
    code, data = read_auth_request(c)
    assert code == 11, f"expected SASLContinue, got {code}"
    server_first = data.decode()
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    assert attrs["r"].startswith(nonce)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]),
                                 int(attrs["i"]))
    ck = hmac.new(salted, b"Client Key", "sha256").digest()
    sk = hashlib.sha256(ck).digest()
    final_wo = f"c=biws,r={attrs['r']}"
    auth = f"{first_bare},{server_first},{final_wo}".encode()
    proof = bytes(a ^ b for a, b in zip(ck, hmac.new(sk, auth, "sha256").digest()))
    time.sleep(delay2)
    c.send(message(b"p", f"{final_wo},p={base64.b64encode(proof).decode()}".encode()))
    code, data = read_auth_request(c)
    assert code == 12, f"expected SASLFinal, got {code}"


def slow_login(s, user, db, password, delay, delay2=0.0):
    """Log in over TCP, waiting `delay` s before the password (and `delay2`
    s before SCRAM's final message).  Returns (conn, method)."""
    c = raw_conn(s, timeout=20)
    c.send(startup_packet([("user", user), ("database", db)]))
    code, data = read_auth_request(c)
    time.sleep(delay)
    if code == 5:
        c.send(message(b"p", md5_response(user, password, data[:4])))
        method = "md5"
    elif code == 10:
        scram_exchange(c, password, delay2)
        method = "scram-sha-256"
    elif code == 3:
        c.send(message(b"p", password.encode() + b"\0"))
        method = "password"
    else:
        raise AssertionError(f"unexpected authentication request {code}")
    c.finish_login()
    return c, method


# ---------------------------------------------------------------------------
# D2: slow password on the console

DELAYS = [(0.6, 0.0), (1.1, 0.6), (2.0, 0.0), (0.3, 1.3)]


def slow_logins(request, s, w, kind, auth_type, user, db, password, use):
    """A slow_login with each pair of DELAYS; use(c) does the session's work
    and returns (outcome, more figures).  The console is sampled after each
    (no more tries once Sluice died).  Records the figures, then asserts
    that Sluice is alive and every try's outcome was "ok".  Returns what
    each try saw."""
    seen = []
    for delay, delay2 in DELAYS:
        t0 = time.monotonic()
        try:
            c, method = slow_login(s, user, db, password, delay, delay2)
            outcome, more = use(c)
            c.send(message(b"X"))
            c.close()
            seen.append({"delay": delay, "delay2": delay2, "method": method, "outcome": outcome,
                         **more, "s": round(time.monotonic() - t0, 2)})
        except (PgError, Closed, OSError, AssertionError) as e:
            seen.append({"delay": delay, "delay2": delay2, "outcome": repr(e),
                         "alive": s.alive()})
        if not s.alive():
            break
        w.sample()
    record_fault(request, f"{kind} login with a slow password ({auth_type})", client_saw=seen,
                 sluice_alive=s.alive(), **w.figures())
    assert s.alive(), f"Sluice died during a slow {kind} login: {s.tail()}"
    bad = [x for x in seen if x["outcome"] != "ok"]
    assert not bad, f"slow {kind} logins failed: {bad}"
    return seen


@pytest.mark.parametrize("auth_type", ["md5", "scram-sha-256"])
def test_console_slow_password(sluice, tdir, pg, request, auth_type):
    """A password-protected admin whose password comes 0.3-2 s after the
    startup packet (several janitor ticks): the login succeeds and SHOW POOLS
    answers, every time; Sluice neither crashes nor reports a memory error."""
    s = start_with_auth(sluice, tdir, auth_type)
    w = Watch(s)

    def show_pools(c):
        types, errs, rows, closed = answer(c, "SHOW POOLS")
        return ("ok" if rows and not errs and "Z" in types else f"{types} {errs}",
                {"pools": [r[0] for r in rows]})
    seen = slow_logins(request, s, w, "console", auth_type, "admin", "sluice", ADMIN_PW, show_pools)
    assert all("sluice" in x["pools"] for x in seen), seen
    # A wrong password, slowly, is still refused properly.
    with pytest.raises(PgError) as ei:
        slow_login(s, "admin", "sluice", "wrong_pw", 0.6)
    assert ei.value.sqlstate == "28P01"
    w.sample()
    w.check(max_cpu=1.0)


@pytest.mark.parametrize("auth_type", ["md5", "scram-sha-256"])
def test_autodb_slow_password(sluice, tdir, pg, request, auth_type):
    """The same slow login on a pool created through the `*` database, with
    a short autodb_idle_timeout so the janitor would like to drop the pool
    meanwhile: the login succeeds and the query runs; the pool and
    pg_stat_activity agree afterwards."""
    s = start_with_auth(sluice, tdir, auth_type, {
        "autodb_idle_timeout": 0.5,
        "databases": [{"name": "*", "conninfo": f"host={pg.sock} port={pg.port}"}]})
    w = Watch(s)

    def query(c):
        rows = c.query("SELECT current_database(), 'slow-autodb'")
        return "ok" if rows == [["app", "slow-autodb"]] else repr(rows), {}
    slow_logins(request, s, w, "autodb", auth_type, "app", "app", APP_PW, query)
    pools_match_pg(s, pg)
    assert s.scalar("SELECT 'fast'", password=APP_PW) == "fast"
    w.check(max_cpu=1.0)


# ---------------------------------------------------------------------------
# Garbage on the console

GARBAGE = {
    # name: (bytes sent after login, what is acceptable)
    "invalid-type": (message(b"Y", b"junk\0"), "fatal"),
    "length-0": (b"Q" + struct.pack("!I", 0), "fatal"),
    "length-3": (b"Q" + struct.pack("!I", 3) + b"abc", "fatal"),
    "length-2^31-1": (b"Q" + struct.pack("!I", 2 ** 31 - 1) + b"SHOW POOLS\0", "fatal"),
    "binary-query-text": (message(b"Q", b"\x01\x02\xff\xfe\x80garbage\0"), "error"),
    "unterminated-query": (message(b"Q", b"SHOW VERSION"), "any"),
    "nul-in-query": (message(b"Q", b"SHOW\0POOLS\0"), "any"),
    # Outside COPY, PostgreSQL ignores COPY messages: the Sync's ReadyForQuery alone.
    "copy-data": (message(b"d", b"1\t2\n") + message(b"S"), "ignored"),
    "bind-nonsense": (message(b"B", b"\xff" * 40) + message(b"S"), "error"),
    "noise-4k": (bytes((i * 37 + 11) % 256 for i in range(4096)), "fatal"),
}


def test_console_garbage(sluice, pg, request):
    """Garbage sent to a logged-in console session: a fatal 08P01 and a
    close for broken framing, an ERROR (session kept) for a well-framed but
    wrong message; never a crash or a hang; other console sessions and
    clients are unaffected; COPY messages outside COPY are ignored, as
    PostgreSQL does."""
    s = sluice({"admin_users": ["admin"]})
    other = console(s)
    w = Watch(s)
    seen, bad = {}, []
    for name, (data, expect) in GARBAGE.items():
        c = console(s)
        c.send(data)
        msgs, closed = collect(c, 5, stop_on=("Z",))
        if not closed and (not msgs or msgs[-1][0] != "Z"):
            more, closed = collect(c, 1)
            msgs += more
        errs = [parse_error_fields(b) for t, b in msgs if t == "E"]
        kept = (not closed) and console_alive(c)
        c.close()
        seen[name] = {"types": "".join(t for t, _ in msgs), "closed": closed, "session_kept": kept,
                      "errors": [(e.get("S"), e.get("C"), e.get("M")) for e in errs]}
        if not s.alive():
            bad.append(f"{name}: Sluice died")
            break
        if not closed and not msgs:
            bad.append(f"{name}: no answer and no close within 5 s")
        elif expect == "fatal" and not closed:
            bad.append(f"{name}: session not closed: {seen[name]}")
        elif expect == "fatal" and errs and errs[0].get("C") != "08P01":
            bad.append(f"{name}: {seen[name]}")
        elif expect == "error" and not (errs and not closed and kept):
            bad.append(f"{name}: expected an ERROR and the session kept: {seen[name]}")
        elif expect == "ignored" and not (seen[name]["types"] == "Z" and kept):
            bad.append(f"{name}: expected it ignored (ReadyForQuery only), session kept: "
                       f"{seen[name]}")
        elif expect == "any" and not (closed or kept):
            bad.append(f"{name}: session neither closed nor usable: {seen[name]}")
        if not console_alive(other):
            bad.append(f"{name}: another console session stopped answering")
    w.sample()
    fig = w.figures()
    record_fault(request, "console garbage", client_saw=seen, **fig)
    assert not bad, "\n".join(bad)
    s.assert_works()
    pools_match_pg(s, pg)
    w.check(max_cpu=1.0)


@pytest.mark.parametrize("data, sqlstate, ending", [
    pytest.param(message(b"F", struct.pack("!IHHH", 2026, 0, 0, 0)), "0A000", "Z",
                 id="function-call"),
    pytest.param(message(b"p", b"admin_secret_pw\0"), "08P01", "close",
                 id="password-after-login"),
])
def test_console_simple_message_error_ends_exchange(sluice, pg, request, data, sqlstate, ending):
    """A FunctionCall or a stray password message on the console: the answer
    must end the exchange, as PostgreSQL's does -- a FunctionCall gets ERROR
    0A000 (not supported) then ReadyForQuery, a password after login FATAL
    08P01 and a close -- so the client is not left waiting; the console keeps
    serving others."""
    s = sluice({"admin_users": ["admin"]})
    w = Watch(s)
    c = console(s)
    c.send(data)
    msgs, closed = collect(c, 3, stop_on=("Z",))
    types = "".join(t for t, _ in msgs)
    errs = [parse_error_fields(b) for t, b in msgs if t == "E"]
    c.close()
    w.sample()
    fig = w.figures()
    record_fault(request, "console FunctionCall / stray password message", client_saw=types,
                 closed=closed, errors=[(e.get("S"), e.get("C"), e.get("M")) for e in errs], **fig)
    assert errs and errs[0].get("C") == sqlstate, (types, errs)
    if ending == "Z":
        assert types.endswith("Z") and not closed, f"expected ERROR then ReadyForQuery: {types!r}"
        s.assert_works("console after a FunctionCall")
    else:
        assert closed, f"expected FATAL and a close, got {types!r} and no close within 3 s"
    w.check(max_cpu=0.5)


def test_console_very_long_commands(sluice, pg, request):
    """A 1 MB SHOW command: FATAL 08P01 at once, no crash, RSS bounded;
    a 60 KB command and a 300-argument command: a clear ERROR and the session
    goes on; a valid command padded with 60 KB of blanks still runs."""
    s = sluice({"admin_users": ["admin"]})
    other = console(s)
    w = Watch(s)
    seen = {}

    c = console(s)
    t0 = time.monotonic()
    try:
        # Sluice may refuse (and close) before it has all of it.
        c.send(message(b"Q", b"SHOW " + b"P" * (1 << 20) + b"\0"))
        send_error = None
    except OSError as e:
        send_error = repr(e)
    msgs, closed = collect(c, 10)
    c.close()
    errs = [parse_error_fields(b) for t, b in msgs if t == "E"]
    seen["1MB"] = {"closed": closed, "s": round(time.monotonic() - t0, 2), "send_error": send_error,
                   "errors": [(e.get("S"), e.get("C"), e.get("M")) for e in errs]}

    # The header of a 1 MB command and a part of it: refused on the header.
    c = console(s)
    t0 = time.monotonic()
    c.send(b"Q" + struct.pack("!I", (1 << 20) + 4) + b"SHOW " + b"P" * 16000)
    msgs, closed = collect(c, 10)
    c.close()
    errs = [parse_error_fields(b) for t, b in msgs if t == "E"]
    seen["1MB-header"] = {"closed": closed, "s": round(time.monotonic() - t0, 2),
                          "errors": [(e.get("S"), e.get("C"), e.get("M")) for e in errs]}

    c = console(s)
    cases = {"60KB-word": "SHOW " + "P" * 60000,
             "300-words": "KILL_CLIENT " + " ".join(["1"] * 300),
             "60KB-blanks": " " * 30000 + "SHOW" + " " * 30000 + "VERSION",
             "10000-semicolons": ";" * 10000 + "SHOW VERSION"}
    for name, sql in cases.items():
        types, errs, rows, closed = answer(c, sql)
        seen[name] = {"types": "".join(types), "closed": closed,
                      "errors": [(e.get("C"), (e.get("M") or "")[:80]) for e in errs],
                      "rows": rows[:1]}
        if closed:
            c = console(s)
    kept = console_alive(c)
    c.close()
    w.sample()
    fig = w.figures()
    record_fault(request, "console very long commands", client_saw=seen, **fig)
    assert s.alive()
    assert seen["1MB"]["closed"] and seen["1MB"]["s"] < 5, seen["1MB"]
    # (The FATAL may be lost to the RST of a close with unread input.)
    assert [e[1] for e in seen["1MB"]["errors"]] in (["08P01"], []), seen["1MB"]
    assert seen["1MB-header"]["closed"] and seen["1MB-header"]["s"] < 5, seen["1MB-header"]
    assert [e[:2] for e in seen["1MB-header"]["errors"]] == [("FATAL", "08P01")], seen["1MB-header"]
    for name in ("60KB-word", "300-words"):
        assert not seen[name]["closed"] and [e[0] for e in seen[name]["errors"]] == ["42601"], \
            f"{name}: {seen[name]}"
    for name in ("60KB-blanks", "10000-semicolons"):
        assert not seen[name]["errors"] and seen[name]["rows"] and \
            seen[name]["rows"][0][0].startswith("Sluice"), f"{name}: {seen[name]}"
    assert kept and console_alive(other)
    w.check(max_cpu=1.0, max_rss_growth_kb=16 * 1024)


def _client_id(c, appname):
    c.send(message(b"Q", b"SHOW CLIENTS\0"))
    msgs, _ = collect(c, 10, stop_on=("Z",))
    cols = columns(msgs)
    for t, b in msgs:
        if t == "D":
            row = dict(zip(cols, decode_row(b)))
            if row.get("application_name") == appname:
                return row["id"]
    return None


def test_console_kill_client_of_itself(sluice, pg, request):
    """KILL_CLIENT of the session's own id is refused with 55000 and the
    session goes on; killing another console session closes that one; ids
    that do not exist or are no ids get 42704 / 22023."""
    s = sluice({"admin_users": ["admin"]})
    w = Watch(s)
    a = console(s, application_name="hostile_a")
    b = console(s, application_name="hostile_b")
    ida, idb = _client_id(a, "hostile_a"), _client_id(a, "hostile_b")
    assert ida and idb and ida != idb, (ida, idb)
    seen = {}
    for name, sql in {"self": f"KILL_CLIENT {ida}", "no-id": "KILL_CLIENT",
                      "unknown-id": "KILL_CLIENT 999999999", "not-a-number": "KILL_CLIENT abc",
                      "negative": "KILL_CLIENT -1", "huge": "KILL_CLIENT 99999999999999999999999"
                      }.items():
        types, errs, rows, closed = answer(a, sql)
        seen[name] = {"closed": closed, "errors": [(e.get("C"), e.get("M")) for e in errs]}
        assert not closed, f"KILL_CLIENT ({name}) closed the session: {seen}"
    self_kept = console_alive(a)
    types, errs, rows, closed = answer(a, f"KILL_CLIENT {idb}")
    seen["other"] = {"types": "".join(types), "errors": [(e.get("C"), e.get("M")) for e in errs]}
    bmsgs, bclosed = collect(b, 5)
    seen["other_session_saw"] = {"closed": bclosed, "errors": [
        (e.get("C"), e.get("M")) for e in (parse_error_fields(x) for t, x in bmsgs if t == "E")]}
    alive_after = console_alive(a)
    a.close()
    b.close()
    w.sample()
    fig = w.figures()
    record_fault(request, "console KILL_CLIENT of itself", client_saw=seen, **fig)
    assert self_kept and alive_after
    assert [e[0] for e in seen["self"]["errors"]] == ["55000"], seen["self"]
    assert "cannot kill the connection running the command" in seen["self"]["errors"][0][1]
    assert [e[0] for e in seen["no-id"]["errors"]] == ["22023"], seen["no-id"]
    assert [e[0] for e in seen["unknown-id"]["errors"]] == ["42704"], seen["unknown-id"]
    for name in ("not-a-number", "negative", "huge"):
        assert len(seen[name]["errors"]) == 1 and seen[name]["errors"][0][0] in ("22023", "42704"), \
            f"{name}: {seen[name]}"
    assert not seen["other"]["errors"], seen["other"]
    assert seen["other_session_saw"]["closed"], seen["other_session_saw"]
    s.assert_works()
    pools_match_pg(s, pg)
    w.check(max_cpu=1.0)


UNKNOWN = ["FOO", "SHOW", "SHOW FOO", "SHOW POOLS POOLS", "SELECT 1", "SELECT * FROM pools",
           "SHOW \"pools\"x", "PAUSE PAUSE PAUSE", "SET", "SET x",
           "SHOW POOLS'", "SHOW POOLS\"", "'", "\"", "SHOW $$POOLS$$", "\\x01\\x02",
           "SHOW POOLS -- comment", "/* c */ SHOW POOLS", "DROP DATABASE app",
           "SHOW " + "\u00e9\u00e8" * 10, "\u2603"]


def test_console_unknown_commands(sluice, pg, request):
    """Unknown or malformed commands: an ERROR (42601 mostly), the session
    goes on; nothing is changed (the pooler still serves, nothing paused)."""
    s = sluice({"admin_users": ["admin"]})
    w = Watch(s)
    c = console(s)
    seen, bad = {}, []
    for sql in UNKNOWN:
        types, errs, rows, closed = answer(c, sql)
        seen[sql] = {"types": "".join(types), "closed": closed,
                     "errors": [(e.get("C"), (e.get("M") or "")[:60]) for e in errs]}
        if closed:
            bad.append(f"{sql!r}: session closed")
            c = console(s)
        elif len(errs) != 1 or "Z" not in types:
            bad.append(f"{sql!r}: {seen[sql]}")
        elif errs[0].get("C") not in ("42601", "42501", "22023", "42704"):
            bad.append(f"{sql!r}: unexpected SQLSTATE {seen[sql]}")
    types, errs, rows, closed = answer(c, "")
    seen["<empty>"] = {"types": "".join(types), "errors": errs}
    alive = console_alive(c)
    c.close()
    w.sample()
    fig = w.figures()
    record_fault(request, "console unknown commands", client_saw=seen, **fig)
    assert not bad, "\n".join(bad)
    assert seen["<empty>"]["types"] == "IZ", seen["<empty>"]
    assert alive
    s.assert_works()
    pools_match_pg(s, pg)
    assert all(not int(r.get("paused", 0)) for r in s.show("DATABASES"))
    w.check(max_cpu=1.0)


SPELLINGS = ["show pools", "SHOW POOLS", "ShOw PoOlS", "  SHOW   POOLS  ", "SHOW\tPOOLS",
             "SHOW\nPOOLS", "\n\tshow\r\npools\n", "SHOW POOLS;", "SHOW POOLS ; ",
             ";SHOW POOLS", "SHOW pools;;"]


def test_console_show_odd_spacing_and_case(sluice, pg, request):
    """SHOW POOLS spelled with odd case, blanks, tabs, newlines and stray
    semicolons: the same SHOW POOLS answer each time."""
    s = sluice({"admin_users": ["admin"]})
    s.assert_works()
    w = Watch(s)
    c = console(s)
    seen, bad = {}, []
    for sql in SPELLINGS:
        c.send(message(b"Q", sql.encode() + b"\0"))
        msgs, closed = collect(c, 10, stop_on=("Z",))
        cols = columns(msgs)
        errs = [parse_error_fields(b) for t, b in msgs if t == "E"]
        dbs = [decode_row(b)[0] for t, b in msgs if t == "D"]
        seen[sql] = {"columns": (cols or [])[:3], "databases": dbs,
                     "errors": [(e.get("C"), e.get("M")) for e in errs]}
        if closed or errs or not cols or cols[:2] != ["database", "user"] or "app" not in dbs:
            bad.append(f"{sql!r}: {seen[sql]}")
    c.close()
    w.sample()
    fig = w.figures()
    record_fault(request, "console SHOW with odd spacing/case", client_saw=seen, **fig)
    assert not bad, "\n".join(bad)
    w.check(max_cpu=1.0)
