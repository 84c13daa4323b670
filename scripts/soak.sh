#!/usr/bin/env bash
# soak.sh -- long-running soak test of Sluice under mixed load, PostgreSQL
# restarts and configuration reloads (`make soak`).  Not part of CI.
#
# Usage:
#   make soak                        build, then run this script (30 minutes)
#   scripts/soak.sh                  the same, without the build
#   SOAK_MINUTES=3 SOAK_RESTART_EVERY=60 SOAK_RELOAD_EVERY=20 make soak
#                                    a short run (about 4 minutes in all)
#
# What it does:
#   * starts a throwaway PostgreSQL 15 (scripts/pg-temp.sh in a mktemp
#     directory) and runs `pgbench -i -s $SOAK_SCALE` on database app
#     directly against it;
#   * starts build/sluice with a config written to that directory:
#     transaction pooling, default_pool_size $SOAK_POOL, clients trusted,
#     listening on 127.0.0.1 at a free port and on a unix socket in the
#     directory (the admin console is reached over it: the OS user running
#     Sluice is an admin there without a password), server login to
#     127.0.0.1 as app with SCRAM, server_login_retry 1, connection logging
#     off;
#   * runs four loads through Sluice for $SOAK_MINUTES minutes, each as a
#     loop of short rounds (at most $SOAK_ROUND s) until the deadline, so
#     that a round killed by a PostgreSQL restart only costs that round:
#       tpcb    pgbench (tpcb-like), $SOAK_TPCB_CLIENTS clients
#       select  pgbench -S, $SOAK_SELECT_CLIENTS clients
#       churn   pgbench -S -C (a new connection per transaction),
#               $SOAK_CHURN_CLIENTS clients
#       cancel  scripts/soak_check.py (psycopg 3): one connection at a
#               time runs `SELECT pg_sleep(5)` and cancels it 0.5 s after
#               sending it (Connection.cancel(), i.e. a CancelRequest to
#               Sluice), again every second while it still runs; ok when
#               the query fails with 57014 within 4 s and `SELECT 1` then
#               works on the same connection.  The login is timed apart,
#               so a slow login cannot pass for a lost cancel;
#   * restarts PostgreSQL every $SOAK_RESTART_EVERY s (`pg-temp.sh
#     restart`; none in the last 20 s) and sends SIGHUP to Sluice every
#     $SOAK_RELOAD_EVERY s (each reload flips stats_period between 60 and
#     30, so the configuration really changes);
#   * samples Sluice's RSS (VmRSS), open fds (/proc/PID/fd) and CPU time
#     (utime+stime) every $SOAK_SAMPLE_EVERY s into samples.csv, together
#     with SHOW POOLS client/server counts for database app and the number
#     of PostgreSQL backends of app/app;
#   * at the deadline waits for the rounds to finish, lets things settle
#     ($SOAK_SETTLE s), then checks the pool against PostgreSQL and prints
#     a summary table (also written to summary.txt).
#
# Checks; the script exits 1 if any fails:
#   alive        Sluice still runs with the same PID and start time (never
#                died or was replaced), also checked every second during
#                the run: the soak stops early when Sluice dies.
#   consistency  within $SOAK_CHECK_WAIT s after the load stopped: SHOW
#                POOLS servers of database app (sv_active + sv_being_canceled
#                + sv_idle + sv_used + sv_tested + sv_login) equal the client
#                backends of database app / user app in pg_stat_activity
#                (queried directly on PostgreSQL), and no client of app is
#                left in SHOW POOLS (cl_active + cl_waiting = 0).
#   query        a `SELECT 1` through Sluice succeeds after the soak.
#   rss          RSS at the end (the last sample under load, just before
#                the deadline) <= 1.5 x RSS at the start (the sample taken
#                $SOAK_WARMUP s into the load) + 8 MiB.
#   fds          fds of Sluice idle after the soak, less its open server
#                connections (SHOW POOLS, all pools), <= the same figure
#                idle before the load (after one query, so that lazily
#                opened fds are already there) + 10.  Idle figures are
#                compared because the fd count under load swings with the
#                number of connected clients; the start/end fds under load
#                are reported too, for information.
#   rounds       every failed pgbench round overlaps a PostgreSQL restart
#                (restart start - 2 s .. restart end + 10 s): a round that
#                fails without one (e.g. on a reload) is a Sluice problem.
#   cancels      every cancel attempt that failed (not cancelled despite
#                repeated cancels, another error, slower than 4 s, session
#                unusable afterwards, login failed) overlaps a restart
#                window.  A cancel that needed a repeat is counted but
#                allowed: Sluice ignores a cancel for a client that is still
#                queued for a server, as PostgreSQL ignores one for an idle
#                session.
#
# Everything it starts (PostgreSQL, Sluice, the load loops and their
# pgbench and python processes) is stopped on exit, also on Ctrl-C, by PID.
# The work directory (config, sluice.log, samples.csv, events.log, round
# outputs, summary.txt) is kept and its path printed; the PostgreSQL
# cluster in it is deleted.  SOAK_KEEP=0 deletes the whole directory when
# the soak passes.  Needs root (PostgreSQL then runs as the postgres OS
# user) or a normal user that may run PostgreSQL; psql, pgbench, GNU
# timeout, python3 with psycopg 3 (python3-psycopg is installed through
# scripts/install-deps.sh when missing).
#
# Environment knobs (defaults in brackets):
#   SOAK_MINUTES          load duration, minutes [30]
#   SOAK_RESTART_EVERY    seconds between PostgreSQL restarts, 0 = none [300]
#   SOAK_RELOAD_EVERY     seconds between SIGHUPs, 0 = none [60]
#   SOAK_SAMPLE_EVERY     seconds between samples [30]
#   SOAK_WARMUP           seconds of load before the start sample [30]
#   SOAK_ROUND            longest pgbench round, seconds [30]
#   SOAK_SETTLE           seconds to wait after the load stops [3]
#   SOAK_CHECK_WAIT       seconds the consistency check may retry [10]
#   SOAK_POOL             default_pool_size [20]
#   SOAK_SCALE            pgbench scale factor [2]
#   SOAK_TPCB_CLIENTS     [20]   SOAK_SELECT_CLIENTS [20]
#   SOAK_CHURN_CLIENTS    [4]    SOAK_THREADS (pgbench -j) [2]
#   SOAK_KEEP             1 = keep the work directory, 0 = delete it when
#                         the soak passes [1]
#   SOAK_SLUICE           the binary [build/sluice]
#   PGT_MAX_CONNECTIONS   PostgreSQL max_connections [100]
#   PG_BIN                PostgreSQL binaries [/usr/lib/postgresql/15/bin]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)

MINUTES=${SOAK_MINUTES:-30}
RESTART_EVERY=${SOAK_RESTART_EVERY:-300}
RELOAD_EVERY=${SOAK_RELOAD_EVERY:-60}
SAMPLE_EVERY=${SOAK_SAMPLE_EVERY:-30}
WARMUP=${SOAK_WARMUP:-30}
ROUND=${SOAK_ROUND:-30}
SETTLE=${SOAK_SETTLE:-3}
CHECK_WAIT=${SOAK_CHECK_WAIT:-10}
POOL=${SOAK_POOL:-20}
SCALE=${SOAK_SCALE:-2}
TPCB_CLIENTS=${SOAK_TPCB_CLIENTS:-20}
SELECT_CLIENTS=${SOAK_SELECT_CLIENTS:-20}
CHURN_CLIENTS=${SOAK_CHURN_CLIENTS:-4}
THREADS=${SOAK_THREADS:-2}
KEEP=${SOAK_KEEP:-1}
SLUICE=${SOAK_SLUICE:-$ROOT/build/sluice}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
export PGT_MAX_CONNECTIONS=${PGT_MAX_CONNECTIONS:-100}

CANCEL_AFTER=0.5     # seconds from sending the query to the first cancel
CANCEL_SLEEP=5       # pg_sleep() of the cancelled query
CANCEL_OK_WITHIN=4   # a cancel is ok when the query ends within this many s
RESTART_GRACE=10     # seconds after a restart in which failures are expected
FD_SLACK=10          # fds
RSS_FACTOR_PCT=150   # RSS end <= start * 150 / 100 + RSS_SLACK_KB
RSS_SLACK_KB=8192

PROG=soak
say() { printf '%s %s: %s\n' "$(date +%H:%M:%S)" "$PROG" "$*" >&2; }
die() { say "error: $*"; exit 2; }

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
for v in MINUTES RESTART_EVERY RELOAD_EVERY SAMPLE_EVERY WARMUP ROUND SETTLE CHECK_WAIT \
         POOL SCALE TPCB_CLIENTS SELECT_CLIENTS CHURN_CLIENTS THREADS; do
    is_uint "${!v}" || die "${v} ('${!v}') must be a non-negative integer"
done
[ "$MINUTES" -ge 1 ] || die "SOAK_MINUTES must be >= 1"
{ [ "$SAMPLE_EVERY" -ge 1 ] && [ "$ROUND" -ge 5 ] && [ "$POOL" -ge 1 ] && [ "$SCALE" -ge 1 ] &&
    [ "$THREADS" -ge 1 ]; } || die "SOAK_SAMPLE_EVERY, SOAK_POOL, SOAK_SCALE, SOAK_THREADS must be >= 1, SOAK_ROUND >= 5"
[ "$WARMUP" -lt $((MINUTES * 60 - 10)) ] ||
    die "SOAK_WARMUP ($WARMUP s) must end at least 10 s before the load does ($MINUTES min)"

[ -x "$SLUICE" ] || die "$SLUICE not found: build it first (make soak does)"
for b in psql pgbench; do
    [ -x "$PG_BIN/$b" ] || die "$PG_BIN/$b not found (scripts/install-deps.sh)"
done
command -v timeout >/dev/null 2>&1 || die "timeout (coreutils) not found"
command -v python3 >/dev/null 2>&1 || die "python3 not found (scripts/install-deps.sh)"
# The cancel helper needs psycopg 3 (Debian's python3-psycopg, which a
# python3 of one's own, e.g. pyenv's, does not see: try the system one too).
find_py() {
    local p
    for p in python3 /usr/bin/python3; do
        "$p" -c 'import psycopg' >/dev/null 2>&1 && { echo "$p"; return 0; }
    done
    return 1
}
if ! PY=$(find_py); then
    say "installing python3-psycopg"
    "$HERE/install-deps.sh" python3-psycopg >&2 || die "could not install python3-psycopg"
    PY=$(find_py) || die "python3 cannot import psycopg even after installing python3-psycopg"
fi
PSQL=$PG_BIN/psql
PGBENCH=$PG_BIN/pgbench
CLK_TCK=$(getconf CLK_TCK)
OS_USER=$(id -un)

# Keep the clients' environment from steering psql/pgbench elsewhere.
unset PGHOST PGPORT PGUSER PGDATABASE PGPASSWORD PGSERVICE PGOPTIONS PGSSLMODE PGT_DIR PGT_PORT

# ---------------------------------------------------------------------------
# Work directory and cleanup

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-soak.XXXXXX")
chmod 0755 "$WORK"      # the postgres OS user must reach the cluster below it
[ "${#WORK}" -le 80 ] || die "work directory path too long for unix sockets: $WORK"
PGDIR=$WORK/pg
CONF=$WORK/sluice.conf
SLOG=$WORK/sluice.log
CSV=$WORK/samples.csv
EVENTS=$WORK/events.log
ROUNDS=$WORK/rounds.tsv        # kind n start end rc txns
CANCELS=$WORK/cancels.tsv      # n start end outcome elapsed connect_s cancels message
RESTARTS=$WORK/restarts.tsv    # begin end
mkdir -p "$WORK/rounds" "$WORK/pids"
: >"$ROUNDS"; : >"$CANCELS"; : >"$RESTARTS"; : >"$EVENTS"; : >"$SLOG"

SLUICE_PID=
LOAD_PIDS=()
PG_STARTED=0
RESULT=fail

stop_pid() {   # stop_pid PID: SIGTERM, wait up to 10 s, then SIGKILL
    local pid=$1
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        # A zombie child still answers kill -0: reap it.
        [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; then
        say "pid $pid ignored SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

stop_load() {
    local p f
    for p in "${LOAD_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${LOAD_PIDS[@]}"; do stop_pid "$p"; done
    # A loop killed hard leaves its current child behind: stop that too.
    for f in "$WORK"/pids/*; do
        [ -s "$f" ] || continue
        stop_pid "$(cat "$f")"
        : >"$f"
    done
    LOAD_PIDS=()
}

# shellcheck disable=SC2317  # invoked by trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    set +e
    stop_load
    stop_pid "$SLUICE_PID"
    if [ "$PG_STARTED" = 1 ]; then
        "$HERE/pg-temp.sh" destroy "$PGDIR" 2>/dev/null || say "could not stop the PostgreSQL cluster in $PGDIR"
    fi
    if [ "$KEEP" = 0 ] && [ "$RESULT" = pass ]; then
        rm -rf -- "$WORK"
    else
        say "work directory (logs, samples.csv, summary.txt): $WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT
trap 'say "terminated"; exit 143' TERM HUP

event() { printf '%s %s\n' "$(date '+%F %T')" "$*" >>"$EVENTS"; }
now() { date +%s; }
nowf() { date +%s.%N | cut -c1-14; }

# ---------------------------------------------------------------------------
# PostgreSQL

say "starting a throwaway PostgreSQL in $PGDIR"
PG_STARTED=1
"$HERE/pg-temp.sh" start "$PGDIR" 2>>"$EVENTS" || die "could not start PostgreSQL (see $EVENTS)"
# shellcheck disable=SC1091,SC2153  # PGT_* come from the env file
pg_env() { (. "$PGDIR/env" && echo "$PGT_PORT $PGT_SOCK"); }
read -r PG_PORT PG_SOCK <<<"$(pg_env)"

pg_psql() {   # psql as superuser straight to PostgreSQL (unix socket, trust)
    "$PSQL" -X -q -A -t -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d postgres "$@"
}
pg_backends() {   # client backends of database app / user app
    pg_psql -c "SELECT count(*) FROM pg_stat_activity
                WHERE datname = 'app' AND usename = 'app' AND backend_type = 'client backend'" 2>/dev/null
}

say "pgbench -i -s $SCALE (directly against PostgreSQL)"
"$PGBENCH" -i -q -s "$SCALE" -h "$PG_SOCK" -p "$PG_PORT" -U app app >"$WORK/pgbench-init.txt" 2>&1 ||
    { tail -n 20 "$WORK/pgbench-init.txt" >&2; die "pgbench -i failed"; }

# ---------------------------------------------------------------------------
# Sluice

SPORT=$(python3 - <<'PY'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
PY
) || die "could not find a free TCP port"

STATS_PERIOD=60
write_conf() {
    cat >"$CONF.tmp" <<EOF
# Written by scripts/soak.sh; rewritten before every reload.
listen_addr = "127.0.0.1";
listen_port = $SPORT;
unix_socket_dir = "$WORK";
pool_mode = "transaction";
default_pool_size = $POOL;
max_client_conn = 500;
auth_type = "trust";
admin_users = ["$OS_USER"];
log_connections = false;
log_disconnections = false;
server_login_retry = 1;
stats_period = $STATS_PERIOD;
databases = (
  { name = "app"; conninfo = "host=127.0.0.1 port=$PG_PORT dbname=app user=app password=app_pw sslmode=disable"; }
);
EOF
    mv -f -- "$CONF.tmp" "$CONF"
}
write_conf
"$SLUICE" --check -c "$CONF" >>"$EVENTS" 2>&1 || die "sluice --check rejected $CONF (see $EVENTS)"

admin() {   # admin SQL: the admin console over the unix socket
    "$PSQL" -X -q -A -F '|' -P footer=off -h "$WORK" -p "$SPORT" -U "$OS_USER" -d sluice -c "$1" 2>/dev/null
}

# pools_sum [DB]: sums over SHOW POOLS rows of DB (all pools when empty):
# "clients servers sv_login".
pools_sum() {
    local out
    out=$(admin 'SHOW POOLS') || return 1
    awk -F'|' -v db="${1:-}" '
        NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
        db == "" || $c["database"] == db {
            cl += $c["cl_active"] + $c["cl_waiting"]
            sv += $c["sv_active"] + $c["sv_being_canceled"] + $c["sv_idle"] + $c["sv_used"] \
                + $c["sv_tested"] + $c["sv_login"]
            lg += $c["sv_login"]
        }
        END { if (NR < 1) exit 1; printf "%d %d %d\n", cl, sv, lg }' <<<"$out"
}

say "starting $SLUICE on 127.0.0.1:$SPORT (log $SLOG)"
"$SLUICE" -c "$CONF" </dev/null >>"$SLOG" 2>&1 &
SLUICE_PID=$!
for _ in $(seq 100); do
    kill -0 "$SLUICE_PID" 2>/dev/null || { tail -n 20 "$SLOG" >&2; die "sluice exited at start"; }
    admin 'SHOW VERSION' >/dev/null && break
    sleep 0.1
done
admin 'SHOW VERSION' >/dev/null || die "sluice does not answer on its admin console"
SLUICE_START=$(sed 's/.*) //' "/proc/$SLUICE_PID/stat" | awk '{print $20}')

sluice_alive() {   # same PID, same start time, not a zombie
    local st
    st=$(sed 's/.*) //' "/proc/$SLUICE_PID/stat" 2>/dev/null) || return 1
    [ "$(awk '{print $1}' <<<"$st")" != Z ] && [ "$(awk '{print $20}' <<<"$st")" = "$SLUICE_START" ]
}

# proc_sample: sets P_RSS (kB), P_FDS, P_CPU (seconds) of Sluice.
proc_sample() {
    P_RSS=$(awk '/^VmRSS:/ {print $2}' "/proc/$SLUICE_PID/status" 2>/dev/null || true)
    P_FDS=$(find "/proc/$SLUICE_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    P_CPU=$(sed 's/.*) //' "/proc/$SLUICE_PID/stat" 2>/dev/null |
            awk -v hz="$CLK_TCK" '{printf "%.2f", ($12 + $13) / hz}' || true)
    : "${P_RSS:=0}" "${P_CPU:=0}"
}

sluice_query() {   # sluice_query SQL: run through Sluice as app
    "$PSQL" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$SPORT" -U app -d app -c "$1"
}

# One query first, so that the pool and whatever Sluice opens lazily exist.
[ "$(sluice_query 'SELECT 1' 2>>"$EVENTS")" = 1 ] || die "SELECT 1 through sluice failed (see $EVENTS)"
sleep 1
proc_sample
read -r _ PRE_SV _ <<<"$(pools_sum || true)"
is_uint "${PRE_SV:-}" || die "SHOW POOLS on the admin console failed"
PRE_FDS=$P_FDS
PRE_OTHER=$((P_FDS - PRE_SV))
event "idle before load: fds=$P_FDS servers=$PRE_SV rss_kb=$P_RSS"

echo "time,elapsed_s,phase,rss_kb,fds,cpu_s,cl_app,sv_app,sv_login_app,pg_backends" >"$CSV"
LOAD_START=$(now)
LOAD_END=$((LOAD_START + MINUTES * 60))

csv_sample() {   # csv_sample PHASE: a row into samples.csv; leaves P_* set
    local cl='' sv='' lg='' pgb=''
    proc_sample
    read -r cl sv lg <<<"$(pools_sum app || true)"
    pgb=$(pg_backends || true)
    echo "$(date '+%F %T'),$(($(now) - LOAD_START)),$1,$P_RSS,$P_FDS,$P_CPU,$cl,$sv,$lg,$pgb" >>"$CSV"
}

# ---------------------------------------------------------------------------
# Load loops (background subshells; each stops by itself at LOAD_END)

# run_child NAME CMD...: run CMD in the background, remember its PID for the
# cleanup, wait for it; returns its status.
run_child() {
    local name=$1 rc=0
    shift
    "$@" &
    CHILD=$!
    echo "$CHILD" >"$WORK/pids/$name"
    wait "$CHILD" || rc=$?
    CHILD=
    : >"$WORK/pids/$name"
    return "$rc"
}

loop_pgbench() {   # loop_pgbench KIND PGBENCH-ARGS...
    local kind=$1 n=0 left dur t0 t1 rc txns out
    shift
    set +e
    CHILD=
    trap '[ -n "$CHILD" ] && kill -TERM "$CHILD" 2>/dev/null; exit 0' TERM
    while :; do
        left=$((LOAD_END - $(now)))
        [ "$left" -ge 5 ] || break
        dur=$((left < ROUND ? left : ROUND))
        n=$((n + 1))
        out=$WORK/rounds/$kind-$n.txt
        t0=$(nowf)
        run_child "$kind" timeout -k 5 $((dur + 60)) \
            "$PGBENCH" -n "$@" -j "$THREADS" -T "$dur" -h 127.0.0.1 -p "$SPORT" -U app app \
            >"$out" 2>&1
        rc=$?
        t1=$(nowf)
        txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$n" "$t0" "$t1" "$rc" "${txns:-0}" >>"$ROUNDS"
        [ "$rc" -eq 0 ] || sleep 1
    done
}

loop_cancel() {   # scripts/soak_check.py cancel, restarted should it exit early
    set +e
    CHILD=
    trap '[ -n "$CHILD" ] && kill -TERM "$CHILD" 2>/dev/null; exit 0' TERM
    while [ $((LOAD_END - $(now))) -ge $((CANCEL_SLEEP + 2)) ]; do
        run_child cancel timeout -k 5 $((LOAD_END - $(now) + 60)) \
            "$PY" "$HERE/soak_check.py" cancel --until "$LOAD_END" --out "$CANCELS" \
            --after "$CANCEL_AFTER" --sleep "$CANCEL_SLEEP" --ok-within "$CANCEL_OK_WITHIN" \
            --dsn "host=127.0.0.1 port=$SPORT dbname=app user=app" >>"$WORK/cancel-helper.txt" 2>&1 ||
            sleep 1
    done
}

say "load for $MINUTES min: tpcb x$TPCB_CLIENTS, select x$SELECT_CLIENTS, churn (-C) x$CHURN_CLIENTS, cancels;" \
    "restart every ${RESTART_EVERY}s, reload every ${RELOAD_EVERY}s"
event "load start (until $(date -d "@$LOAD_END" '+%T'))"
loop_pgbench tpcb -c "$TPCB_CLIENTS" &
LOAD_PIDS+=($!)
loop_pgbench select -S -c "$SELECT_CLIENTS" &
LOAD_PIDS+=($!)
loop_pgbench churn -S -C -c "$CHURN_CLIENTS" &
LOAD_PIDS+=($!)
loop_cancel &
LOAD_PIDS+=($!)

# ---------------------------------------------------------------------------
# Main loop: samples, reloads, restarts, liveness

RESTARTS_DONE=0
RELOADS_DONE=0
DIED=0
FATAL=
START_TAKEN=0
END_TAKEN=0
S_RSS='' S_FDS='' S_CPU='' E_RSS='' E_FDS='' E_CPU=''
next_sample=$((LOAD_START + SAMPLE_EVERY))
next_reload=$((RELOAD_EVERY > 0 ? LOAD_START + RELOAD_EVERY : 0))
next_restart=$((RESTART_EVERY > 0 ? LOAD_START + RESTART_EVERY : 0))
last_status=$LOAD_START

do_restart() {
    local b e old=$PG_PORT ok=0
    b=$(nowf)
    event "restart PostgreSQL: begin"
    if "$HERE/pg-temp.sh" restart "$PGDIR" 2>>"$EVENTS"; then
        ok=1
    else
        for _ in 1 2 3; do
            sleep 2
            "$HERE/pg-temp.sh" start "$PGDIR" 2>>"$EVENTS" && { ok=1; break; }
        done
    fi
    e=$(nowf)
    printf '%s\t%s\n' "$b" "$e" >>"$RESTARTS"
    [ "$ok" = 1 ] || { FATAL="PostgreSQL did not come back after a restart (see $EVENTS)"; return 1; }
    RESTARTS_DONE=$((RESTARTS_DONE + 1))
    read -r PG_PORT PG_SOCK <<<"$(pg_env)"
    event "restart PostgreSQL: done in $(awk -v a="$b" -v b="$e" 'BEGIN {printf "%.1f", b - a}') s"
    if [ "$PG_PORT" != "$old" ]; then
        event "PostgreSQL moved from port $old to $PG_PORT: rewriting the config and reloading"
        write_conf
        kill -HUP "$SLUICE_PID" 2>/dev/null || true
    fi
}

while :; do
    t=$(now)
    if ! sluice_alive; then
        DIED=1
        event "sluice (pid $SLUICE_PID) is gone"
        say "sluice (pid $SLUICE_PID) died; stopping the soak"
        break
    fi
    [ "$t" -lt "$LOAD_END" ] || break
    if [ "$START_TAKEN" = 0 ] && [ "$t" -ge $((LOAD_START + WARMUP)) ]; then
        csv_sample start
        S_RSS=$P_RSS S_FDS=$P_FDS S_CPU=$P_CPU START_TAKEN=1
        say "start sample: rss ${S_RSS} kB, fds $S_FDS, cpu ${S_CPU} s"
        next_sample=$((t + SAMPLE_EVERY))
    elif [ "$t" -ge $((LOAD_END - 3)) ] && [ "$END_TAKEN" = 0 ]; then
        csv_sample end
        E_RSS=$P_RSS E_FDS=$P_FDS E_CPU=$P_CPU END_TAKEN=1
    elif [ "$t" -ge "$next_sample" ]; then
        csv_sample load
        next_sample=$((t + SAMPLE_EVERY))
    fi
    if [ "$next_reload" -gt 0 ] && [ "$t" -ge "$next_reload" ]; then
        STATS_PERIOD=$((STATS_PERIOD == 60 ? 30 : 60))
        write_conf
        kill -HUP "$SLUICE_PID" 2>/dev/null || true
        RELOADS_DONE=$((RELOADS_DONE + 1))
        event "SIGHUP #$RELOADS_DONE (stats_period=$STATS_PERIOD)"
        next_reload=$((t + RELOAD_EVERY))
    fi
    if [ "$next_restart" -gt 0 ] && [ "$t" -ge "$next_restart" ]; then
        if [ "$t" -lt $((LOAD_END - 20)) ]; then
            do_restart || { say "$FATAL"; break; }
            say "PostgreSQL restart #$RESTARTS_DONE done"
        fi
        next_restart=$(($(now) + RESTART_EVERY))
    fi
    if [ $((t - last_status)) -ge 60 ]; then
        last_status=$t
        say "$(( (LOAD_END - t + 59) / 60 )) min left; rounds $(wc -l <"$ROUNDS") (failed" \
            "$(awk -F'\t' '$5 != 0' "$ROUNDS" | wc -l)), restarts $RESTARTS_DONE, reloads $RELOADS_DONE," \
            "rss $(awk '/^VmRSS:/ {print $2}' "/proc/$SLUICE_PID/status" 2>/dev/null) kB"
    fi
    sleep 1
done

if [ "$DIED" = 0 ] && [ -z "$FATAL" ] && [ "$END_TAKEN" = 0 ]; then
    csv_sample end
    E_RSS=$P_RSS E_FDS=$P_FDS E_CPU=$P_CPU END_TAKEN=1
fi

# ---------------------------------------------------------------------------
# Stop the load, settle, check

if [ "$DIED" = 0 ] && [ -z "$FATAL" ]; then
    say "deadline reached; waiting for the last rounds"
    for _ in $(seq 90); do
        alive=0
        for p in "${LOAD_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 1
    done
fi
stop_load
event "load stopped"

SV_APP='' PG_N='' CL_APP='' CONSISTENT=0 QUERY_OK=0 POST_FDS='' POST_SV='' POST_OTHER=''
if [ "$DIED" = 0 ] && sluice_alive; then
    sleep "$SETTLE"
    deadline=$(($(now) + CHECK_WAIT))
    while :; do
        read -r CL_APP SV_APP _ <<<"$(pools_sum app || echo '? ?')"
        PG_N=$(pg_backends || echo '?')
        if [ "$SV_APP" = "$PG_N" ] && [ "$CL_APP" = 0 ]; then CONSISTENT=1; break; fi
        [ "$(now)" -lt "$deadline" ] || break
        sleep 1
    done
    event "consistency: SHOW POOLS servers=$SV_APP clients=$CL_APP, pg_stat_activity=$PG_N"
    proc_sample
    POST_FDS=$P_FDS
    read -r _ POST_SV _ <<<"$(pools_sum || echo '? ?')"
    is_uint "${POST_SV:-}" && POST_OTHER=$((POST_FDS - POST_SV))
    csv_sample idle
    [ "$(sluice_query 'SELECT 1' 2>>"$EVENTS")" = 1 ] && QUERY_OK=1
    sluice_alive || DIED=1
else
    DIED=1
fi

# ---------------------------------------------------------------------------
# Report

row() { printf '  %-34s %-16s %-16s %s\n' "$@"; }

explained() {   # explained START END: does [START, END] overlap a restart window?
    awk -F'\t' -v s="$1" -v e="$2" -v g="$RESTART_GRACE" '
        $1 - 2 <= e && $2 + g >= s { found = 1 } END { exit !found }' "$RESTARTS"
}

declare -A R_N R_FAIL R_UNEXPL R_TXNS
for k in tpcb select churn; do R_N[$k]=0 R_FAIL[$k]=0 R_UNEXPL[$k]=0 R_TXNS[$k]=0; done
UNEXPL_LINES=()
while IFS=$'\t' read -r kind n t0 t1 rc txns; do
    R_N[$kind]=$((R_N[$kind] + 1))
    R_TXNS[$kind]=$((R_TXNS[$kind] + txns))
    if [ "$rc" != 0 ]; then
        R_FAIL[$kind]=$((R_FAIL[$kind] + 1))
        if ! explained "$t0" "$t1"; then
            R_UNEXPL[$kind]=$((R_UNEXPL[$kind] + 1))
            UNEXPL_LINES+=("$kind round $n (rc $rc): $(grep -m1 -iE 'error|fatal|abort' "$WORK/rounds/$kind-$n.txt" || echo 'no error line')")
        fi
    fi
done <"$ROUNDS"
C_N=0 C_OK=0 C_RETRY=0 C_FAIL=0 C_UNEXPL=0 C_CONN_MAX=0
C_MSGS=()
while IFS=$'\t' read -r n t0 t1 outcome el cs sent msg; do
    C_N=$((C_N + 1))
    C_CONN_MAX=$(awk -v a="$C_CONN_MAX" -v b="$cs" 'BEGIN {print (b > a ? b : a)}')
    case "$outcome" in
        ok) C_OK=$((C_OK + 1)); continue ;;
        retry) C_RETRY=$((C_RETRY + 1)); continue ;;
    esac
    C_FAIL=$((C_FAIL + 1))
    if ! explained "$t0" "$t1"; then
        C_UNEXPL=$((C_UNEXPL + 1))
        [ "${#C_MSGS[@]}" -ge 3 ] || C_MSGS+=("cancel $n: $outcome after ${el}s, $sent cancels sent: ${msg:-no message}")
    fi
done <"$CANCELS"
TOT_TXNS=$((R_TXNS[tpcb] + R_TXNS[select] + R_TXNS[churn]))
TOT_UNEXPL=$((R_UNEXPL[tpcb] + R_UNEXPL[select] + R_UNEXPL[churn]))
RELOADS_LOGGED=$(grep -c 'configuration reloaded' "$SLOG" || true)

# Runs in command substitutions: only prints; the exit status is decided below.
verdict() { if [ "$1" = 1 ]; then echo OK; else echo FAIL; fi; }

SUMMARY=$WORK/summary.txt
{
    echo
    echo "Sluice soak: $MINUTES min, pool $POOL, restart every ${RESTART_EVERY}s, reload every ${RELOAD_EVERY}s"
    echo
    row "" "start" "end" "check"
    if [ "$START_TAKEN" = 1 ] && [ "$END_TAKEN" = 1 ]; then
        ok=$(( E_RSS <= S_RSS * RSS_FACTOR_PCT / 100 + RSS_SLACK_KB ))
        row "RSS, kB (under load)" "$S_RSS" "$E_RSS" \
            "$(verdict "$ok") (limit $((S_RSS * RSS_FACTOR_PCT / 100 + RSS_SLACK_KB)))"
        row "fds (under load)" "$S_FDS" "$E_FDS" "info"
        row "CPU, s (utime+stime)" "$S_CPU" "$E_CPU" \
            "$(awk -v a="$S_CPU" -v b="$E_CPU" 'BEGIN {printf "%.1f s in between", b - a}')"
    else
        row "RSS/fds/CPU samples" "${S_RSS:-none}" "${E_RSS:-none}" "$(verdict 0)"
    fi
    if is_uint "${POST_OTHER:-}"; then
        ok=$(( POST_OTHER <= PRE_OTHER + FD_SLACK ))
        row "fds idle, less server conns" "$PRE_OTHER ($PRE_FDS-$PRE_SV)" "$POST_OTHER ($POST_FDS-$POST_SV)" \
            "$(verdict "$ok") (limit $((PRE_OTHER + FD_SLACK)))"
    else
        row "fds idle, less server conns" "$PRE_OTHER" "-" "$(verdict 0)"
    fi
    echo
    row "" "rounds" "failed" "transactions"
    for k in tpcb select churn; do
        row "pgbench $k" "${R_N[$k]}" "${R_FAIL[$k]} (${R_UNEXPL[$k]} unexpl.)" "${R_TXNS[$k]}"
    done
    row "total" "" "" "$TOT_TXNS"
    row "rounds failing outside restarts" "$TOT_UNEXPL" "" "$(verdict $((TOT_UNEXPL == 0)))"
    row "cancels ok / needed a retry" "$C_OK / $C_RETRY" "" "info (slowest login ${C_CONN_MAX}s)"
    row "cancels failed" "$C_FAIL" "($C_UNEXPL unexpl.)" "$(verdict $((C_UNEXPL == 0)))"
    echo
    row "PostgreSQL restarts done" "$RESTARTS_DONE" "" "$([ -z "$FATAL" ] && echo OK || echo FAIL)"
    row "reloads (SIGHUP) sent / logged" "$RELOADS_DONE / $RELOADS_LOGGED" "" \
        "$([ "$RELOADS_LOGGED" -ge "$RELOADS_DONE" ] && echo OK || echo WARN)"
    row "sluice alive (pid $SLUICE_PID)" "$([ "$DIED" = 0 ] && echo yes || echo NO)" "" \
        "$(verdict $((DIED == 0)))"
    row "SHOW POOLS servers vs pg backends" "${SV_APP:-?} vs ${PG_N:-?}" "clients left ${CL_APP:-?}" \
        "$(verdict "$CONSISTENT")"
    row "SELECT 1 through sluice after" "$([ "$QUERY_OK" = 1 ] && echo ok || echo failed)" "" \
        "$(verdict "$QUERY_OK")"
    echo
    nerr=$(grep -cE ' (ERROR|FATAL|PANIC|WARNING)\b|AddressSanitizer|runtime error|Assertion|Segmentation' "$SLOG" || true)
    echo "  sluice.log: $(wc -l <"$SLOG") lines, $nerr warning/error lines"
    if [ "$nerr" -gt 0 ]; then
        grep -E ' (ERROR|FATAL|PANIC|WARNING)\b|AddressSanitizer|runtime error|Assertion|Segmentation' "$SLOG" |
            sed -E 's/^[0-9-]+ [0-9:.]+ [A-Z]+ \[[0-9]+\] //; s/[0-9]+/N/g' | sort | uniq -c | sort -rn |
            head -n 8 | sed 's/^/    /'
    fi
    for l in "${UNEXPL_LINES[@]}" "${C_MSGS[@]}"; do echo "  $l"; done
    if [ -s "$WORK/cancel-helper.txt" ]; then
        echo "  cancel helper output (cancel-helper.txt):"
        tail -n 5 "$WORK/cancel-helper.txt" | sed 's/^/    /'
    fi
    echo
} | tee "$SUMMARY"

FAILS=()
if [ "$START_TAKEN" = 1 ] && [ "$END_TAKEN" = 1 ]; then
    [ "$E_RSS" -le $((S_RSS * RSS_FACTOR_PCT / 100 + RSS_SLACK_KB)) ] || FAILS+=("RSS")
else
    FAILS+=("samples")
fi
if is_uint "${POST_OTHER:-}"; then
    [ "$POST_OTHER" -le $((PRE_OTHER + FD_SLACK)) ] || FAILS+=("fds")
else
    FAILS+=("fds")
fi
[ "$TOT_UNEXPL" = 0 ] || FAILS+=("rounds")
[ "$C_UNEXPL" = 0 ] || FAILS+=("cancels")
[ "$C_N" -gt 0 ] || FAILS+=("no-cancels")
[ -z "$FATAL" ] || FAILS+=("restart")
[ "$DIED" = 0 ] || FAILS+=("alive")
[ "$CONSISTENT" = 1 ] || FAILS+=("consistency")
[ "$QUERY_OK" = 1 ] || FAILS+=("query")

if [ "${#FAILS[@]}" -eq 0 ]; then
    RESULT=pass
    echo "soak PASSED" | tee -a "$SUMMARY"
    exit 0
fi
echo "soak FAILED: ${FAILS[*]}" | tee -a "$SUMMARY"
exit 1
