"""sluicetest.py -- the objects the integration tests drive: a throwaway
PostgreSQL cluster (PG), a Sluice instance (Sluice), and small helpers
(polling, process figures, libconfig text), and what the fault tests check
about a Sluice (Watch, LogMark, pools_match_pg, record_fault, ...).  The
fixtures in conftest.py hand these to the tests; nothing here knows about
pytest except pytest.fail.  Raw-protocol clients are in rawpg.py.
"""

import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import time

import psycopg
import pytest

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
SANITIZER_RE = re.compile(r"ERROR: AddressSanitizer|runtime error:|LeakSanitizer|ThreadSanitizer")


# ---------------------------------------------------------------------------
# Small helpers

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout=10.0, interval=0.05, what="condition"):
    """Poll pred() until it returns a true value; return that value, or fail."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # a predicate may fail while things settle
            last_exc = e
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            pytest.fail(f"timed out after {timeout}s waiting for {what}{extra}", pytrace=False)
        time.sleep(interval)


def tcp_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def unix_open(path):
    """Does something accept on the unix socket at path?  (The socket file
    exists a moment before its listen(): only a connect tells.)"""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1)
            s.connect(path)
            return True
    except OSError:
        return False


def proc_alive(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("State:"):
                    return "Z" not in line.split()[1]
    except OSError:
        return False
    return False


def proc_cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def proc_fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def sanitizer_report(path):
    """The first sanitizer report lines in a file, or ''."""
    try:
        text = pathlib.Path(path).read_text(errors="replace")
    except OSError:
        return ""
    hits = [line for line in text.splitlines() if SANITIZER_RE.search(line)]
    return "\n".join(hits[:5])


def sqlstate_of(exc):
    return getattr(getattr(exc, "diag", None), "sqlstate", None)


# ---------------------------------------------------------------------------
# libconfig text from Python values

def _lc_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, dict):
        return "{ " + " ".join(f"{k} = {_lc_value(x)};" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        if v and all(isinstance(x, dict) for x in v):
            return "(\n  " + ",\n  ".join(_lc_value(x) for x in v) + "\n)"
        return "[" + ", ".join(_lc_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as libconfig")


def libconfig_text(settings):
    """settings: dict of name -> value (databases/users: lists of dicts)."""
    return "".join(f"{k} = {_lc_value(v)};\n" for k, v in settings.items())


# ---------------------------------------------------------------------------
# PostgreSQL

class PG:
    """A throwaway PostgreSQL 15 cluster (scripts/pg-temp.sh).

    Roles: postgres (superuser, password postgres), app (password app_pw,
    SCRAM), md5user (md5_pw, MD5).  Database app, owned by app.  Unix socket
    trust, TCP scram-sha-256 (md5 for md5user).
    """

    def __init__(self, root, directory):
        self.root = pathlib.Path(root)
        self.dir = pathlib.Path(directory)
        self.script = self.root / "scripts" / "pg-temp.sh"

    def _run(self, cmd, check=True):
        r = subprocess.run(["bash", str(self.script), cmd, str(self.dir)],
                           capture_output=True, text=True, timeout=180)
        if check and r.returncode != 0:
            raise RuntimeError(f"pg-temp.sh {cmd} failed: {r.stderr[-2000:]}")
        return r

    def start(self):
        self._run("start")
        env = {}
        for line in (self.dir / "env").read_text().splitlines():
            m = re.match(r"export (\w+)=(.*)$", line)
            if m:
                env[m.group(1)] = m.group(2).strip("'")
        self.env = env
        self.port = int(env["PGT_PORT"])
        self.sock = env["PGT_SOCK"]
        self.certs = env["PGT_CERTS"]
        self.bin = env["PGT_BIN"]
        self.log = pathlib.Path(env["PGT_LOG"])
        self.os_user = env["PGT_OS_USER"]
        self.ipv6 = env.get("PGT_IPV6") == "1"
        self.data = self.dir / "data"

    def destroy(self):
        self.thaw()
        self._run("destroy", check=False)

    def stop(self, mode="fast"):
        """Stop the cluster: mode fast or immediate."""
        self.thaw()
        subprocess.run(["setpriv", f"--reuid={self.os_user}", f"--regid={self.os_user}",
                        "--init-groups", "--", f"{self.bin}/pg_ctl", "-D", str(self.data),
                        "-m", mode, "-w", "-t", "60", "stop"],
                       capture_output=True, timeout=90, cwd="/")

    def restart(self):
        self.thaw()
        self._run("restart")

    def is_up(self):
        return self._run("status", check=False).returncode == 0

    def ensure_up(self):
        self.thaw()
        if not self.is_up():
            self._run("start")

    def wait_quiet(self, timeout=5.0):
        """Wait until no client backend but this query's is left (backends of
        a stopped Sluice exit asynchronously); then end any left over (one
        still writing to a vanished client, one behind a blackholed link),
        so the next test counts only its own.  Returns what was ended."""
        left = []
        for attempt in (1, 2):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    left = self.query("SELECT pid, usename, datname, state, left(query, 60) "
                                      "FROM pg_stat_activity WHERE backend_type = "
                                      "'client backend' AND pid <> pg_backend_pid()")
                except psycopg.Error:
                    left = []
                if not left:
                    return []
                time.sleep(0.1)
            if attempt == 1:
                for row in left:
                    try:
                        self.terminate(row[0])
                    except psycopg.Error:
                        pass
        return left

    def postmaster_pid(self):
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _family(self):
        """The postmaster and all its children."""
        pm = self.postmaster_pid()
        if pm is None:
            return []
        pids = [pm]
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                if ppid == pm:
                    pids.append(int(entry))
        return pids

    _frozen = ()

    def freeze(self):
        """SIGSTOP the postmaster and every backend."""
        self._frozen = self._family()
        for p in self._frozen:
            try:
                os.kill(p, signal.SIGSTOP)
            except ProcessLookupError:
                pass

    def thaw(self):
        for p in self._frozen:
            try:
                os.kill(p, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self._frozen = ()

    def conninfo(self, db="app", user="app", tcp=False, **extra):
        """A libpq conninfo to this cluster (for a Sluice database entry)."""
        host = "127.0.0.1" if tcp else self.sock
        s = f"host={host} port={self.port} dbname={db} user={user}"
        return " ".join([s] + [f"{k}={v}" for k, v in extra.items()])

    def connect(self, db="postgres", user="postgres", **kw):
        """A direct superuser connection over the unix socket (trust)."""
        return psycopg.connect(host=self.sock, port=self.port, dbname=db, user=user,
                               autocommit=True, connect_timeout=10, **kw)

    def query(self, sql, params=None, db="postgres"):
        with self.connect(db=db) as c:
            cur = c.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def scalar(self, sql, params=None, db="postgres"):
        rows = self.query(sql, params, db=db)
        return rows[0][0] if rows else None

    def backend_count(self, db="app", user="app", state=None):
        sql = ("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
               "AND datname = %s AND usename = %s")
        params = [db, user]
        if state:
            sql += " AND state = %s"
            params.append(state)
        return self.scalar(sql, params)

    def backend_pids(self, db="app", user="app"):
        return [r[0] for r in self.query(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND datname = %s AND usename = %s ORDER BY pid", [db, user])]

    def active_queries(self, text, user="app"):
        return self.scalar("SELECT count(*) FROM pg_stat_activity WHERE usename = %s "
                           "AND state = 'active' AND query = %s", [user, text])

    def terminate(self, pid):
        return self.scalar("SELECT pg_terminate_backend(%s)", [pid])

    def backend_gone(self, pid):
        return self.scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid]) == 0

    def log_offset(self):
        try:
            return self.log.stat().st_size
        except OSError:
            return 0

    def log_since(self, offset):
        with open(self.log, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")


# ---------------------------------------------------------------------------
# Sluice

class Sluice:
    """One Sluice process with its own directory, port, unix socket and log.

    config: a dict of settings (written as libconfig; databases/users are lists
    of dicts) or libconfig text.  Without a `databases` entry the database app
    of the test cluster is configured (unix socket, user app).  listen_addr,
    listen_port, unix_socket_dir and logfile are filled in unless given.
    """

    def __init__(self, binary, pg, directory, config=None, port=None):
        self.bin = str(binary)
        self.pg = pg
        self.dir = pathlib.Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)
        self.name = self.dir.name
        self.port = port or free_port()
        self.sock = str(self.dir)
        self.conf_path = self.dir / "sluice.conf"
        self.log_path = self.dir / "sluice.log"
        self.stderr_path = self.dir / "stderr"
        self.proc = None
        self.exit_code = None
        self.write_config(config)

    # -- configuration ----------------------------------------------------

    def write_config(self, config=None):
        if config is None:
            config = {}
        head = {
            "listen_addr": "127.0.0.1",
            "listen_port": self.port,
            "unix_socket_dir": self.sock,
            "logfile": str(self.log_path),
        }
        if isinstance(config, str):
            body = config
            for k in list(head):
                if re.search(rf"^\s*{k}\s*=", body, re.M):
                    del head[k]
            text = libconfig_text(head) + body + "\n"
            if not re.search(r"^\s*databases\s*=", body, re.M):
                text += libconfig_text({"databases": [self.default_db()]})
        else:
            merged = dict(head)
            merged.update(config)
            merged.setdefault("databases", [self.default_db()])
            merged = {k: v for k, v in merged.items() if v is not None}
            text = libconfig_text(merged)
        self.conf_path.write_text(f"# {self.name}\n" + text)

    def default_db(self):
        return {"name": "app", "conninfo": self.pg.conninfo("app", "app")}

    # -- process ------------------------------------------------------------

    def start(self, timeout=15):
        self.proc = subprocess.Popen([self.bin, "-c", str(self.conf_path)],
                                     stdin=subprocess.DEVNULL,
                                     stdout=open(self.dir / "stdout", "ab"),
                                     stderr=open(self.stderr_path, "ab"))
        self.pid = self.proc.pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"sluice {self.name} exited at start (status {self.proc.returncode}): "
                            f"{self.tail()}", pytrace=False)
            if tcp_open(self.port) and unix_open(f"{self.sock}/.s.PGSQL.{self.port}"):
                return self
            time.sleep(0.03)
        pytest.fail(f"sluice {self.name} does not accept connections on {self.port} "
                    f"after {timeout}s: {self.tail()}", pytrace=False)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def reload(self):
        self.send_signal(signal.SIGHUP)

    def reload_and_wait(self, text="configuration reloaded", timeout=10):
        """SIGHUP, then wait for one more `text` line in the log."""
        before = self.log().count(text)
        self.reload()
        wait_until(lambda: self.log().count(text) > before, timeout=timeout,
                   what=f"{text!r} in the log after SIGHUP")

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Signal and wait; return the exit code (fails if it does not exit)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"sluice {self.name} did not exit within {timeout}s of {sig!r}",
                            pytrace=False)
        self.exit_code = self.proc.returncode
        return self.exit_code

    def wait_exit(self, timeout=10):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"sluice {self.name} still running after {timeout}s", pytrace=False)

    def stop_quietly(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    # -- figures --------------------------------------------------------------

    def cpu_seconds(self):
        return proc_cpu_seconds(self.pid)

    def rss_kb(self):
        return proc_rss_kb(self.pid)

    def fd_count(self):
        return proc_fd_count(self.pid)

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, n=15):
        lines = (self.stderr() + self.log()).splitlines()
        return "\n".join(lines[-n:])

    # -- clients --------------------------------------------------------------

    def dsn(self, db="app", user="app", unix=False, **kw):
        host = self.sock if unix else "127.0.0.1"
        parts = {"host": host, "port": self.port, "dbname": db, "user": user,
                 "connect_timeout": 10}
        parts.update(kw)
        return " ".join(f"{k}={_dsn_quote(v)}" for k, v in parts.items())

    def connect(self, db="app", user="app", unix=False, autocommit=True, **kw):
        return psycopg.connect(self.dsn(db, user, unix, **kw), autocommit=autocommit)

    def query(self, sql, params=None, db="app", user="app", **kw):
        with self.connect(db, user, **kw) as c:
            cur = c.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def scalar(self, sql, params=None, **kw):
        rows = self.query(sql, params, **kw)
        return rows[0][0] if rows else None

    def admin(self, command, user="admin"):
        """Run a console command over the unix socket (Sluice's OS user is an
        admin there without a password); return rows as dicts."""
        with psycopg.connect(self.dsn("sluice", user, unix=True), autocommit=True,
                             prepare_threshold=None) as c:
            cur = c.execute(command.encode(), prepare=False)
            if cur.description is None:
                return []
            cols = [d.name for d in cur.description]
            return [dict(zip(cols, r)) for r in cur.fetchall()]

    def show(self, what):
        return self.admin(f"SHOW {what}")

    def col(self, command, column, **filters):
        """One column of a console SHOW result (every row whose columns match
        filters), as text (NULL -> '')."""
        rows = [{k: "" if v is None else str(v) for k, v in r.items()} for r in self.admin(command)]
        return [r[column] for r in rows if all(r.get(k) == str(v) for k, v in filters.items())]

    def pool(self, db="app", user="app"):
        """The SHOW POOLS row of (db, user), or None."""
        for r in self.show("POOLS"):
            if r["database"] == db and r["user"] == user:
                return r
        return None

    def pool_servers(self, db="app", user="app"):
        r = self.pool(db, user)
        if r is None:
            return 0
        return sum(int(r[k]) for k in ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login")
                   if k in r)

    def psql(self, *args, db="app", user="app", unix=False, input=None, env=None, timeout=60):
        """Run psql against this Sluice; returns CompletedProcess (text)."""
        host = self.sock if unix else "127.0.0.1"
        e = dict(os.environ)
        if env:
            e.update(env)
        return subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                               "-h", host, "-p", str(self.port), "-U", user, "-d", db, *args],
                              input=input, capture_output=True, text=True, env=e, timeout=timeout)

    def assert_works(self, what="pooler"):
        """The pooler still serves a plain client: a sanity check after abuse."""
        try:
            v = self.scalar("SELECT 'still-works'")
        except psycopg.Error as e:
            pytest.fail(f"{what} no longer serves clients: {e}", pytrace=False)
        assert v == "still-works"


def _dsn_quote(v):
    s = str(v)
    if s == "" or any(ch in s for ch in " '\\"):
        return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return s


# ---------------------------------------------------------------------------
# Fault checks: what every fault test asserts about Sluice itself

class Watch:
    """Watch a Sluice through a fault: CPU time used, peak RSS, and whether
    the console kept answering.

        w = Watch(s)            # figures at the start
        ...fault...
        w.sample()              # any number of times: SHOW POOLS must answer
        w.check(max_cpu=1.0, max_rss_growth_kb=16384)
    """

    def __init__(self, sluice):
        self.s = sluice
        self.t0 = time.monotonic()
        self.cpu0 = sluice.cpu_seconds()
        self.rss0 = sluice.rss_kb()
        self.rss_max = self.rss0
        self.fds0 = sluice.fd_count()
        self.samples = 0

    def sample(self, timeout=5.0):
        """The console answers SHOW POOLS within timeout; record RSS."""
        t = time.monotonic()
        try:
            rows = self.s.admin("SHOW POOLS")
        except psycopg.Error as e:
            pytest.fail(f"console did not answer SHOW POOLS during the fault: {e}", pytrace=False)
        if time.monotonic() - t > timeout:
            pytest.fail(f"console took {time.monotonic() - t:.1f}s to answer SHOW POOLS", pytrace=False)
        self.rss_max = max(self.rss_max, self.s.rss_kb())
        self.samples += 1
        return rows

    def hold(self, seconds, every=1.0):
        """Sample the console every `every` seconds for `seconds`."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.sample()
            time.sleep(min(every, max(0.0, end - time.monotonic())))

    def cpu(self):
        return self.s.cpu_seconds() - self.cpu0

    def hold_while(self, bg, seconds, since=None, also=None, every=0.5):
        """Sample the console (then call also(), if given) every `every` s
        while thread bg runs, until `seconds` after since (default: bg.t0)."""
        t0 = bg.t0 if since is None else since
        while bg.is_alive() and time.monotonic() - t0 < seconds:
            self.sample()
            if also is not None:
                also()
            time.sleep(every)

    def _measure(self):
        self.rss_max = max(self.rss_max, self.s.rss_kb())
        return self.cpu(), time.monotonic() - self.t0

    def figures(self, _measured=None):
        """The figures check() returns, without its assertions (to record
        before asserting)."""
        cpu, wall = _measured or self._measure()
        return {"cpu_s": round(cpu, 3), "wall_s": round(wall, 1), "rss0_kb": self.rss0,
                "rss_max_kb": self.rss_max, "fds": self.s.fd_count()}

    def check(self, max_cpu=1.0, max_rss_growth_kb=32 * 1024):
        """Sluice did not spin and its memory stayed bounded; returns figures."""
        cpu, wall = measured = self._measure()
        assert cpu < max_cpu, f"Sluice used {cpu:.2f}s of CPU over {wall:.1f}s of fault (spinning?)"
        growth = self.rss_max - self.rss0
        assert growth < max_rss_growth_kb, \
            f"Sluice's RSS grew by {growth} kB during the fault ({self.rss0} -> {self.rss_max} kB)"
        return self.figures(measured)


def pools_match_pg(sluice, pg, db="app", user="app", timeout=15.0):
    """Wait until SHOW POOLS' server count for (db, user) equals the client
    backends of (db, user) in pg_stat_activity; fail if it never does."""
    last = {}

    def same():
        last["sluice"] = sluice.pool_servers(db, user)
        last["pg"] = pg.backend_count(db, user)
        return last["sluice"] == last["pg"]
    deadline = time.monotonic() + timeout
    while not same():
        if time.monotonic() > deadline:
            pytest.fail(f"SHOW POOLS has {last.get('sluice')} servers for {db}/{user}, "
                        f"pg_stat_activity {last.get('pg')} backends", pytrace=False)
        time.sleep(0.2)
    return last["pg"]


class LogMark:
    """Log lines a Sluice wrote since the mark (the console samples and the
    healthy pool's clients log their logins too, so tests count what would
    show a storm: lines about server connections)."""

    def __init__(self, s):
        self.s = s
        self.n = len(s.log().splitlines())

    def lines(self):
        return self.s.log().splitlines()[self.n:]

    def server_lines(self):
        return [ln for ln in self.lines() if re.search(r"\bS-\d+ ", ln)]


def assert_quiet_log(mark, max_lines, what):
    """At most max_lines log lines about server connections since mark."""
    lines = mark.server_lines()
    assert len(lines) <= max_lines, \
        f"Sluice wrote {len(lines)} server log lines during {what} (a storm?); last: {lines[-3:]}"
    return len(lines)


def cfg_with_other(pg, app_conninfo=None, **settings):
    """A config: database app (default: unix socket) and the healthy pool
    `postgres` (PostgreSQL's database postgres as user app)."""
    cfg = {
        "pool_mode": "transaction",
        "default_pool_size": 4,
        "server_login_retry": 1,
        "server_connect_timeout": 3,
        "query_wait_timeout": 6,
        "databases": [
            {"name": "app", "conninfo": app_conninfo or pg.conninfo("app", "app")},
            {"name": "postgres", "conninfo": pg.conninfo("postgres", "app")},
        ],
    }
    cfg.update(settings)
    return cfg


def other_works(s, unix=False):
    """The healthy pool `postgres` (see cfg_with_other) answers."""
    v = s.scalar("SELECT 'other-ok'", db="postgres", unix=unix)
    assert v == "other-ok", "the healthy pool stopped working"


def recover(s, timeout=30.0, db="app", unix=False):
    """Seconds until a fresh client of db gets an answer."""
    t0 = time.monotonic()
    wait_until(lambda: s.scalar("SELECT 'back'", db=db, unix=unix, connect_timeout=15) == "back",
               timeout=timeout, interval=0.2, what=f"service of {db} to resume")
    return round(time.monotonic() - t0, 2)


def record_fault(request, name, **figures):
    """Append one JSON line of figures to $FAULT_REPORT (if set)."""
    path = os.environ.get("FAULT_REPORT")
    if not path:
        return
    rec = {"test": request.node.nodeid, "fault": name}
    rec.update(figures)
    with open(path, "a") as f:
        f.write(json.dumps(rec, default=str) + "\n")
