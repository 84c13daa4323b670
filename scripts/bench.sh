#!/usr/bin/env bash
# bench.sh -- benchmark Sluice against PgBouncer and a direct PostgreSQL
# connection, all on this machine over loopback.
#
# Usage:
#   make bench                       build, then run this script
#   scripts/bench.sh                 full run (about 35 minutes on 2 CPUs)
#   BENCH_QUICK=1 scripts/bench.sh   smoke run (about 1-1.5 minutes)
#
# What it does:
#   * installs PgBouncer if missing (scripts/install-deps.sh pgbouncer);
#   * starts a throwaway PostgreSQL 15 (scripts/pg-temp.sh; shared_buffers
#     512MB, max_connections 300, durability off, autovacuum off), creates
#     database "bench" and runs `pgbench -i -s $BENCH_SCALE`;
#   * configures PgBouncer and Sluice identically: transaction pooling,
#     $BENCH_POOL server connections, server login over TCP 127.0.0.1 with
#     SCRAM as postgres/postgres (no TLS to the server), clients trusted,
#     max_client_conn 12000, no connection logging, TCP on 127.0.0.1 only;
#   * pgbench runs, interleaved: for each repetition, workload and client
#     count every target runs once, the order rotated per repetition
#     (A B C / B C A / C A B).  Targets: direct (TCP + SCRAM, skipped above
#     $BENCH_DIRECT_MAX clients), relay (scripts/min_relay.c: a 1:1 TCP
#     forwarder that only does recv + send, i.e. what relaying alone costs
#     on this machine; a backend per client, so also skipped above
#     $BENCH_DIRECT_MAX), pgbouncer, sluice.  Workloads:
#       select      pgbench -S
#       select-ext  pgbench -S -M extended
#       select-prep pgbench -S -M prepared (transaction poolers may fail it;
#                   failures are recorded, not hidden)
#       tpcb        pgbench built-in tpcb-like script
#     Before every run: TRUNCATE pgbench_history, VACUUM, CHECKPOINT over the
#     unix socket; a fresh pooler process; a $BENCH_WARMUP s warm-up through
#     the target; then the measured run (`pgbench -n -j $BENCH_THREADS`, with
#     per-transaction logs for the p99 latency);
#   * per run: TPS (without initial connection time), average and p99
#     latency, failed transactions / aborted clients, pooler CPU
#     microseconds per transaction (utime+stime from /proc/PID/stat, sampled
#     over the measured window, i.e. after all clients are connected), pooler
#     peak RSS (VmHWM);
#   * idle connections: $BENCH_IDLE authenticated idle clients per pooler
#     (raw-protocol asyncio client), (RSS after - RSS before) / N;
#   * connection storm: `pgbench -C -S -c 10` per pooler: connections per
#     second and pooler CPU microseconds per connection;
#   * writes $BENCH_OUT/<timestamp>/: runs.jsonl (one JSON object per run),
#     meta.json, logs/ (pgbench output and gzipped per-transaction logs),
#     pooler logs, and summary.md (scripts/bench_report.py).
#
# Everything it starts (PostgreSQL, the poolers, pgbench) is stopped on exit,
# by PID.  Needs root (PostgreSQL and PgBouncer then run as the postgres OS
# user) or a normal user that may run both; python3 (stdlib only).
#
# Environment knobs (defaults in brackets; BENCH_QUICK changes some):
#   BENCH_OUT          results parent directory [/tmp/sluice-bench-results]
#   BENCH_QUICK        1 = smoke run: 1 rep, 3 s, clients "10 100", select
#                      only, idle 500 [0]
#   BENCH_DURATION     seconds per measured run (pgbench -T) [15; quick 3]
#   BENCH_REPS         repetitions [3; quick 1]
#   BENCH_CLIENTS      client counts ["10 100 1000"; quick "10 100"]
#   BENCH_WORKLOADS    ["select select-ext select-prep tpcb"; quick "select"]
#   BENCH_TARGETS      ["direct relay pgbouncer sluice"]
#   BENCH_SCALE        pgbench scale factor [10]
#   BENCH_POOL         server connections per pool [20]
#   BENCH_THREADS      pgbench -j [2]
#   BENCH_WARMUP       warm-up seconds before each run [2]
#   BENCH_DIRECT_MAX   skip direct and relay runs above this many clients [250]
#   BENCH_CONN_ALLOW_MS  pgbench -T (and warm-up) is extended by this many ms
#                      per client, rounded to whole seconds, so that the
#                      initial logins do not eat the measured window [1]
#   BENCH_DIRECT_CONN_ALLOW_MS  the same for direct and relay runs, whose logins use
#                      SCRAM (PBKDF2 on the client) and fork a backend [30]
#   BENCH_LOG_SAMPLE   pgbench --sampling-rate of the per-transaction logs [1]
#   BENCH_IDLE         idle connections per pooler [10000; quick 500]
#   BENCH_STORM_DURATION  seconds per connection-storm run [BENCH_DURATION]
#   BENCH_SKIP_IDLE, BENCH_SKIP_STORM  1 = skip that part [0]
#   BENCH_SLUICE       the sluice binary [build/sluice]
#   BENCH_PGBOUNCER    the pgbouncer binary [/usr/sbin/pgbouncer]
#   PG_BIN             PostgreSQL binaries [/usr/lib/postgresql/15/bin]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)

QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
    d_dur=3 d_reps=1 d_clients="10 100" d_workloads="select" d_idle=500
else
    d_dur=15 d_reps=3 d_clients="10 100 1000" d_workloads="select select-ext select-prep tpcb" d_idle=10000
fi
OUT_PARENT=${BENCH_OUT:-/tmp/sluice-bench-results}
DURATION=${BENCH_DURATION:-$d_dur}
REPS=${BENCH_REPS:-$d_reps}
CLIENTS=${BENCH_CLIENTS:-$d_clients}
WORKLOADS=${BENCH_WORKLOADS:-$d_workloads}
TARGETS=${BENCH_TARGETS:-"direct relay pgbouncer sluice"}
SCALE=${BENCH_SCALE:-10}
POOL=${BENCH_POOL:-20}
THREADS=${BENCH_THREADS:-2}
WARMUP=${BENCH_WARMUP:-2}
DIRECT_MAX=${BENCH_DIRECT_MAX:-250}
CONN_ALLOW_MS=${BENCH_CONN_ALLOW_MS:-1}
DIRECT_CONN_ALLOW_MS=${BENCH_DIRECT_CONN_ALLOW_MS:-30}
LOG_SAMPLE=${BENCH_LOG_SAMPLE:-1}
IDLE_N=${BENCH_IDLE:-$d_idle}
STORM_DURATION=${BENCH_STORM_DURATION:-$DURATION}
SKIP_IDLE=${BENCH_SKIP_IDLE:-0}
SKIP_STORM=${BENCH_SKIP_STORM:-0}
SLUICE=${BENCH_SLUICE:-$ROOT/build/sluice}
PGBOUNCER=${BENCH_PGBOUNCER:-/usr/sbin/pgbouncer}
MAX_CLIENT_CONN=12000
DB=bench

PROG=bench
say() { printf '%s %s: %s\n' "$(date +%H:%M:%S)" "$PROG" "$*" >&2; }
die() { say "error: $*"; exit 1; }

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
for v in DURATION REPS SCALE POOL THREADS WARMUP DIRECT_MAX CONN_ALLOW_MS DIRECT_CONN_ALLOW_MS \
         IDLE_N STORM_DURATION; do
    is_uint "${!v}" || die "$v='${!v}' is not a non-negative integer"
done
[ "$DURATION" -ge 1 ] && [ "$REPS" -ge 1 ] || die "BENCH_DURATION and BENCH_REPS must be >= 1"
for w in $WORKLOADS; do
    case "$w" in select|select-ext|select-prep|tpcb) ;; *) die "unknown workload '$w'" ;; esac
done
for t in $TARGETS; do
    case "$t" in direct|relay|pgbouncer|sluice) ;; *) die "unknown target '$t'" ;; esac
done
for c in $CLIENTS; do is_uint "$c" && [ "$c" -ge 1 ] || die "bad client count '$c'"; done

workload_args() {   # pgbench arguments of a workload
    case "$1" in
        select)      echo "-S -M simple" ;;
        select-ext)  echo "-S -M extended" ;;
        select-prep) echo "-S -M prepared" ;;
        tpcb)        echo "-M simple" ;;
    esac
}

# ---------------------------------------------------------------------------
# Prerequisites

command -v python3 >/dev/null 2>&1 || die "python3 not found (scripts/install-deps.sh)"
[ -x "$SLUICE" ] || die "$SLUICE not found: build it first (make bench does)"
if [ ! -x "$PGBOUNCER" ]; then
    say "installing pgbouncer"
    "$HERE/install-deps.sh" pgbouncer
    [ -x "$PGBOUNCER" ] || PGBOUNCER=$(command -v pgbouncer) || die "pgbouncer not found after installing it"
fi
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
[ -x "$PG_BIN/pgbench" ] || die "$PG_BIN/pgbench not found (scripts/install-deps.sh)"

IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1
PGB_OS_USER=$(id -un)
if [ "$IS_ROOT" = 1 ]; then
    PGB_OS_USER=postgres
    id -u "$PGB_OS_USER" >/dev/null 2>&1 || die "OS user postgres is missing (install postgresql-15)"
fi

# File descriptors: the idle test holds BENCH_IDLE sockets in one process,
# and each pooler one per client plus its server connections.
NOFILE_WANT=$(( IDLE_N + 2000 > 16384 ? IDLE_N + 2000 : 16384 ))
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$NOFILE_WANT" ]; then
    ulimit -Hn "$NOFILE_WANT" 2>/dev/null || true
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$(( IDLE_N + 200 ))" ]; then
    die "ulimit -n is $(ulimit -n), too small for $IDLE_N idle connections"
fi

CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------------------
# Work and result directories, cleanup

STAMP=$(date +%Y%m%d-%H%M%S)
RES=$OUT_PARENT/$STAMP
mkdir -p "$RES/logs"
RES=$(cd "$RES" && pwd)
JSONL=$RES/runs.jsonl
: >"$JSONL"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")
chmod 0755 "$WORK"     # the postgres OS user must reach the cluster below it
PGDIR=$WORK/pg
TOOL=$WORK/benchtool.py

PGB_PID=
SLUICE_PID=
RELAY_PID=
CHILD_PID=
PG_STARTED=0

stop_pid() {   # stop_pid PID: SIGTERM, wait up to 10 s, then SIGKILL
    local pid=$1 i
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 200); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.05
    done
    say "pid $pid ignored SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    stop_pid "$CHILD_PID"
    stop_pid "$PGB_PID"
    stop_pid "$SLUICE_PID"
    stop_pid "$RELAY_PID"
    [ -f "$WORK/pgb/pgbouncer.log" ] && cp "$WORK/pgb/pgbouncer.log" "$RES/pgbouncer.log"
    [ -f "$WORK/sluice/sluice.log" ] && cp "$WORK/sluice/sluice.log" "$RES/sluice.log"
    if [ "$PG_STARTED" = 1 ]; then
        "$HERE/pg-temp.sh" destroy "$PGDIR" || say "could not stop the PostgreSQL cluster"
    fi
    rm -rf -- "$WORK"
    if [ "$rc" -ne 0 ]; then
        if [ -s "$JSONL" ] && [ ! -e "$RES/summary.md" ]; then
            python3 "$HERE/bench_report.py" "$RES" 2>/dev/null || true
        fi
        say "failed (exit $rc); partial results in $RES"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

# Run a command in the background and wait for it, so that cleanup can stop
# it by PID.  Returns its exit status.
run_child() {
    local rc=0
    "$@" &
    CHILD_PID=$!
    wait "$CHILD_PID" || rc=$?
    CHILD_PID=
    return "$rc"
}

# ---------------------------------------------------------------------------
# Helper program: pgbench runner with /proc sampling, idle-connection client,
# metadata.  Written to the work directory, removed on exit.

cat >"$TOOL" <<'PY'
import argparse, asyncio, json, os, re, resource, signal, socket, struct
import subprocess, sys, threading, time


def proc_ticks(pid):
    """utime + stime of a process (all its threads), in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def proc_kb(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def sys_cpu():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def parse_pgbench(out):
    def num(pat, conv=float):
        m = re.search(pat, out, re.M)
        return conv(m.group(1)) if m else None
    return {
        "txns": num(r"^number of transactions actually processed: (\d+)", int),
        "failed": num(r"^number of failed transactions: (\d+)", int),
        "lat_ms": num(r"^latency average = ([\d.]+) ms"),
        "conn_ms": num(r"^initial connection time = ([\d.]+) ms"),
        "avg_conn_ms": num(r"^average connection time = ([\d.]+) ms"),
        "tps": num(r"^tps = ([\d.]+)"),
    }


def cmd_run(a, cmd):
    clk = a.clk_tck
    pid = a.pid
    if pid and proc_ticks(pid) is None:
        sys.exit(f"benchtool: pooler pid {pid} is not running")
    samples = []          # (monotonic, pooler ticks, sys busy, sys total)
    stop = threading.Event()

    def sample():
        b, t = sys_cpu()
        samples.append((time.monotonic(), proc_ticks(pid) if pid else 0, b, t))

    def sampler():
        while not stop.wait(a.sample_s):
            sample()

    sample()
    before = os.times()
    t0 = time.monotonic()
    # pgbench runs in the directory of its output, so --log-prefix can be relative.
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         cwd=os.path.dirname(os.path.abspath(a.pgbench_out)))

    def on_term(signum, _frame):
        p.terminate()
        sys.exit(128 + signum)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    out, _ = p.communicate()
    t1 = time.monotonic()
    stop.set()
    th.join()
    sample()
    after = os.times()
    with open(a.pgbench_out, "w") as f:
        f.write(" ".join([os.path.basename(cmd[0])] + cmd[1:]) + "\n" + out)

    r = parse_pgbench(out)
    rec = {"kind": a.kind, "ts": time.strftime("%Y-%m-%dT%H:%M:%S"), "rep": a.rep,
           "order": a.order, "target": a.target, "workload": a.workload,
           "clients": a.clients, "threads": a.threads, "duration_s": a.duration,
           "rc": p.returncode, "wall_s": round(t1 - t0, 2)}
    rec.update(r)
    aborted = len(re.findall(r"^pgbench: error: client \d+ (?:script \d+ )?aborted", out, re.M))
    rec["aborted_clients"] = aborted
    errs = [l for l in out.splitlines() if re.search(r"error|FATAL|could not", l, re.I)]
    if p.returncode != 0 or aborted or r["tps"] is None:
        rec["error"] = (errs[0] if errs else f"pgbench exit {p.returncode}")[:300]
        rec["error_lines"] = len(errs)
    rec["pgbench_cpu_s"] = round(after.children_user + after.children_system
                                 - before.children_user - before.children_system, 2)

    # Measured window: from the end of the initial connections to the end of -T.
    if a.kind == "storm":
        wa, wb = t0, t1 + 1        # every transaction is a login: count everything
    else:
        wa = t0 + (r["conn_ms"] or 0) / 1000.0 + 0.1
        wb = t0 + a.duration - 0.1
    win = [s for s in samples if wa <= s[0] <= wb]
    if len(win) >= 2 and win[-1][0] - win[0][0] >= 0.5:
        sa, sb = win[0], win[-1]
    else:
        sa, sb = samples[0], samples[-1]
    dt = sb[0] - sa[0]
    rec["window_s"] = round(dt, 2)
    rec["sys_busy_pct"] = round(100.0 * (sb[2] - sa[2]) / max(1, sb[3] - sa[3]), 1)
    if pid:
        rec["pooler_pid_alive"] = proc_ticks(pid) is not None
        if sa[1] is not None and sb[1] is not None:
            cpu_s = (sb[1] - sa[1]) / clk
            rec["pooler_cpu_pct"] = round(100.0 * cpu_s / dt, 1) if dt > 0 else None
            if a.kind == "storm":
                rec["pooler_us_tx"] = round(cpu_s * 1e6 / r["txns"], 2) if r["txns"] else None
            elif r["tps"] and dt > 0:
                rec["pooler_us_tx"] = round(cpu_s * 1e6 / (r["tps"] * dt), 2)
            ends = [s[1] for s in samples if s[1] is not None]
            if r["txns"] and len(ends) >= 2:
                rec["pooler_us_tx_all"] = round((ends[-1] - ends[0]) / clk * 1e6 / r["txns"], 2)
        rec["pooler_rss_peak_kb"] = proc_kb(pid, "VmHWM")
        rec["pooler_rss_end_kb"] = proc_kb(pid, "VmRSS")
        if not rec["pooler_pid_alive"]:
            rec.setdefault("error", "pooler process died during the run")
    if a.log_prefix:
        rec["log_prefix"] = a.log_prefix
    with open(a.out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    tps = f"{r['tps']:.0f}" if r["tps"] is not None else "-"
    us = rec.get("pooler_us_tx")
    print(f"    {a.target:9s} tps {tps:>7s}  lat {r['lat_ms']} ms"
          + (f"  pooler {us} us/tx" if us is not None else "")
          + (f"  ERROR: {rec['error']}" if "error" in rec else ""), file=sys.stderr)


# ---- idle connections: raw PostgreSQL protocol, trust authentication only ----

def msg(tag, payload):
    return tag + struct.pack("!I", len(payload) + 4) + payload


async def read_msg(reader):
    hdr = await reader.readexactly(5)
    return hdr[:1], await reader.readexactly(struct.unpack("!I", hdr[1:])[0] - 4)


def err_text(p):
    f = {part[:1]: part[1:].decode(errors="replace") for part in p.split(b"\0") if part}
    return f"{f.get(b'S', '')} {f.get(b'C', '')} {f.get(b'M', '')}".strip()


async def login(host, port, user, db):
    reader, writer = await asyncio.open_connection(host, port)
    body = struct.pack("!I", 196608) + b"user\0" + user.encode() + b"\0database\0" \
        + db.encode() + b"\0application_name\0bench-idle\0\0"
    writer.write(struct.pack("!I", len(body) + 4) + body)
    while True:
        tag, p = await read_msg(reader)
        if tag == b"R":
            code = struct.unpack("!I", p[:4])[0]
            if code != 0:
                writer.close()
                raise RuntimeError(f"authentication request {code}: only trust is supported")
        elif tag == b"E":
            writer.close()
            raise RuntimeError(err_text(p))
        elif tag == b"Z":
            return reader, writer


async def simple_query(reader, writer, sql):
    writer.write(msg(b"Q", sql.encode() + b"\0"))
    err = None
    while True:
        tag, p = await read_msg(reader)
        if tag == b"E":
            err = err_text(p)
        elif tag == b"Z":
            if err:
                raise RuntimeError(err)
            return


async def idle_main(a):
    pid, n = a.pid, a.count
    conns, errors = [], []
    primer = await login(a.host, a.port, a.user, a.db)   # server side warmed up
    await simple_query(*primer, "SELECT 1")
    await asyncio.sleep(a.settle_s)
    rss0, hwm0 = proc_kb(pid, "VmRSS"), proc_kb(pid, "VmHWM")
    sem = asyncio.Semaphore(a.inflight)

    async def one():
        async with sem:
            try:
                conns.append(await login(a.host, a.port, a.user, a.db))
            except (OSError, RuntimeError, asyncio.IncompleteReadError) as e:
                errors.append(str(e) or type(e).__name__)

    t0 = time.monotonic()
    await asyncio.gather(*(one() for _ in range(n)))
    open_s = time.monotonic() - t0
    await asyncio.sleep(a.settle_s)
    rss1, hwm1 = proc_kb(pid, "VmRSS"), proc_kb(pid, "VmHWM")
    # Are they real?  A few run a query; none may have been closed.
    check_err = None
    try:
        for c in conns[:: max(1, len(conns) // 10)][:10]:
            await simple_query(*c, "SELECT 1")
    except (OSError, RuntimeError, asyncio.IncompleteReadError) as e:
        check_err = str(e) or type(e).__name__
    closed = sum(1 for r, w in conns if r.at_eof() or w.is_closing())
    for r, w in conns + [primer]:
        try:
            w.write(msg(b"X", b""))
            w.close()
        except OSError:
            pass
    await asyncio.sleep(0.2)
    ok = len(conns)
    rec = {"kind": "idle", "ts": time.strftime("%Y-%m-%dT%H:%M:%S"), "rep": a.rep,
           "order": a.order, "target": a.target, "clients": n, "opened": ok,
           "open_s": round(open_s, 2), "login_errors": len(errors),
           "rss_before_kb": rss0, "rss_after_kb": rss1, "hwm_before_kb": hwm0, "hwm_after_kb": hwm1,
           "bytes_per_conn": round((rss1 - rss0) * 1024.0 / ok, 1) if ok and rss0 and rss1 else None,
           "closed_by_pooler": closed}
    if errors or check_err or closed:
        rec["error"] = (check_err or (errors[0] if errors else f"{closed} connections closed"))[:300]
    with open(a.out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(f"    {a.target:9s} {ok}/{n} idle connections in {open_s:.1f} s, "
          f"RSS {rss0} -> {rss1} kB = {rec['bytes_per_conn']} B/conn"
          + (f"  ERROR: {rec['error']}" if "error" in rec else ""), file=sys.stderr)


def cmd_idle(a):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if proc_ticks(a.pid) is None:
        sys.exit(f"benchtool: pooler pid {a.pid} is not running")
    asyncio.run(idle_main(a))


def cmd_freeports(a):
    socks, ports = [], []
    for _ in range(a.count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    print(" ".join(map(str, ports)))


def cmd_meta(a):
    meta = dict(kv.split("=", 1) for kv in a.kv)
    for k in ("nproc", "scale", "pool", "threads", "duration_s", "reps", "warmup_s",
              "direct_max", "idle", "storm_duration_s", "clk_tck", "conn_allow_ms",
              "direct_conn_allow_ms"):
        if k in meta and meta[k].isdigit():
            meta[k] = int(meta[k])
    with open(a.out, "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--kind", default="pgbench")
    for k in ("target", "workload", "out", "pgbench-out"):
        r.add_argument("--" + k, required=True)
    for k in ("clients", "threads", "duration", "rep", "order", "pid", "clk-tck"):
        r.add_argument("--" + k, type=int, required=True)
    r.add_argument("--log-prefix", default="")
    r.add_argument("--sample-s", type=float, default=0.1)
    i = sub.add_parser("idle")
    i.add_argument("--host", default="127.0.0.1")
    i.add_argument("--port", type=int, required=True)
    i.add_argument("--user", default="postgres")
    i.add_argument("--db", default="bench")
    for k in ("pid", "count", "rep", "order"):
        i.add_argument("--" + k, type=int, required=True)
    i.add_argument("--target", required=True)
    i.add_argument("--out", required=True)
    i.add_argument("--inflight", type=int, default=100)
    i.add_argument("--settle-s", type=float, default=1.0)
    f = sub.add_parser("freeports")
    f.add_argument("count", type=int)
    m = sub.add_parser("meta")
    m.add_argument("out")
    m.add_argument("kv", nargs="*")
    argv = sys.argv[1:]
    cmd = []
    if "--" in argv:
        k = argv.index("--")
        argv, cmd = argv[:k], argv[k + 1:]
    a = ap.parse_args(argv)
    if a.cmd == "run":
        cmd_run(a, cmd)
    elif a.cmd == "idle":
        cmd_idle(a)
    elif a.cmd == "freeports":
        cmd_freeports(a)
    else:
        cmd_meta(a)


main()
PY

# ---------------------------------------------------------------------------
# PostgreSQL

unset PGT_DIR PGT_PORT PGHOST PGPORT PGDATABASE PGUSER PGSERVICE PGOPTIONS 2>/dev/null || true
export PGPASSWORD=postgres   # direct TCP connections log in with SCRAM
export PGSSLMODE=disable     # every target alike: no TLS, no SSLRequest round trip
export PGAPPNAME=bench

say "starting a throwaway PostgreSQL cluster"
PG_STARTED=1
PGT_SHARED_BUFFERS=512MB PGT_MAX_CONNECTIONS=300 PG_BIN=$PG_BIN \
    "$HERE/pg-temp.sh" start "$PGDIR"
# shellcheck disable=SC1091
. "$PGDIR/env"
# shellcheck disable=SC2153  # PGT_PORT comes from the env file
PG_PORT=$PGT_PORT

psql_sock() {   # psql as superuser over the unix socket (trust)
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGT_SOCK" -p "$PG_PORT" -U postgres "$@"
}
psql_sock -d postgres -c "ALTER SYSTEM SET autovacuum = off" -c "SELECT pg_reload_conf()" >/dev/null
psql_sock -d postgres -c "CREATE DATABASE $DB" >/dev/null
say "pgbench -i -s $SCALE"
"$PG_BIN/pgbench" -i -q -s "$SCALE" -h "$PGT_SOCK" -p "$PG_PORT" -U postgres "$DB" \
    >"$RES/logs/pgbench-init.txt" 2>&1 || { tail -5 "$RES/logs/pgbench-init.txt" >&2; die "pgbench -i failed"; }
# Load every table and index into shared_buffers, so that the first runs do
# not pay for a cold cache that later runs do not.
psql_sock -d "$DB" -c "CREATE EXTENSION IF NOT EXISTS pg_prewarm" \
    -c "SELECT pg_prewarm(c.oid::regclass) FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i')" >/dev/null ||
    say "warning: pg_prewarm failed; the first runs start with a cold cache"

maintenance() {   # same starting state for every run
    psql_sock -d "$DB" -c "TRUNCATE pgbench_history" \
        -c "VACUUM pgbench_branches, pgbench_tellers, pgbench_accounts" \
        -c "CHECKPOINT" >/dev/null
}

# ---------------------------------------------------------------------------
# Poolers

read -r PGB_PORT SLUICE_PORT RELAY_PORT <<<"$("python3" "$TOOL" freeports 3)"

mkdir -p "$WORK/pgb" "$WORK/sluice"
case " $TARGETS " in *" relay "*)
    "${CC:-cc}" -std=c11 -O2 -o "$WORK/min_relay" "$HERE/min_relay.c" ||
        die "could not build scripts/min_relay.c" ;;
esac
printf '"postgres" ""\n' >"$WORK/pgb/userlist.txt"
cat >"$WORK/pgb/pgbouncer.ini" <<EOF
[databases]
$DB = host=127.0.0.1 port=$PG_PORT dbname=$DB user=postgres password=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = trust
auth_file = $WORK/pgb/userlist.txt
pool_mode = transaction
default_pool_size = $POOL
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = $MAX_CLIENT_CONN
server_tls_sslmode = disable
log_connections = 0
log_disconnections = 0
log_pooler_errors = 1
EOF
: >"$WORK/pgb/pgbouncer.log"
[ "$IS_ROOT" = 1 ] && chown -R "$PGB_OS_USER:" "$WORK/pgb"
chmod 0600 "$WORK/pgb/userlist.txt"

cat >"$WORK/sluice/sluice.conf" <<EOF
listen_addr = "127.0.0.1"; listen_port = $SLUICE_PORT; unix_socket_dir = "";
pool_mode = "transaction"; default_pool_size = $POOL; max_client_conn = $MAX_CLIENT_CONN;
log_connections = false; log_disconnections = false;
databases = ( { name = "$DB"; conninfo = "host=127.0.0.1 port=$PG_PORT dbname=$DB user=postgres password=postgres sslmode=disable"; } );
EOF
: >"$WORK/sluice/sluice.log"

listening() {   # listening PORT: is something listening on 127.0.0.1:PORT?
    ss -ltnH "sport = :$1" 2>/dev/null | grep -q .
}

wait_listen() {   # wait_listen NAME PID PORT LOG
    local i
    for i in $(seq 200); do
        kill -0 "$2" 2>/dev/null || { tail -n 20 "$4" >&2; die "$1 exited at start"; }
        listening "$3" && return 0
        sleep 0.05
    done
    tail -n 20 "$4" >&2
    die "$1 is not listening on 127.0.0.1:$3 after 10 s"
}

start_pgbouncer() {
    local -a launch=()
    [ "$IS_ROOT" = 1 ] && launch=(setpriv --reuid="$PGB_OS_USER" --regid="$(id -g "$PGB_OS_USER")" --init-groups --)
    # Foreground process (not -d): it logs to stderr and keeps our PID.
    (cd / && exec "${launch[@]}" "$PGBOUNCER" "$WORK/pgb/pgbouncer.ini") \
        </dev/null >>"$WORK/pgb/pgbouncer.log" 2>&1 &
    PGB_PID=$!
    wait_listen pgbouncer "$PGB_PID" "$PGB_PORT" "$WORK/pgb/pgbouncer.log"
}

start_sluice() {
    "$SLUICE" -c "$WORK/sluice/sluice.conf" </dev/null >>"$WORK/sluice/sluice.log" 2>&1 &
    SLUICE_PID=$!
    wait_listen sluice "$SLUICE_PID" "$SLUICE_PORT" "$WORK/sluice/sluice.log"
}

start_relay() {
    "$WORK/min_relay" "$RELAY_PORT" "$PG_PORT" </dev/null >>"$WORK/relay.log" 2>&1 &
    RELAY_PID=$!
    wait_listen relay "$RELAY_PID" "$RELAY_PORT" "$WORK/relay.log"
}

stop_poolers() {
    stop_pid "$PGB_PID"; PGB_PID=
    stop_pid "$SLUICE_PID"; SLUICE_PID=
    stop_pid "$RELAY_PID"; RELAY_PID=
    local i
    for i in $(seq 100); do   # let the ports go before the next start
        listening "$PGB_PORT" || listening "$SLUICE_PORT" || listening "$RELAY_PORT" || return 0
        sleep 0.05
    done
}

# prepare_target TARGET: fresh pooler process (if any); sets T_PORT, T_PID
prepare_target() {
    stop_poolers
    case "$1" in
        direct)    T_PORT=$PG_PORT; T_PID=0 ;;
        relay)     start_relay; T_PORT=$RELAY_PORT; T_PID=$RELAY_PID ;;
        pgbouncer) start_pgbouncer; T_PORT=$PGB_PORT; T_PID=$PGB_PID ;;
        sluice)    start_sluice; T_PORT=$SLUICE_PORT; T_PID=$SLUICE_PID ;;
    esac
}

# rotated TARGETS... for repetition REP (0-based): A B C / B C A / C A B
rotate() {
    local rep=$1; shift
    local -a t=("$@")
    local n=${#t[@]} i
    for ((i = 0; i < n; i++)); do printf '%s\n' "${t[$(( (i + rep) % n ))]}"; done
}

# ---------------------------------------------------------------------------
# Metadata

cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
[ -n "$cpu_model" ] || cpu_model=$(uname -m)
git_rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ "$git_rev" != unknown ] && [ -n "$(git -C "$ROOT" status --porcelain -- src include 2>/dev/null)" ]; then
    git_rev="$git_rev+local-changes"
fi
python3 "$TOOL" meta "$RES/meta.json" \
    "timestamp=$STAMP" "quick=$QUICK" \
    "nproc=$(nproc)" "cpu_model=$cpu_model" "kernel=$(uname -sr)" \
    "mem_total=$(awk '/^MemTotal:/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)" \
    "postgresql=$(psql_sock -d postgres -Atc 'SHOW server_version')" \
    "pgbouncer=$("$PGBOUNCER" --version 2>/dev/null | head -n 1)" \
    "sluice=$("$SLUICE" --version 2>/dev/null | head -n 1)" "sluice_git=$git_rev" \
    "pgbench=$("$PG_BIN/pgbench" --version | head -n 1)" \
    "duration_s=$DURATION" "reps=$REPS" "clients=$CLIENTS" "workloads=$WORKLOADS" \
    "targets=$TARGETS" "scale=$SCALE" "pool=$POOL" "threads=$THREADS" "warmup_s=$WARMUP" \
    "direct_max=$DIRECT_MAX" "idle=$IDLE_N" "storm_duration_s=$STORM_DURATION" \
    "log_sample=$LOG_SAMPLE" "conn_allow_ms=$CONN_ALLOW_MS" \
    "direct_conn_allow_ms=$DIRECT_CONN_ALLOW_MS" "clk_tck=$CLK_TCK"

read -r -a TARGET_LIST <<<"$TARGETS"
say "results: $RES"
say "targets: $TARGETS; workloads: $WORKLOADS; clients: $CLIENTS; ${DURATION}s x $REPS reps"

# ---------------------------------------------------------------------------
# pgbench runs

T0=$(date +%s)
for ((rep = 0; rep < REPS; rep++)); do
    for w in $WORKLOADS; do
        read -r -a wargs <<<"$(workload_args "$w")"
        for c in $CLIENTS; do
            say "rep $((rep + 1))/$REPS  $w  $c clients"
            j=$(( THREADS < c ? THREADS : c ))
            order=0
            mapfile -t ORDER < <(rotate "$rep" "${TARGET_LIST[@]}")
            for t in "${ORDER[@]}"; do
                per_backend=0   # one PostgreSQL backend per client
                case "$t" in direct|relay) per_backend=1 ;; esac
                if [ "$per_backend" = 1 ] && [ "$c" -gt "$DIRECT_MAX" ]; then continue; fi
                order=$((order + 1))
                id="r$((rep + 1))-$w-c$c-$t"
                allow=$CONN_ALLOW_MS
                [ "$per_backend" = 1 ] && allow=$DIRECT_CONN_ALLOW_MS
                extra=$(( (c * allow + 500) / 1000 ))
                T=$(( DURATION + extra ))
                maintenance
                prepare_target "$t"
                # Warm-up through the same target (opens the server connections).
                run_child "$PG_BIN/pgbench" -n "${wargs[@]}" -c "$c" -j "$j" -T "$(( WARMUP + extra ))" \
                    -h 127.0.0.1 -p "$T_PORT" -U postgres "$DB" \
                    >"$RES/logs/$id.warmup.txt" 2>&1 || true
                logargs=(--log "--log-prefix=$id")   # relative to logs/
                [ "$LOG_SAMPLE" = 1 ] || logargs+=("--sampling-rate=$LOG_SAMPLE")
                run_child python3 "$TOOL" run --target "$t" --workload "$w" --clients "$c" \
                    --threads "$j" --duration "$T" --rep "$((rep + 1))" --order "$order" \
                    --pid "$T_PID" --clk-tck "$CLK_TCK" --out "$JSONL" \
                    --pgbench-out "$RES/logs/$id.txt" --log-prefix "logs/$id" -- \
                    "$PG_BIN/pgbench" -n "${wargs[@]}" -c "$c" -j "$j" -T "$T" "${logargs[@]}" \
                    -h 127.0.0.1 -p "$T_PORT" -U postgres "$DB" ||
                    die "the pgbench runner failed"
                gzip -1 -f "$RES/logs/$id".[0-9]* 2>/dev/null || true
            done
        done
    done
done
stop_poolers
say "pgbench runs done in $(( $(date +%s) - T0 )) s"

POOLERS=()
for t in "${TARGET_LIST[@]}"; do
    case "$t" in direct|relay) ;; *) POOLERS+=("$t") ;; esac   # idle and storm: poolers only
done

# ---------------------------------------------------------------------------
# Idle connections: RSS per idle client

if [ "$SKIP_IDLE" != 1 ] && [ "${#POOLERS[@]}" -gt 0 ] && [ "$IDLE_N" -gt 0 ]; then
    for ((rep = 0; rep < REPS; rep++)); do
        say "rep $((rep + 1))/$REPS  idle: $IDLE_N connections"
        order=0
        mapfile -t ORDER < <(rotate "$rep" "${POOLERS[@]}")
        for t in "${ORDER[@]}"; do
            order=$((order + 1))
            prepare_target "$t"
            run_child python3 "$TOOL" idle --port "$T_PORT" --pid "$T_PID" --count "$IDLE_N" \
                --target "$t" --rep "$((rep + 1))" --order "$order" --out "$JSONL" ||
                say "idle test against $t failed"
        done
    done
    stop_poolers
fi

# ---------------------------------------------------------------------------
# Connection storm: a new connection per transaction

if [ "$SKIP_STORM" != 1 ] && [ "${#POOLERS[@]}" -gt 0 ]; then
    read -r -a sargs <<<"$(workload_args select)"
    for ((rep = 0; rep < REPS; rep++)); do
        say "rep $((rep + 1))/$REPS  connection storm: pgbench -C -S -c 10"
        order=0
        mapfile -t ORDER < <(rotate "$rep" "${POOLERS[@]}")
        for t in "${ORDER[@]}"; do
            order=$((order + 1))
            id="r$((rep + 1))-storm-c10-$t"
            maintenance
            prepare_target "$t"
            run_child "$PG_BIN/pgbench" -n "${sargs[@]}" -c 10 -j "$THREADS" -T "$WARMUP" \
                -h 127.0.0.1 -p "$T_PORT" -U postgres "$DB" \
                >"$RES/logs/$id.warmup.txt" 2>&1 || true
            run_child python3 "$TOOL" run --kind storm --target "$t" --workload connect \
                --clients 10 --threads "$THREADS" --duration "$STORM_DURATION" \
                --rep "$((rep + 1))" --order "$order" --pid "$T_PID" --clk-tck "$CLK_TCK" \
                --out "$JSONL" --pgbench-out "$RES/logs/$id.txt" -- \
                "$PG_BIN/pgbench" -n -C "${sargs[@]}" -c 10 -j "$THREADS" -T "$STORM_DURATION" \
                -h 127.0.0.1 -p "$T_PORT" -U postgres "$DB" ||
                die "the pgbench runner failed"
        done
    done
    stop_poolers
fi

# ---------------------------------------------------------------------------
# Report

python3 "$HERE/bench_report.py" "$RES" || die "bench_report.py failed"
say "total $(( $(date +%s) - T0 )) s of measurements; results in $RES"
cat "$RES/summary.md"
