#!/usr/bin/env bash
# run.sh -- Sluice integration tests.
#
# Usage:
#   test/integration/run.sh              run every test
#   test/integration/run.sh test_a ...   run only the named tests
#
# Starts one throwaway PostgreSQL 15 cluster (scripts/pg-temp.sh) in a
# temporary directory, runs each test_* function below in its own subshell
# with a time limit, and stops everything it started on exit.  Each test
# starts its own Sluice instance(s) with start_sluice.
#
# Output: "ok - NAME" or "not ok - NAME: REASON" per test (a failure is
# followed by "# "-prefixed context: the test's output, Sluice's log and the
# PostgreSQL log), then exactly one summary line "N passed, N failed".
# Exit status 1 if any test failed.
#
# Environment:
#   BUILD            build directory holding sluice and the helper programs
#                    (default: build)
#   IT_TIMEOUT       per-test time limit in seconds (default 120)
#   IT_KEEP=1        keep the temporary directory (logs) after the run
#
# A test fails when Sluice's stderr contains a sanitizer report
# (AddressSanitizer, LeakSanitizer, UBSan "runtime error:"), which matters for
# the sanitizer build (make asan-test).

set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
SLUICE=$BUILD/sluice
PGWIRE=$HERE/pgwire.py
# The interpreter itself, not a version-manager shim (those add ~0.5 s per call).
PYTHON=$(python3 -c "import sys; print(sys.executable)" 2>/dev/null) || PYTHON=python3
IT_TIMEOUT=${IT_TIMEOUT:-120}

# Nothing from the caller's libpq environment may redirect the tests.
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGPASSWORD PGPASSFILE PGOPTIONS \
      PGSSLMODE PGSERVICE PGSERVICEFILE PGTZ PGDATESTYLE PGAPPNAME PGCONNECT_TIMEOUT \
      PGTARGETSESSIONATTRS PGSSLROOTCERT PGSSLCERT PGSSLKEY PGCLIENTENCODING
export PGCONNECT_TIMEOUT=10

# ---------------------------------------------------------------------------
# Helpers available to tests.  Each test runs in a subshell with T_DIR set to
# its own directory; `fail` ends the test.

fail() {
    printf '%s\n' "$*" >"$T_DIR/reason"
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}

note() { printf '%s\n' "$*" >&2; }

assert_eq() {   # assert_eq EXPECTED ACTUAL [WHAT]
    [ "$1" == "$2" ] || fail "${3:-value}: expected '$1', got '$2'"
}

assert_ne() {   # assert_ne UNEXPECTED ACTUAL [WHAT]
    [ "$1" != "$2" ] || fail "${3:-value}: expected something other than '$1'"
}

assert_contains() {   # assert_contains HAYSTACK NEEDLE [WHAT]
    [[ "$1" == *"$2"* ]] || fail "${3:-output}: expected to contain '$2', got: $(printf '%s' "$1" | head -c 600)"
}

assert_not_contains() {   # assert_not_contains HAYSTACK NEEDLE [WHAT]
    [[ "$1" != *"$2"* ]] || fail "${3:-output}: must not contain '$2', got: $(printf '%s' "$1" | head -c 600)"
}

assert_match() {   # assert_match STRING ERE [WHAT]
    [[ "$1" =~ $2 ]] || fail "${3:-value}: '$1' does not match /$2/"
}

assert_int() {   # assert_int A OP B [WHAT]   (OP: -lt -le -eq -ge -gt -ne)
    [[ "$1" =~ ^-?[0-9]+$ ]] || fail "${4:-value}: '$1' is not a number"
    [ "$1" "$2" "$3" ] || fail "${4:-value}: expected $1 $2 $3"
}

# Value of "NAME=value" in the output of a pgwire script: val NAME "$out"
val() {
    printf '%s\n' "$2" | sed -n "s/^$1=//p" | head -n 1
}

# Poll until a command succeeds: wait_until SECONDS CMD...
wait_until() {
    local limit=$1 i=0
    shift
    while ! "$@" >/dev/null 2>&1; do
        i=$((i + 1))
        [ "$i" -le $((limit * 10)) ] || return 1
        sleep 0.1
    done
}

free_port() {
    "$PYTHON" - <<'PY'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

tcp_open() {   # tcp_open PORT: does something accept on 127.0.0.1:PORT?
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Track a background helper so the runner can stop it if the test does not.
bg_track() { printf '%s\n' "$1" >>"$T_DIR/bg.pids"; }

# bg_start OUTFILE CMD ARGS...: run an external command in the background
# (not a shell function: then $! would be a subshell, not the command) with
# stdout and stderr to OUTFILE.  Sets BG_PID.
bg_start() {
    local outf=$1
    shift
    "$@" >"$outf" 2>&1 </dev/null &
    BG_PID=$!
    bg_track "$BG_PID"
}

is_alive() {   # running and not a zombie
    [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

# Sanitizer reports in a Sluice stderr file?  Prints the first ones found.
sanitizer_report() {
    grep -n -m 5 -E 'ERROR: AddressSanitizer|runtime error:|LeakSanitizer' "$1" 2>/dev/null
}

declare -A SL_PID SL_PORT SL_DIR
SLUICE_PID= SLUICE_PORT= SLUICE_SOCK= SLUICE_DIR= SLUICE_LOG= SLUICE_CONF= SLUICE_NAME=
SLUICE_EXIT= SLUICE_STOP_SECS=

# Expand $PGT_SOCK, ${PGT_SOCK}, $PGT_PORT, $PGT_CERTS in a config body.
expand_body() {
    local b=$1 v
    for v in PGT_SOCK PGT_PORT PGT_CERTS PGT_DIR; do
        b=${b//"\${$v}"/${!v}}
        b=${b//"\$$v"/${!v}}
    done
    printf '%s\n' "$b"
}

_sluice_select() {   # make NAME the current instance
    SLUICE_NAME=$1
    SLUICE_PID=${SL_PID[$1]}
    SLUICE_PORT=${SL_PORT[$1]}
    SLUICE_DIR=${SL_DIR[$1]}
    SLUICE_SOCK=$SLUICE_DIR
    SLUICE_LOG=$SLUICE_DIR/sluice.log
    SLUICE_CONF=$SLUICE_DIR/sluice.conf
}

# start_sluice NAME <<'EOF' ... config body ... EOF
# Writes NAME/sluice.conf (listen_addr, a free listen_port, its own
# unix_socket_dir and logfile, then the body), starts Sluice and waits until
# it accepts connections.  Sets SLUICE_PID, SLUICE_PORT, SLUICE_SOCK (the
# socket directory), SLUICE_DIR, SLUICE_LOG, SLUICE_CONF.
start_sluice() {
    local name=$1 body dir port pid i
    body=$(expand_body "$(cat)")
    dir=$T_DIR/$name
    mkdir -p "$dir"
    port=$(free_port) || fail "no free port"
    cat >"$dir/sluice.conf" <<EOF
# Integration test "$T_NAME", instance "$name".
listen_addr = "127.0.0.1";
listen_port = $port;
unix_socket_dir = "$dir";
logfile = "$dir/sluice.log";
$body
EOF
    "$SLUICE" -c "$dir/sluice.conf" </dev/null >"$dir/stdout" 2>"$dir/stderr" &
    pid=$!
    printf '%s %s\n' "$pid" "$dir" >>"$T_DIR/sluice.pids"
    SL_PID[$name]=$pid
    SL_PORT[$name]=$port
    SL_DIR[$name]=$dir
    for ((i = 0; i < 200; i++)); do
        if ! is_alive "$pid"; then
            wait "$pid"
            fail "sluice $name exited at start (status $?): $(tail -n 5 "$dir/stderr" "$dir/sluice.log" 2>/dev/null)"
        fi
        if tcp_open "$port" && [ -S "$dir/.s.PGSQL.$port" ]; then
            _sluice_select "$name"
            return 0
        fi
        sleep 0.05
    done
    fail "sluice $name does not accept connections on port $port after 10 s"
}

# stop_sluice [NAME] [SIGNAL]: signal (default TERM), wait up to 10 s.
# Sets SLUICE_EXIT and SLUICE_STOP_SECS; fails on a sanitizer report.
stop_sluice() {
    local name=${1:-$SLUICE_NAME} sig=${2:-TERM} pid t0 i rep
    pid=${SL_PID[$name]}
    t0=$(date +%s%N)
    kill -s "$sig" "$pid" 2>/dev/null
    for ((i = 0; i < 100; i++)); do
        is_alive "$pid" || break
        sleep 0.1
    done
    if is_alive "$pid"; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        fail "sluice $name did not exit within 10 s of SIG$sig"
    fi
    wait "$pid"
    SLUICE_EXIT=$?
    SLUICE_STOP_SECS=$((($(date +%s%N) - t0) / 1000000000))
    if rep=$(sanitizer_report "${SL_DIR[$name]}/stderr"); then
        fail "sanitizer report in sluice $name stderr: $rep"
    fi
}

psql_pooler() {   # psql through the current Sluice (TCP), user app, db app
    psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$SLUICE_PORT" -U app -d app "$@"
}

psql_pooler_unix() {   # the same through Sluice's unix socket
    psql -X -q -At -v ON_ERROR_STOP=1 -h "$SLUICE_SOCK" -p "$SLUICE_PORT" -U app -d app "$@"
}

psql_direct() {   # straight to PostgreSQL over its unix socket, as postgres
    psql -X -q -At -v ON_ERROR_STOP=1 -h "$PGT_SOCK" -p "$PGT_PORT" -U postgres -d app "$@"
}

pgwire() {   # pgwire MODE ARGS...  through the current Sluice
    "$PYTHON" "$PGWIRE" --host 127.0.0.1 --port "$SLUICE_PORT" "$@"
}

backend_count() {   # backend_count DB USER: client backends in PostgreSQL
    psql_direct -d postgres -v db="$1" -v usr="$2" <<'SQL'
SELECT count(*) FROM pg_stat_activity
WHERE backend_type = 'client backend' AND datname = :'db' AND usename = :'usr';
SQL
}

active_queries() {   # active_queries SQL_TEXT: backends of user app running exactly SQL_TEXT
    psql_direct -d postgres -v q="$1" <<'SQL'
SELECT count(*) FROM pg_stat_activity
WHERE usename = 'app' AND state = 'active' AND query = :'q';
SQL
}

backend_gone() { [ "$(psql_direct -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE pid = $1")" = 0 ]; }

query_is_active() { [ "$(active_queries "$1")" = 1 ]; }
query_not_active() { [ "$(active_queries "$1")" = 0 ]; }

monitor_conninfo() {
    printf 'host=%s port=%s dbname=postgres user=postgres' "$PGT_SOCK" "$PGT_PORT"
}

# The pooler still serves a plain client: a sanity check after abuse.
assert_pooler_works() {
    local out
    out=$(psql_pooler -c "SELECT 'still-works'" 2>&1) || fail "${1:-pooler} no longer serves clients: $out"
    assert_eq still-works "$out" "${1:-pooler} after abuse"
}

# ---------------------------------------------------------------------------
# Tests

# --version, --help and --check.
test_cli_version_and_check() {
    local out rc f
    out=$("$SLUICE" --version 2>&1); rc=$?
    assert_eq 0 "$rc" "--version exit status"
    assert_match "$out" '^sluice [0-9]+\.[0-9]+' "--version output"
    out=$("$SLUICE" --help 2>&1); rc=$?
    assert_eq 0 "$rc" "--help exit status"
    assert_contains "$out" "--check" "--help output"

    f=$T_DIR/bad.conf
    cat >"$f" <<'EOF'
listen_addr = "127.0.0.1";
listen_port = 70000;
pool_mode = "bogus";
databases = (
  { name = "app"; conninfo = "host=/tmp dbname=app sslmode=prefer"; }
);
no_such_setting = 1;
EOF
    out=$("$SLUICE" --check -c "$f" 2>&1); rc=$?
    assert_eq 1 "$rc" "--check exit status on a bad config"
    assert_contains "$out" "$f:2: listen_port:" "--check output"
    assert_contains "$out" "$f:3: pool_mode:" "--check output"
    assert_contains "$out" "$f:5: databases[0].conninfo:" "--check output"
    assert_contains "$out" "$f:7: no_such_setting:" "--check output"

    # A syntax error names its line too.
    printf 'listen_addr = "127.0.0.1";\nlisten_port = ;\n' >"$T_DIR/syntax.conf"
    out=$("$SLUICE" --check -c "$T_DIR/syntax.conf" 2>&1); rc=$?
    assert_eq 1 "$rc" "--check exit status on a syntax error"
    assert_contains "$out" "$T_DIR/syntax.conf:2:" "--check output for a syntax error"

    # A good file passes, and starting with a bad one fails the same way.
    cat >"$T_DIR/good.conf" <<EOF
listen_port = 6432;
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app"; } );
EOF
    out=$("$SLUICE" --check -c "$T_DIR/good.conf" 2>&1); rc=$?
    assert_eq 0 "$rc" "--check exit status on a good config ($out)"
    out=$(timeout 10 "$SLUICE" -c "$f" 2>&1); rc=$?
    assert_eq 1 "$rc" "exit status when starting with a bad config"
    assert_contains "$out" "$f:2: listen_port:" "start-up error output"
}

# A taken TCP port or unix socket: refuse to start, naming the address.
test_port_in_use() {
    local out rc port
    start_sluice first <<'EOF'
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );
EOF
    port=$SLUICE_PORT
    mkdir -p "$T_DIR/second"
    cat >"$T_DIR/second/sluice.conf" <<EOF
listen_addr = "127.0.0.1";
listen_port = $port;
unix_socket_dir = "$T_DIR/second";
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );
EOF
    out=$(timeout 10 "$SLUICE" -c "$T_DIR/second/sluice.conf" 2>&1); rc=$?
    assert_ne 0 "$rc" "exit status with the TCP port taken"
    assert_ne 124 "$rc" "second sluice must exit, not keep running"
    assert_contains "$out" "127.0.0.1:$port" "error message for a taken port"

    # Same unix socket (another TCP port): refused as well.
    mkdir -p "$T_DIR/third"
    cat >"$T_DIR/third/sluice.conf" <<EOF
listen_addr = "127.0.0.1";
listen_port = $port;
unix_socket_dir = "$SLUICE_SOCK";
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );
EOF
    sed -i "s/^listen_addr = .*/listen_addr = \"\";/" "$T_DIR/third/sluice.conf"
    out=$(timeout 10 "$SLUICE" -c "$T_DIR/third/sluice.conf" 2>&1); rc=$?
    assert_ne 0 "$rc" "exit status with the unix socket taken"
    assert_ne 124 "$rc" "third sluice must exit, not keep running"
    assert_contains "$out" "$SLUICE_SOCK/.s.PGSQL.$port" "error message for a taken unix socket"

    # The first instance is unharmed (its socket file included).
    assert_pooler_works "first sluice"
    out=$(psql_pooler_unix -c "SELECT 1" 2>&1) || fail "unix socket of the first sluice broken: $out"
    stop_sluice first
    assert_eq 0 "$SLUICE_EXIT" "exit status of the first sluice"
}

# 200 clients, pool of 5, transaction mode: right answers, <= 5 backends.
test_transaction_pool_200_clients() {
    local out rc maxb
    start_sluice main <<'EOF'
pool_mode = "transaction";
default_pool_size = 5;
max_client_conn = 400;
log_connections = false;
log_disconnections = false;
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );
EOF
    out=$("$BUILD/it_concurrent" -c "host=127.0.0.1 port=$SLUICE_PORT dbname=app user=app" \
        -m "$(monitor_conninfo)" -d app -u app -n 200 -t 40 2>"$T_DIR/concurrent.err"); rc=$?
    note "it_concurrent: $out"
    [ "$rc" -eq 0 ] || fail "wrong results or errors through the pool ($out): $(head -n 5 "$T_DIR/concurrent.err")"
    assert_contains "$out" "errors=0" "it_concurrent"
    assert_contains "$out" "tx=8000 " "it_concurrent transactions"
    maxb=$(val max_backends "${out// /$'\n'}")
    assert_int "$maxb" -le 5 "max backends of the pool seen in pg_stat_activity"
    assert_int "$maxb" -ge 2 "max backends of the pool (concurrency through the pool)"
    assert_int "$(backend_count app app)" -le 5 "backends after the run"
    stop_sluice main
    assert_eq 0 "$SLUICE_EXIT" "sluice exit status"
}

# Transaction mode: a client's statements move between servers; the most
# recently released idle server is reused first.
test_transaction_mode_switches_backends() {
    local out a b1 b2 b3 a2
    start_sluice main <<'EOF'
pool_mode = "transaction";
default_pool_size = 2;
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );
EOF
    out=$(pgwire script <<'EOF'
open A
open B
q A BEGIN
q A SELECT pg_backend_pid() > a
q B SELECT pg_backend_pid() > b1
q B SELECT pg_backend_pid() > b2
q A COMMIT
q B SELECT pg_backend_pid() > b3
q A SELECT pg_backend_pid() > a2
EOF
)
    note "$out"
    a=$(val a "$out") b1=$(val b1 "$out") b2=$(val b2 "$out") b3=$(val b3 "$out") a2=$(val a2 "$out")
    assert_match "$a" '^[0-9]+$' "A's backend pid"
    assert_match "$b1" '^[0-9]+$' "B's first backend pid"
    assert_ne "$a" "$b1" "B must not run on the server A holds in its transaction"
    assert_eq "$b1" "$b2" "B's second statement (only idle server)"
    assert_eq "$a" "$b3" "B after A's COMMIT: the most recently released server"
    assert_eq "$a" "$a2" "A after B released that server again"
    assert_int "$(backend_count app app)" -le 2 "backends of the pool"
}

# Session mode: one backend for a client's whole life.
test_session_mode_keeps_backend() {
    local out a1 a2 a3 b c
    start_sluice main <<'EOF'
pool_mode = "session";
default_pool_size = 3;
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );
EOF
    out=$(pgwire script <<'EOF'
open A
q A SELECT pg_backend_pid() > a1
open B
q B SELECT pg_backend_pid() > b
close B
sleep 0.5
open C
q C SELECT pg_backend_pid() > c
q A SELECT pg_backend_pid() > a2
close C
q A BEGIN
q A SELECT pg_backend_pid() > a3
q A COMMIT
EOF
)
    note "$out"
    a1=$(val a1 "$out") a2=$(val a2 "$out") a3=$(val a3 "$out") b=$(val b "$out") c=$(val c "$out")
    assert_match "$a1" '^[0-9]+$' "A's backend pid"
    assert_eq "$a1" "$a2" "A's backend while B and C came and went"
    assert_eq "$a1" "$a3" "A's backend in a later transaction"
    assert_ne "$a1" "$b" "B's backend"
    assert_ne "$a1" "$c" "C's backend"
    assert_eq "$b" "$c" "C reuses the server B released"
}

# BEGIN; INSERT; then the client vanishes: the row is rolled back and the
# next client on that backend is not inside a transaction.
disconnect_in_tx_check() {   # MODE HOW(abort|reset)
    local mode=$1 how=$2 out pa pb
    psql_direct -U app -c "CREATE TABLE IF NOT EXISTS it_abort (id int, mode text)" ||
        fail "cannot create table it_abort"
    start_sluice main <<EOF
pool_mode = "$mode";
default_pool_size = 1;
databases = ( { name = "app"; conninfo = "host=\$PGT_SOCK port=\$PGT_PORT dbname=app user=app"; } );
EOF
    out=$(pgwire script <<EOF
open A
q A SELECT pg_backend_pid() > pa
q A BEGIN
q A INSERT INTO it_abort VALUES (1, '$mode')
q A SELECT count(*) FROM it_abort WHERE mode = '$mode' > inside
$how A
sleep 0.5
open B
q B SELECT pg_backend_pid() > pb
q B SELECT count(*) FROM it_abort WHERE mode = '$mode' > cnt
q B SELECT now() = statement_timestamp() > fresh
q B SELECT xact_start = query_start FROM pg_stat_activity WHERE pid = pg_backend_pid() > fresh2
EOF
)
    note "$out"
    pa=$(val pa "$out") pb=$(val pb "$out")
    assert_eq 1 "$(val inside "$out")" "row count inside A's transaction"
    assert_match "$pa" '^[0-9]+$' "A's backend pid"
    assert_eq "$pa" "$pb" "B is served by the backend A left (pool_size 1)"
    assert_eq 0 "$(val cnt "$out")" "rows of the abandoned transaction seen by B"
    assert_eq t "$(val fresh "$out")" "B's statement runs in a transaction of its own (now() = statement_timestamp())"
    assert_eq t "$(val fresh2 "$out")" "B's xact_start = query_start"
    assert_eq 0 "$(psql_direct -c "SELECT count(*) FROM it_abort WHERE mode = '$mode'")" \
        "rows of the abandoned transaction seen directly"
    assert_pooler_works
}

test_disconnect_in_transaction_transaction_mode() { disconnect_in_tx_check transaction abort; }
test_disconnect_in_transaction_session_mode() { disconnect_in_tx_check session reset; }

# The same with a polite goodbye: psql sends Terminate inside a transaction.
test_terminate_in_transaction() {
    local mode out p1 p2
    psql_direct -U app -c "CREATE TABLE IF NOT EXISTS it_abort (id int, mode text)" ||
        fail "cannot create table it_abort"
    for mode in transaction session; do
        start_sluice "$mode" <<EOF
pool_mode = "$mode";
default_pool_size = 1;
databases = ( { name = "app"; conninfo = "host=\$PGT_SOCK port=\$PGT_PORT dbname=app user=app"; } );
EOF
        p1=$(psql_pooler -c "BEGIN" -c "INSERT INTO it_abort VALUES (2, 'terminate-$mode')" \
            -c "SELECT pg_backend_pid()" 2>&1) || fail "$mode: first client: $p1"
        out=$(psql_pooler -c "SELECT pg_backend_pid(), now() = statement_timestamp(), count(*) FROM it_abort WHERE mode = 'terminate-$mode'" 2>&1) ||
            fail "$mode: second client: $out"
        p2=${out%%|*}
        assert_eq "$p1" "$p2" "$mode: the second client's backend (pool_size 1)"
        assert_eq "t|0" "${out#*|}" "$mode: fresh transaction and no row after Terminate inside a transaction"
        stop_sluice "$mode"
        assert_eq 0 "$SLUICE_EXIT" "$mode: sluice exit status"
    done
}

# A client queued for a server that disconnects before it is served: its
# query must not run later, and the queue goes on to the next client.
test_waiting_client_disconnect() {
    local out pa pc
    psql_direct -U app -c "CREATE TABLE IF NOT EXISTS it_ghost (id int)" -c "TRUNCATE it_ghost" ||
        fail "cannot create table it_ghost"
    start_sluice main <<'EOF'
pool_mode = "transaction";
default_pool_size = 1;
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );
EOF
    out=$(pgwire script <<'EOF'
open A
open B
open C
q A BEGIN
q A SELECT pg_backend_pid() > pa
send B INSERT INTO it_ghost VALUES (1)
sleep 0.2
abort B
sleep 0.2
send C SELECT 'c-served', pg_backend_pid()
sleep 0.3
q A COMMIT
read C > c
q C SELECT pg_backend_pid() > pc
q A SELECT 'a-again' > a
EOF
)
    note "$out"
    assert_eq c-served "$(val c "$out")" "the next waiting client is served"
    assert_eq a-again "$(val a "$out")" "A after its COMMIT"
    sleep 0.3
    assert_eq 0 "$(psql_direct -c "SELECT count(*) FROM it_ghost")" \
        "rows inserted by a client that disconnected while waiting for a server"
    pa=$(val pa "$out") pc=$(val pc "$out")
    assert_eq "$pa" "$pc" "C gets the server A released (it must not be thrown away)"
    assert_pooler_works
}

# A backend that dies while idle in the pool is replaced for the next client.
test_idle_server_terminated() {
    local p1 p2 out
    start_sluice main <<'EOF'
pool_mode = "transaction";
default_pool_size = 1;
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );
EOF
    p1=$(psql_pooler -c "SELECT pg_backend_pid()" 2>&1) || fail "first client: $p1"
    out=$(psql_direct -c "SELECT pg_terminate_backend($p1)")
    assert_eq t "$out" "pg_terminate_backend"
    wait_until 5 backend_gone "$p1" || fail "backend $p1 still there after pg_terminate_backend"
    sleep 0.3
    p2=$(psql_pooler -c "SELECT pg_backend_pid()" 2>&1) || fail "client after the backend was terminated: $p2"
    assert_match "$p2" '^[0-9]+$' "backend pid after termination"
    assert_ne "$p1" "$p2" "a new backend replaces the terminated one"
    assert_int "$(backend_count app app)" -le 1 "backends of the pool"
}

# A client killed while its query runs: the busy server is not handed to
# anyone else, the row is not visible, the pool serves the next client.
test_client_killed_mid_query() {
    local pid bpid out n
    psql_direct -U app -c "CREATE TABLE IF NOT EXISTS it_killed (id int)" || fail "cannot create table"
    psql_direct -c "TRUNCATE it_killed" || fail "cannot truncate"
    start_sluice main <<'EOF'
pool_mode = "transaction";
default_pool_size = 1;
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );
EOF
    bg_start "$T_DIR/killed.out" psql -X -q -At -h 127.0.0.1 -p "$SLUICE_PORT" -U app -d app \
        -c "BEGIN" -c "INSERT INTO it_killed VALUES (1)" -c "SELECT pg_sleep(4)"
    pid=$BG_PID
    wait_until 10 query_is_active "SELECT pg_sleep(4)" || fail "the client's query never started"
    bpid=$(psql_direct -c "SELECT pid FROM pg_stat_activity WHERE usename = 'app' AND query = 'SELECT pg_sleep(4)'")
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null
    out=$(psql_pooler -c "SELECT pg_backend_pid(), now() = statement_timestamp(), (SELECT count(*) FROM it_killed)" 2>&1) ||
        fail "next client not served after a client was killed mid-query: $out"
    assert_ne "$bpid" "${out%%|*}" "backend of the next client (the busy one must not be reused)"
    assert_eq "t|0" "${out#*|}" "next client: fresh transaction, no row"
    n=$(psql_direct -c "SELECT count(*) FROM it_killed")
    assert_eq 0 "$n" "rows of the killed client's transaction"
    assert_int "$(backend_count app app)" -le 2 "backends (the old one may still be finishing pg_sleep)"
}

# Session mode: server_reset_query (DISCARD ALL) runs when a client leaves.
test_session_reset_query() {
    local p1 out
    start_sluice main <<'EOF'
pool_mode = "session";
default_pool_size = 1;
server_reset_query = "DISCARD ALL";
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );
EOF
    p1=$(psql_pooler -c "SET work_mem = '77MB'" -c "PREPARE it_stmt AS SELECT 1" \
        -c "CREATE TEMP TABLE it_tmp (x int)" -c "SELECT pg_backend_pid()" 2>&1) ||
        fail "first client failed: $p1"
    out=$(psql_pooler -c "SELECT pg_backend_pid(), current_setting('work_mem'), (SELECT count(*) FROM pg_prepared_statements), to_regclass('pg_temp.it_tmp') IS NULL" 2>&1) ||
        fail "second client failed: $out"
    assert_eq "$p1" "${out%%|*}" "second client's backend (pool_size 1)"
    assert_eq "4MB|0|t" "${out#*|}" "work_mem, prepared statements, temp table after DISCARD ALL"
}

# Tracked settings in transaction mode: each client sees its own TimeZone.
test_tracked_settings_transaction_mode() {
    local out def pids
    def=$(psql_direct -c "SHOW TimeZone")
    [ "$def" != Asia/Tokyo ] || fail "the cluster's default TimeZone must not be Asia/Tokyo"
    start_sluice main <<'EOF'
pool_mode = "transaction";
default_pool_size = 1;
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );
EOF
    out=$(pgwire script <<'EOF'
open A 'options=-c TimeZone=Asia/Tokyo'
open B 'options=-c TimeZone=America/New_York'
open C
q A SHOW TimeZone > a1
q B SHOW TimeZone > b1
q C SHOW TimeZone > c1
q A SELECT pg_backend_pid() > pa
q B SELECT pg_backend_pid() > pb
q C SELECT pg_backend_pid() > pc
q A BEGIN
q A SHOW TimeZone > a2
q A SELECT to_char(timestamptz '2020-01-01 00:00:00+00', 'HH24') > ahour
q A COMMIT
q B SHOW TimeZone > b2
q C SHOW TimeZone > c2
q A SHOW TimeZone > a3
q C SELECT to_char(timestamptz '2020-01-01 00:00:00+00', 'HH24') > chour
q B SHOW TimeZone > b3
EOF
)
    note "$out"
    pids="$(val pa "$out") $(val pb "$out") $(val pc "$out")"
    assert_match "$pids" '^([0-9]+) \1 \1$' "all three clients share the one server"
    assert_eq "Asia/Tokyo Asia/Tokyo Asia/Tokyo" "$(val a1 "$out") $(val a2 "$out") $(val a3 "$out")" "A's TimeZone"
    assert_eq "America/New_York America/New_York America/New_York" \
        "$(val b1 "$out") $(val b2 "$out") $(val b3 "$out")" "B's TimeZone"
    assert_eq "$def $def" "$(val c1 "$out") $(val c2 "$out")" "C's (default) TimeZone"
    assert_eq 09 "$(val ahour "$out")" "A's timestamptz output"
    assert_eq "$(psql_direct -c "SELECT to_char(timestamptz '2020-01-01 00:00:00+00', 'HH24')")" \
        "$(val chour "$out")" "C's timestamptz output"

    # Settings changed with SET, and client_encoding, follow their client too.
    out=$(pgwire script <<'EOF'
open A client_encoding=LATIN1
open B
q A SET TimeZone = 'Pacific/Auckland'
q B SHOW TimeZone > b_tz
q B SELECT convert_to(chr(233), 'UTF8')::text, current_setting('client_encoding') > b_enc
q A SHOW TimeZone > a_tz
q A SHOW client_encoding > a_enc
q B BEGIN
q B SET LOCAL TimeZone = 'Asia/Tokyo'
q B ROLLBACK
q A SHOW TimeZone > a_tz2
q B SHOW TimeZone > b_tz2
EOF
)
    note "$out"
    assert_eq "Pacific/Auckland Pacific/Auckland" "$(val a_tz "$out") $(val a_tz2 "$out")" "A's TimeZone after SET"
    assert_eq "$def $def" "$(val b_tz "$out") $(val b_tz2 "$out")" "B's TimeZone while A had SET its own"
    assert_eq LATIN1 "$(val a_enc "$out")" "A's client_encoding"
    assert_eq "UTF8" "$(psql_pooler -c "SHOW client_encoding")" "a UTF8 client after a LATIN1 one"
    out=$(PGCLIENTENCODING=LATIN1 psql_pooler -c "SELECT chr(233)" | od -An -tx1 | tr -d ' ')
    assert_eq e90a "$out" "bytes of e-acute for a LATIN1 client"
    out=$(psql_pooler -c "SELECT chr(233)" | od -An -tx1 | tr -d ' ')
    assert_eq c3a90a "$out" "bytes of e-acute for a UTF8 client on the same server"

    # libpq clients: PGOPTIONS and PGTZ, one after the other on the same server.
    out=$(PGOPTIONS='-c TimeZone=Asia/Tokyo' psql_pooler -c "SHOW TimeZone" 2>&1)
    assert_eq Asia/Tokyo "$out" "PGOPTIONS client"
    out=$(PGTZ=Europe/Paris psql_pooler -c "SHOW TimeZone" 2>&1)
    assert_eq Europe/Paris "$out" "PGTZ client"
    out=$(psql_pooler -c "SHOW TimeZone" 2>&1)
    assert_eq "$def" "$out" "plain client after them"
}

# COPY IN and COPY OUT of ~50 MB, byte for byte.
test_copy_in_out_50mb() {
    local src=$T_DIR/copy.src out1=$T_DIR/copy.out1 out2=$T_DIR/copy.out2 size n e
    psql_direct -U app -c "DROP TABLE IF EXISTS it_copy" -c "CREATE TABLE it_copy (id int, payload text)" ||
        fail "cannot create table it_copy"
    psql_direct -c "\\copy (SELECT g, md5(g::text) || md5((g * 7)::text) || E'\\\\t\\\\\\\\' || repeat(chr(65 + g % 26), g % 13) FROM generate_series(1, 620000) g) TO '$src'" ||
        fail "cannot generate the COPY data"
    size=$(stat -c %s "$src")
    assert_int "$size" -ge 45000000 "size of the COPY data"
    start_sluice main <<'EOF'
pool_mode = "transaction";
default_pool_size = 2;
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );
EOF
    e=$(psql_pooler -c "COPY it_copy FROM STDIN" <"$src" 2>&1) || fail "COPY FROM STDIN through the pooler failed: $e"
    n=$(psql_pooler -c "SELECT count(*) FROM it_copy")
    assert_eq 620000 "$n" "rows after COPY IN"
    psql_pooler -c "COPY (SELECT * FROM it_copy ORDER BY id) TO STDOUT" >"$out1" 2>"$T_DIR/copy.err" ||
        fail "COPY TO STDOUT through the pooler failed: $(head -c 300 "$T_DIR/copy.err")"
    assert_eq "$(md5sum <"$src")" "$(md5sum <"$out1")" "md5 of COPY OUT (TO STDOUT) vs the input ($(stat -c %s "$out1") bytes)"

    # The other way round with psql's \copy (COPY ... FROM STDIN / TO STDOUT too).
    e=$(psql_pooler -c "TRUNCATE it_copy" -c "\\copy it_copy FROM '$src'" 2>&1) || fail "\\copy FROM failed: $e"
    e=$(psql_pooler -c "\\copy (SELECT * FROM it_copy ORDER BY id) TO '$out2'" 2>&1) || fail "\\copy TO failed: $e"
    assert_eq "$(md5sum <"$src")" "$(md5sum <"$out2")" "md5 of \\copy TO vs the input"

    # A COPY that fails half-way leaves the pool usable.
    e=$(printf '1\tok\nnot-a-number\tbad\n' | psql_pooler -c "COPY it_copy FROM STDIN" 2>&1)
    assert_contains "$e" "invalid input syntax" "COPY with a bad row"
    assert_eq 620000 "$(psql_pooler -c "SELECT count(*) FROM it_copy" 2>&1)" "rows after the failed COPY"
    assert_pooler_works
}

# A client that stops reading a huge result: all rows arrive, RSS stays flat.
test_slow_reader_bounded_memory() {
    local out before max
    start_sluice main <<'EOF'
pool_mode = "transaction";
default_pool_size = 2;
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );
EOF
    out=$(pgwire slow-reader --rows 1000000 --stall 3 --rss-pid "$SLUICE_PID")
    note "$out"
    assert_contains "$out" "OK rows=1000000 last=1000000 " "slow reader result"
    out=${out// /$'\n'}
    before=$(val rss_before_kb "$out") max=$(val rss_max_kb "$out")
    assert_int "$before" -gt 0 "RSS before the query (kB)"
    assert_int "$((max - before))" -lt 8192 "RSS growth of sluice during the stall (kB; before $before, max $max)"
    assert_pooler_works
}

# Unix sockets on both sides; TLS and SCRAM/MD5 over TCP to the backend.
test_sockets_tls_and_auth() {
    local out
    start_sluice main <<'EOF'
pool_mode = "transaction";
default_pool_size = 2;
databases = (
  { name = "unixdb"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; },
  { name = "scram"; conninfo = "host=127.0.0.1 port=$PGT_PORT dbname=app user=app password=app_pw"; },
  { name = "md5"; conninfo = "host=127.0.0.1 port=$PGT_PORT dbname=app user=md5user password=md5_pw"; },
  { name = "tls"; conninfo = "host=127.0.0.1 port=$PGT_PORT dbname=app user=app password=app_pw sslmode=require"; },
  { name = "tlsverify"; conninfo = "host=localhost port=$PGT_PORT dbname=app user=app password=app_pw sslmode=verify-full sslrootcert=$PGT_CERTS/ca.crt"; },
  { name = "tlsbadca"; conninfo = "host=localhost port=$PGT_PORT dbname=app user=app password=app_pw sslmode=verify-full sslrootcert=$PGT_CERTS/client.crt"; },
  { name = "badpw"; conninfo = "host=127.0.0.1 port=$PGT_PORT dbname=app user=app password=wrong"; }
);
EOF
    # Client over Sluice's unix socket, backend over PostgreSQL's.
    out=$(psql_pooler_unix -d unixdb -c "SELECT current_user, inet_client_addr() IS NULL" 2>&1) ||
        fail "unix client / unix backend: $out"
    assert_eq "app|t" "$out" "unix client / unix backend (user, no client address)"

    out=$(psql_pooler -d scram -c "SELECT current_user, inet_client_addr(), (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())" 2>&1) ||
        fail "SCRAM backend: $out"
    assert_eq "app|127.0.0.1|f" "$out" "plain TCP backend with SCRAM"

    out=$(psql_pooler -d md5 -c "SELECT current_user" 2>&1) || fail "MD5 backend: $out"
    assert_eq md5user "$out" "TCP backend with MD5 password"

    out=$(psql_pooler -d tls -c "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()" 2>&1) ||
        fail "TLS backend (require): $out"
    assert_eq t "$out" "backend TLS with sslmode=require"
    # Several transactions over the TLS server connection, with a bigger result.
    out=$(psql_pooler -d tls -c "SELECT count(*), sum(length(repeat('y', g))) FROM generate_series(1, 3000) g" \
        -c "SELECT md5(string_agg(md5(g::text), ',')) = (SELECT md5(string_agg(md5(h::text), ',')) FROM generate_series(1, 50000) h) FROM generate_series(1, 50000) g" 2>&1) ||
        fail "TLS backend, larger results: $out"
    assert_eq $'3000|4501500\nt' "$out" "results over the TLS backend"

    out=$(psql_pooler -d tlsverify -c "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()" 2>&1) ||
        fail "TLS backend (verify-full): $out"
    assert_eq t "$out" "backend TLS with sslmode=verify-full"

    # Failed backend logins reach the client as errors; nothing hangs.
    out=$(psql_pooler -d tlsbadca -c "SELECT 1" 2>&1) && fail "verify-full against the wrong CA succeeded: $out"
    assert_contains "$out" "certificate" "error for a server certificate that does not verify"
    out=$(psql_pooler -d badpw -c "SELECT 1" 2>&1) && fail "login with a wrong backend password succeeded"
    assert_contains "$out" "password authentication failed" "wrong backend password (psql)"
    out=$(psql_pooler -d tls -c "SELECT 'tls-still-works'" 2>&1)
    assert_eq tls-still-works "$out" "TLS pool after the failures"
}

# A refused backend login reaches the client with the backend's SQLSTATE
# (as "unknown database" 3D000 does), whatever the authentication method.
test_backend_login_error_sqlstate() {
    local out
    start_sluice main <<'EOF'
pool_mode = "transaction";
databases = (
  { name = "nodb"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=it_no_such_db user=app"; },
  { name = "nodbtcp"; conninfo = "host=127.0.0.1 port=$PGT_PORT dbname=it_no_such_db user=app password=app_pw"; },
  { name = "badpw"; conninfo = "host=127.0.0.1 port=$PGT_PORT dbname=app user=app password=wrong"; },
  { name = "badmd5"; conninfo = "host=127.0.0.1 port=$PGT_PORT dbname=app user=md5user password=wrong"; },
  { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; }
);
EOF
    out=$(pgwire --db nodb connect)
    assert_contains "$out" "ERROR C=3D000 " "backend database missing (unix socket)"
    out=$(pgwire --db nodbtcp connect)
    assert_contains "$out" "ERROR C=3D000 " "backend database missing (TCP, SCRAM)"
    out=$(pgwire --db badmd5 connect)
    assert_contains "$out" "ERROR C=28P01 " "wrong backend password (md5)"
    assert_contains "$out" "password authentication failed" "wrong backend password (md5) message"
    out=$(pgwire --db badpw connect)
    assert_contains "$out" "ERROR C=28P01 " "wrong backend password (SCRAM)"
    assert_contains "$out" "password authentication failed" "wrong backend password (SCRAM) message"
    assert_pooler_works "after refused backend logins"
}

# pgbench: 1,000 clients through a pool of 20.
test_pgbench_1000_clients() {
    local out rc mon mpid maxb tx
    [ "$(ulimit -n)" -ge 2500 ] || ulimit -n 4096 2>/dev/null || fail "open files limit $(ulimit -n) too low for 1,000 clients"
    out=$(pgbench -i -s 1 -q -h "$PGT_SOCK" -p "$PGT_PORT" -U app app 2>&1) || fail "pgbench -i: $out"
    start_sluice main <<'EOF'
pool_mode = "transaction";
default_pool_size = 20;
max_client_conn = 1100;
log_connections = false;
log_disconnections = false;
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );
EOF
    bg_start "$T_DIR/monitor.out" "$BUILD/it_concurrent" -n 0 -m "$(monitor_conninfo)" -d app -u app \
        -s 120 -x "$T_DIR/stop"
    mpid=$BG_PID
    out=$(pgbench -h 127.0.0.1 -p "$SLUICE_PORT" -U app -c 1000 -j 2 -T 10 -S app 2>&1); rc=$?
    printf '%s\n' "$out" >"$T_DIR/pgbench.out"
    touch "$T_DIR/stop"
    wait "$mpid"
    mon=$(cat "$T_DIR/monitor.out")
    note "monitor: $mon"
    note "$(printf '%s\n' "$out" | grep -E 'transactions|failed|tps|error|connection' | head -n 20)"
    assert_eq 0 "$rc" "pgbench exit status ($(printf '%s\n' "$out" | grep -i -m 3 -E 'error|fatal'))"
    assert_contains "$out" "number of failed transactions: 0 " "pgbench failures"
    tx=$(printf '%s\n' "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
    assert_int "${tx:-0}" -gt 0 "transactions processed ($(printf '%s\n' "$out" | grep -m 1 'initial connection time'))"
    maxb=$(val max_backends "${mon// /$'\n'}")
    assert_int "$maxb" -le 20 "max backends of the pool during pgbench"
    assert_int "$maxb" -ge 1 "max backends of the pool during pgbench"
    assert_pooler_works
}

# Startup packet handling, and the pooler keeps working after each abuse.
test_startup_handling() {
    local out
    start_sluice main <<'EOF'
pool_mode = "transaction";
default_pool_size = 2;
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );
EOF
    out=$(pgwire fragmented --delay 0.002)
    assert_eq "OK 42" "$out" "startup packet sent byte by byte"
    assert_pooler_works "after a fragmented startup"

    out=$(pgwire startup-size 10000)
    assert_contains "$out" "OK" "startup packet of exactly 10,000 bytes"
    out=$(pgwire startup-size 10001)
    assert_contains "$out" "ERROR C=08P01" "startup packet of 10,001 bytes"
    assert_pooler_works "after an oversized startup packet"

    out=$(pgwire bad-length 7)
    assert_contains "$out" "ERROR C=08P01" "startup length 7"
    out=$(pgwire bad-length 2147483647)
    assert_contains "$out" "ERROR C=08P01" "startup length 2^31-1"
    out=$(pgwire truncated)
    assert_eq CLOSED "$out" "truncated startup packet then EOF"
    assert_pooler_works "after bad startup lengths"

    out=$(pgwire version 2 0)
    assert_contains "$out" "ERROR C=08P01" "protocol 2.0"
    assert_contains "$out" "unsupported frontend protocol" "protocol 2.0 message"
    out=$(pgwire version 4 0)
    assert_contains "$out" "ERROR C=08P01" "protocol 4.0"
    assert_contains "$out" "unsupported frontend protocol" "protocol 4.0 message"
    out=$(pgwire version 3 1)
    assert_eq "OK 1" "$out" "protocol 3.1 (newer minor: negotiated down)"
    assert_pooler_works "after bad protocol versions"

    out=$(pgwire no-user)
    assert_contains "$out" "ERROR C=28000" "startup without user"
    out=$(pgwire ssl)
    assert_eq $'SSL=N\nOK 1' "$out" "SSLRequest, then plain startup"
    out=$(pgwire gssenc)
    assert_eq $'GSSENC=N\nOK 1' "$out" "GSSENCRequest, then plain startup"

    out=$(pgwire --db no_such_db connect)
    assert_contains "$out" "ERROR C=3D000" "unknown database"
    out=$(pgwire connect --param no_such_param=1)
    assert_contains "$out" "ERROR C=08P01" "unsupported startup parameter"
    out=$(pgwire connect --param 'options=-c work_mem=1MB')
    assert_contains "$out" "ERROR C=08P01" "options setting that is not tracked"
    out=$(pgwire connect --param 'application_name=it-app' --param 'options=-c DateStyle=German')
    assert_eq OK "$out" "tracked startup parameters"
    assert_pooler_works "after refused logins"

    out=$(pgwire garbage --type Y)
    assert_contains "$out" "ERROR C=08P01" "invalid message type after login"
    out=$(pgwire garbage --type 'R')
    assert_contains "$out" "ERROR C=08P01" "backend-only message type from a client"
    assert_pooler_works "after garbage messages"
}

# max_client_conn: the client over the limit gets 53300; others unharmed.
test_max_client_conn() {
    local h1 h2 out
    start_sluice main <<'EOF'
pool_mode = "transaction";
default_pool_size = 2;
max_client_conn = 2;
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );
EOF
    bg_start "$T_DIR/h1.out" "$PYTHON" "$PGWIRE" --port "$SLUICE_PORT" connect --hold 30
    h1=$BG_PID
    bg_start "$T_DIR/h2.out" "$PYTHON" "$PGWIRE" --port "$SLUICE_PORT" connect --hold 30
    h2=$BG_PID
    wait_until 10 grep -q '^OK' "$T_DIR/h1.out" || fail "holder 1 did not log in: $(cat "$T_DIR/h1.out")"
    wait_until 10 grep -q '^OK' "$T_DIR/h2.out" || fail "holder 2 did not log in: $(cat "$T_DIR/h2.out")"
    out=$(pgwire connect)
    assert_contains "$out" "ERROR C=53300" "third client over max_client_conn=2"
    out=$(psql_pooler -c "SELECT 1" 2>&1) && fail "psql over max_client_conn succeeded"
    assert_contains "$out" "no more connections" "psql over the limit"
    kill "$h1" "$h2" 2>/dev/null
    wait "$h1" "$h2" 2>/dev/null
    wait_until 5 psql_pooler -c "SELECT 1" ||
        fail "the pooler does not accept clients after the holders left"
    assert_pooler_works "after the limit was reached"
    # The count of clients went back down: two at once fit again.
    out=$(pgwire script <<'EOF'
open A
open B
q A SELECT 'a' > a
q B SELECT 'b' > b
EOF
)
    assert_eq "a b" "$(val a "$out") $(val b "$out")" "two clients after the refusals"
}

# Pools are per (database, user); a user's pool_mode wins over the
# database's; the "*" entry serves other database names.
test_pool_modes_and_wildcard() {
    local out
    start_sluice main <<'EOF'
pool_mode = "statement";
default_pool_size = 2;
users = ( { name = "postgres"; pool_mode = "session"; } );
databases = (
  { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app"; pool_mode = "transaction"; },
  { name = "*"; conninfo = "host=$PGT_SOCK port=$PGT_PORT"; }
);
EOF
    out=$(pgwire script <<'EOF'
open A1 user=app
open A2 user=app
open P1 user=postgres
open P2 user=postgres
q A1 SELECT pg_backend_pid() > a1
q A2 SELECT pg_backend_pid() > a2
q A1 BEGIN
q A1 SELECT current_user > a_user
q A1 COMMIT
q P1 SELECT pg_backend_pid() > p1
q P2 SELECT pg_backend_pid() > p2
q P1 SELECT pg_backend_pid() > p1b
q P1 SELECT current_user > p_user
open W user=postgres database=postgres
q W SELECT current_database() || '/' || current_user > w
EOF
)
    note "$out"
    assert_eq app "$(val a_user "$out")" "backend user of app's pool (client's user)"
    assert_eq "$(val a1 "$out")" "$(val a2 "$out")" "transaction mode (database's pool_mode): one idle server serves both app clients"
    assert_eq postgres "$(val p_user "$out")" "backend user of postgres' pool"
    assert_ne "$(val p1 "$out")" "$(val p2 "$out")" "session mode (user's pool_mode wins): each postgres client keeps its own server"
    assert_eq "$(val p1 "$out")" "$(val p1b "$out")" "session mode: P1 keeps its server"
    assert_ne "$(val a1 "$out")" "$(val p1 "$out")" "separate pools per user"
    assert_eq postgres/postgres "$(val w "$out")" "wildcard database entry"
    out=$(psql_pooler -d it_no_such_db -c "SELECT 1" 2>&1) && fail "unknown database through the wildcard succeeded"
    assert_contains "$out" "does not exist" "unknown database through the wildcard"
}

# Statement mode refuses transaction blocks, and keeps serving others.
test_statement_mode() {
    local out pa pb
    start_sluice main <<'EOF'
pool_mode = "statement";
default_pool_size = 1;
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );
EOF
    out=$(pgwire script <<'EOF'
open A
open B
q A SELECT pg_backend_pid() > pa
q A BEGIN
q B SELECT pg_backend_pid() > pb
q B SELECT now() = statement_timestamp() > fresh
q B SELECT 'b-works' > b
EOF
)
    note "$out"
    assert_contains "$out" "statement pooling" "error for BEGIN in statement mode"
    assert_match "$(printf '%s\n' "$out" | grep '^A: ERROR')" '^A: ERROR [0-9A-Z]{5} ' "BEGIN answered with an ErrorResponse"
    pa=$(val pa "$out") pb=$(val pb "$out")
    assert_eq "$pa" "$pb" "B on the same (only) server"
    assert_eq t "$(val fresh "$out")" "B is not inside A's transaction"
    assert_eq b-works "$(val b "$out")" "B's query"
    out=$(psql_pooler -c "BEGIN" 2>&1) && fail "BEGIN succeeded in statement mode"
    assert_contains "$out" "statement pooling" "psql BEGIN in statement mode"
    assert_pooler_works "statement mode"
}

# SIGTERM with clients connected (idle, busy, queued for the one server):
# they get 57P01 (or EOF); sluice exits 0 quickly.
test_sigterm_shutdown() {
    local h p w rc
    start_sluice main <<'EOF'
pool_mode = "transaction";
default_pool_size = 1;
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );
EOF
    bg_start "$T_DIR/idle.out" "$PYTHON" "$PGWIRE" --port "$SLUICE_PORT" connect --hold 30
    h=$BG_PID
    bg_start "$T_DIR/busy.out" psql -X -q -At -h 127.0.0.1 -p "$SLUICE_PORT" -U app -d app \
        -c "SELECT pg_sleep(60)"
    p=$BG_PID
    wait_until 10 grep -q '^OK' "$T_DIR/idle.out" || fail "idle client did not log in"
    wait_until 10 query_is_active "SELECT pg_sleep(60)" || fail "the busy client's query never started"
    printf 'open W\nq W SELECT 1 > w\n' >"$T_DIR/waiting.script"
    "$PYTHON" "$PGWIRE" --port "$SLUICE_PORT" script <"$T_DIR/waiting.script" >"$T_DIR/waiting.out" 2>&1 &
    w=$!
    bg_track "$w"
    wait_until 10 grep -q '^W: open' "$T_DIR/waiting.out" || fail "queued client did not log in"
    sleep 0.3
    stop_sluice main TERM
    assert_eq 0 "$SLUICE_EXIT" "sluice exit status after SIGTERM"
    assert_int "$SLUICE_STOP_SECS" -lt 5 "seconds to exit after SIGTERM"
    wait "$h"
    wait "$p"; rc=$?
    assert_match "$(cat "$T_DIR/idle.out")" $'^OK\n(ERROR C=57P01 .*|CLOSED)$' "idle client at shutdown"
    assert_ne 0 "$rc" "psql exit status when its pooler shut down mid-query"
    assert_match "$(cat "$T_DIR/busy.out")" "terminating connection due to administrator command|server closed the connection" \
        "busy client at shutdown"
    wait "$w"
    assert_match "$(cat "$T_DIR/waiting.out")" $'^W: open\n(W: ERROR 57P01 .*|W: CLOSED)' "queued client at shutdown"
    [ ! -e "$SLUICE_SOCK/.s.PGSQL.$SLUICE_PORT" ] || fail "unix socket file left behind after shutdown"
    grep -q "shutdown complete" "$SLUICE_LOG" || fail "no 'shutdown complete' in the log"
}

# SIGHUP: a good file is applied, a bad one is refused and the old one kept.
test_sighup_reload() {
    local out
    start_sluice main <<'EOF'
pool_mode = "session";
default_pool_size = 2;
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );
EOF
    # Add a database on reload.
    cat >>"$SLUICE_CONF" <<EOF
users = ( { name = "other"; pool_mode = "session"; } );
EOF
    sed -i "s|^databases = .*|databases = ( { name = \"app\"; conninfo = \"host=$PGT_SOCK port=$PGT_PORT dbname=app user=app\"; }, { name = \"added\"; conninfo = \"host=$PGT_SOCK port=$PGT_PORT dbname=app user=app\"; } );|" "$SLUICE_CONF"
    kill -HUP "$SLUICE_PID"
    wait_until 5 grep -q "configuration reloaded" "$SLUICE_LOG" || fail "no 'configuration reloaded' in the log"
    out=$(psql_pooler -d added -c "SELECT current_database()" 2>&1)
    assert_eq app "$out" "database added by reload"

    # A broken file: refused, the running configuration stays.
    echo "pool_mode = ;" >>"$SLUICE_CONF"
    kill -HUP "$SLUICE_PID"
    wait_until 5 grep -q "reload failed" "$SLUICE_LOG" || fail "no 'reload failed' in the log"
    is_alive "$SLUICE_PID" || fail "sluice died on a bad reload"
    out=$(psql_pooler -d added -c "SELECT 'still-added'" 2>&1)
    assert_eq still-added "$out" "after a failed reload"
    stop_sluice main INT
    assert_eq 0 "$SLUICE_EXIT" "sluice exit status after SIGINT"
}

# ---------------------------------------------------------------------------
# Runner

TMP=
PG_DIR=
CUR_PID=
PASSED=0
FAILED=0

# login_as USER PASSWORD: psql through the current Sluice as USER; prints
# the query result or psql's error text.
login_as() {
    PGPASSWORD=$2 psql -X -w -At -h 127.0.0.1 -p "$SLUICE_PORT" -U "$1" -d app \
        -c "SELECT current_user || ':ok'" 2>&1 | tail -n 1
}

# Client authentication against an auth_file for each password method: the
# right password logs in (the backend user is the database's forced user),
# a wrong one and an unknown user fail alike with 28P01, and no password
# ever reaches the log.
test_client_auth() {
    local secret md5 at out
    secret=$(psql_direct -d postgres -c "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'")
    md5=$(printf '%s' "md5_pwmd5user" | md5sum | cut -c1-32)
    mkdir -p "$T_DIR/main"
    printf '"app" "%s"\n"plainu" "plain_pw"\n"md5user" "md5%s"\n' "$secret" "$md5" >"$T_DIR/main/users.txt"
    for at in scram-sha-256 md5 plain; do
        start_sluice main <<EOF
auth_type = "$at";
auth_file = "users.txt";
databases = ( { name = "app"; conninfo = "host=\$PGT_SOCK port=\$PGT_PORT dbname=app user=app"; } );
EOF
        assert_eq "app:ok" "$(login_as app app_pw)" "$at: right password (SCRAM secret)"
        assert_eq "app:ok" "$(login_as plainu plain_pw)" "$at: right password (plain secret)"
        out=$(login_as app wrong_pw)
        assert_contains "$out" 'password authentication failed for user "app"' "$at: wrong password"
        out=$(login_as nosuchuser some_pw)
        assert_contains "$out" 'password authentication failed for user "nosuchuser"' "$at: unknown user"
        out=$(login_as md5user md5_pw)
        if [ "$at" = scram-sha-256 ]; then
            # An md5 secret cannot serve SCRAM: refused like a wrong password.
            assert_contains "$out" 'password authentication failed for user "md5user"' "$at: md5 secret"
        else
            assert_eq "app:ok" "$out" "$at: right password (md5 secret)"
        fi
        stop_sluice main
        assert_eq 0 "$SLUICE_EXIT" "$at: exit status"
        assert_int "$(grep -c '(28P01)' "$SLUICE_LOG")" -ge 2 "$at: 28P01 refusals logged"
        if grep -E 'app_pw|plain_pw|md5_pw|wrong_pw|some_pw' "$SLUICE_LOG" "${SL_DIR[main]}/stderr"; then
            fail "$at: a password appears in the log"
        fi
    done
}

# auth_type = hba: the first matching line decides; no match is refused.
test_client_auth_hba() {
    local out
    mkdir -p "$T_DIR/main"
    printf '"app" "app_pw"\n"plainu" "plain_pw"\n' >"$T_DIR/main/users.txt"
    cat >"$T_DIR/main/hba.conf" <<'EOF'
# type  database  user    address        method
host    all       plainu  127.0.0.1/32   reject
host    app       app     127.0.0.1/32   scram-sha-256
local   all       all                    trust
EOF
    start_sluice main <<'EOF'
auth_type = "hba";
auth_file = "users.txt";
auth_hba_file = "hba.conf";
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; },
              { name = "other"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );
EOF
    assert_eq "app:ok" "$(login_as app app_pw)" "hba: scram line"
    out=$(login_as app wrong_pw)
    assert_contains "$out" "password authentication failed" "hba: scram line, wrong password"
    out=$(login_as plainu plain_pw)
    assert_contains "$out" "no authentication rule allows" "hba: reject line"
    out=$(PGPASSWORD=app_pw psql -X -w -At -h 127.0.0.1 -p "$SLUICE_PORT" -U app -d other -c "SELECT 1" 2>&1)
    assert_contains "$out" "no authentication rule allows" "hba: no matching line"
    out=$(psql -X -w -At -h "$SLUICE_SOCK" -p "$SLUICE_PORT" -U plainu -d other -c "SELECT 'local-ok'" 2>&1)
    assert_eq "local-ok" "$out" "hba: local trust line"
    assert_int "$(grep -c '(28000)' "$SLUICE_LOG")" -ge 2 "hba: 28000 refusals logged"
}

# Client-side TLS: verify-full from psql, plaintext refused under require,
# SCRAM with channel binding, certificate authentication, bulk data intact,
# verify-ca demanding a client certificate.
test_client_tls() {
    local out ca=$PGT_CERTS/ca.crt sum_direct sum_tls
    mkdir -p "$T_DIR/main"
    printf '"app" "app_pw"\n"plainu" "plain_pw"\n' >"$T_DIR/main/users.txt"
    cat >"$T_DIR/main/hba.conf" <<'EOF'
hostssl all   app  127.0.0.1/32  cert
hostssl all   all  127.0.0.1/32  scram-sha-256
local   all   all                trust
EOF
    start_sluice main <<'EOF'
auth_type = "hba";
auth_file = "users.txt";
auth_hba_file = "hba.conf";
client_tls_sslmode = "require";
client_tls_cert_file = "$PGT_CERTS/server.crt";
client_tls_key_file = "$PGT_CERTS/server.key";
client_tls_ca_file = "$PGT_CERTS/ca.crt";
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );
EOF
    out=$(PGPASSWORD=plain_pw psql -X -w -At "host=localhost port=$SLUICE_PORT user=plainu dbname=app sslmode=verify-full sslrootcert=$ca" -c '\conninfo' 2>&1)
    assert_contains "$out" "SSL connection (protocol: TLSv1." "verify-full from psql"
    out=$(PGPASSWORD=plain_pw psql -X -w -At "host=localhost port=$SLUICE_PORT user=plainu dbname=app sslmode=verify-full sslrootcert=$ca channel_binding=require" -c "SELECT 'cb-ok'" 2>&1)
    assert_eq "cb-ok" "$out" "SCRAM-SHA-256-PLUS with channel_binding=require"
    out=$(PGPASSWORD=plain_pw psql -X -w -At "host=127.0.0.1 port=$SLUICE_PORT user=plainu dbname=app sslmode=disable" -c "SELECT 1" 2>&1)
    assert_contains "$out" "SSL required" "plaintext refused under require"
    out=$(psql -X -w -At "host=localhost port=$SLUICE_PORT user=app dbname=app sslmode=verify-full sslrootcert=$ca sslcert=$PGT_CERTS/client.crt sslkey=$PGT_CERTS/client.key" -c "SELECT 'cert-ok'" 2>&1)
    assert_eq "cert-ok" "$out" "cert auth with a client certificate for CN=app"
    out=$(psql -X -w -At "host=localhost port=$SLUICE_PORT user=app dbname=app sslmode=require" -c "SELECT 1" 2>&1)
    assert_contains "$out" 'certificate authentication failed for user "app"' "cert auth without a certificate"
    out=$(psql -X -w -At -h "$SLUICE_SOCK" -p "$SLUICE_PORT" -U plainu -d app -c "SELECT 'unix-ok'" 2>&1)
    assert_eq "unix-ok" "$out" "unix socket exempt from require"
    sum_tls=$(PGPASSWORD=plain_pw psql -X -w -At "host=127.0.0.1 port=$SLUICE_PORT user=plainu dbname=app sslmode=require" \
        -c "SELECT g, repeat('x', 500) FROM generate_series(1, 100000) g" | md5sum)
    sum_direct=$(psql_direct -c "SELECT g, repeat('x', 500) FROM generate_series(1, 100000) g" | md5sum)
    assert_eq "$sum_direct" "$sum_tls" "50 MB result over TLS"
    stop_sluice main
    assert_eq 0 "$SLUICE_EXIT" "exit status"

    start_sluice ca <<'EOF'
client_tls_sslmode = "verify-ca";
client_tls_cert_file = "$PGT_CERTS/server.crt";
client_tls_key_file = "$PGT_CERTS/server.key";
client_tls_ca_file = "$PGT_CERTS/ca.crt";
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );
EOF
    out=$(psql -X -w -At "host=127.0.0.1 port=$SLUICE_PORT user=app dbname=app sslmode=require" -c "SELECT 1" 2>&1)
    assert_ne "1" "$out" "verify-ca without a client certificate"
    out=$(psql -X -w -At "host=127.0.0.1 port=$SLUICE_PORT user=app dbname=app sslmode=require sslcert=$PGT_CERTS/client.crt sslkey=$PGT_CERTS/client.key" -c "SELECT 'ca-ok'" 2>&1)
    assert_eq "ca-ok" "$out" "verify-ca with a client certificate"
}

# server_tls_*: databases whose conninfo sets no sslmode use them; a conninfo
# that sets one keeps it.
test_server_tls_settings() {
    local out
    start_sluice main <<'EOF'
server_tls_sslmode = "verify-full";
server_tls_ca_file = "$PGT_CERTS/ca.crt";
databases = (
  { name = "app"; conninfo = "host=localhost port=$PGT_PORT dbname=app user=app password=app_pw"; },
  { name = "plain"; conninfo = "host=127.0.0.1 port=$PGT_PORT dbname=app user=app password=app_pw sslmode=disable"; }
);
EOF
    out=$(psql_pooler -c "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    assert_eq "t" "$out" "server_tls_sslmode = verify-full applies"
    out=$(psql -X -q -At -h 127.0.0.1 -p "$SLUICE_PORT" -U app -d plain -c "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    assert_eq "f" "$out" "conninfo sslmode=disable wins"
}

# auth_hba_file `peer`: over the unix socket the OS user must be the user
# name (the suite runs as some OS user; any other database user is refused).
test_client_auth_peer() {
    local me out
    me=$(id -un)
    mkdir -p "$T_DIR/main"
    printf 'local all all peer\n' >"$T_DIR/main/hba.conf"
    start_sluice main <<'EOF'
auth_type = "hba";
auth_hba_file = "hba.conf";
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );
EOF
    out=$(psql -X -w -At -h "$SLUICE_SOCK" -p "$SLUICE_PORT" -U "$me" -d app -c "SELECT 'peer-ok'" 2>&1)
    assert_eq "peer-ok" "$out" "peer: OS user $me as database user $me"
    out=$(psql -X -w -At -h "$SLUICE_SOCK" -p "$SLUICE_PORT" -U "not_$me" -d app -c "SELECT 1" 2>&1)
    assert_contains "$out" "peer authentication failed" "peer: another user name"
    out=$(psql -X -w -At -h 127.0.0.1 -p "$SLUICE_PORT" -U "$me" -d app -c "SELECT 1" 2>&1)
    assert_contains "$out" "no authentication rule allows" "peer: TCP has no local line"
}

# Backend passwords kept out of the config file: password_env and
# server_passfile (TCP to the cluster needs SCRAM with app's password).
test_backend_password_sources() {
    local out
    mkdir -p "$T_DIR/main"
    printf '127.0.0.1:%s:app:app:app_pw\n' "$PGT_PORT" >"$T_DIR/main/pgpass"
    chmod 600 "$T_DIR/main/pgpass"
    export IT_APP_PASSWORD=app_pw
    start_sluice main <<'EOF'
server_passfile = "pgpass";
databases = (
  { name = "viaenv"; conninfo = "host=127.0.0.1 port=$PGT_PORT dbname=app"; user = "app"; password_env = "IT_APP_PASSWORD"; },
  { name = "viafile"; conninfo = "host=127.0.0.1 port=$PGT_PORT dbname=app user=app"; }
);
EOF
    unset IT_APP_PASSWORD
    out=$(psql -X -q -At -h 127.0.0.1 -p "$SLUICE_PORT" -U app -d viaenv -c "SELECT 'env-ok'" 2>&1)
    assert_eq "env-ok" "$out" "password from password_env"
    out=$(psql -X -q -At -h 127.0.0.1 -p "$SLUICE_PORT" -U app -d viafile -c "SELECT 'passfile-ok'" 2>&1)
    assert_eq "passfile-ok" "$out" "password from server_passfile"
    printf 'databases = ( { name = "x"; conninfo = ""; password_env = "IT_SURELY_UNSET_VAR"; } );\n' >"$T_DIR/bad.conf"
    out=$("$SLUICE" --check -c "$T_DIR/bad.conf" 2>&1)
    assert_contains "$out" "password_env: names an environment variable that is not set" "unset password_env refused"
}

# auth_query through auth_user's pooled connection: secrets come from
# pg_authid; an expired role and an unknown user fail alike; a user name
# shaped like SQL injection is only ever a bound parameter.
test_auth_query() {
    local out n
    psql_direct -d postgres -c "DROP ROLE IF EXISTS it_expired" -c \
        "CREATE ROLE it_expired LOGIN PASSWORD 'exp_pw' VALID UNTIL '2000-01-01'" >/dev/null
    start_sluice main <<'EOF'
auth_type = "scram-sha-256";
auth_user = "postgres";
auth_dbname = "postgres";
databases = (
  { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; },
  { name = "postgres"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=postgres"; }
);
EOF
    assert_eq "app:ok" "$(login_as app app_pw)" "auth_query: right password"
    out=$(login_as app wrong_pw)
    assert_contains "$out" 'password authentication failed for user "app"' "auth_query: wrong password"
    out=$(login_as it_expired exp_pw)
    assert_contains "$out" 'password authentication failed for user "it_expired"' "auth_query: expired role"
    out=$(login_as nosuchuser some_pw)
    assert_contains "$out" 'password authentication failed for user "nosuchuser"' "auth_query: unknown user"
    out=$(login_as "x'; DROP ROLE app; --" some_pw)
    assert_contains "$out" "password authentication failed" "auth_query: injection-shaped user name"
    n=$(psql_direct -d postgres -c "SELECT count(*) FROM pg_roles WHERE rolname = 'app'")
    assert_eq 1 "$n" "role app still exists"
    # Lookups ran on one pooled backend of postgres/postgres, not one per login.
    n=$(psql_direct -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND usename = 'postgres' AND datname = 'postgres' AND pid <> pg_backend_pid()")
    assert_eq 1 "$n" "auth_user pool backends"
    psql_direct -d postgres -c "DROP ROLE it_expired" >/dev/null
}

# hostssl-only rules refuse plaintext; new certificates take effect on reload
# while connections made with the old ones keep working.
test_client_tls_reload_and_hostssl() {
    local out old_ca=$PGT_CERTS/ca.crt new=$T_DIR/newcerts held
    mkdir -p "$T_DIR/main"
    cp "$PGT_CERTS/server.crt" "$T_DIR/main/server.crt"
    cp "$PGT_CERTS/server.key" "$T_DIR/main/server.key"
    printf '"app" "app_pw"\n' >"$T_DIR/main/users.txt"
    printf 'hostssl all all 127.0.0.1/32 scram-sha-256\n' >"$T_DIR/main/hba.conf"
    start_sluice main <<'EOF'
auth_type = "hba";
auth_file = "users.txt";
auth_hba_file = "hba.conf";
client_tls_sslmode = "prefer";
client_tls_cert_file = "server.crt";
client_tls_key_file = "server.key";
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );
EOF
    out=$(PGPASSWORD=app_pw psql -X -w -At "host=127.0.0.1 port=$SLUICE_PORT user=app dbname=app sslmode=disable" -c "SELECT 1" 2>&1)
    assert_contains "$out" "no authentication rule allows" "hostssl-only rules refuse plaintext"
    # A client that stays connected across the reload.
    held=$T_DIR/held.out
    ( printf 'SELECT %s;\n' "'before'"; sleep 3; printf 'SELECT %s;\n' "'after'" ) |
        PGPASSWORD=app_pw psql -X -w -At "host=localhost port=$SLUICE_PORT user=app dbname=app sslmode=verify-full sslrootcert=$old_ca" >"$held" 2>&1 &
    bg_track $!
    wait_until 10 grep -q before "$held" || fail "held client did not connect"
    "$ROOT/scripts/gen-test-certs.sh" "$new" >/dev/null 2>&1 || fail "gen-test-certs.sh failed"
    cp "$new/server.crt" "$T_DIR/main/server.crt"
    cp "$new/server.key" "$T_DIR/main/server.key"
    kill -HUP "$SLUICE_PID"
    sleep 0.5
    out=$(PGPASSWORD=app_pw psql -X -w -At "host=localhost port=$SLUICE_PORT user=app dbname=app sslmode=verify-full sslrootcert=$new/ca.crt" -c "SELECT 'new-cert'" 2>&1)
    assert_eq "new-cert" "$out" "new certificate after reload"
    out=$(PGPASSWORD=app_pw psql -X -w -At "host=localhost port=$SLUICE_PORT user=app dbname=app sslmode=verify-full sslrootcert=$old_ca" -c "SELECT 1" 2>&1)
    assert_contains "$out" "certificate verify failed" "old CA no longer matches"
    wait_until 10 grep -q after "$held" || fail "held client lost its connection across the reload: $(cat "$held")"
    # A broken certificate file on reload keeps the running context.
    printf 'garbage\n' >"$T_DIR/main/server.crt"
    kill -HUP "$SLUICE_PID"
    sleep 0.5
    out=$(PGPASSWORD=app_pw psql -X -w -At "host=localhost port=$SLUICE_PORT user=app dbname=app sslmode=verify-full sslrootcert=$new/ca.crt" -c "SELECT 'kept'" 2>&1)
    assert_eq "kept" "$out" "broken certificate on reload keeps the old one"
    grep -q "reload failed" "$SLUICE_LOG" || fail "no 'reload failed' in the log"
}

# auth_file is re-read on SIGHUP: a changed password applies to new logins.
test_auth_file_reload() {
    local out
    mkdir -p "$T_DIR/main"
    printf '"app" "first_pw"\n' >"$T_DIR/main/users.txt"
    start_sluice main <<'EOF'
auth_type = "md5";
auth_file = "users.txt";
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );
EOF
    assert_eq "app:ok" "$(login_as app first_pw)" "password before reload"
    printf '"app" "second_pw"\n' >"$T_DIR/main/users.txt"
    kill -HUP "$SLUICE_PID"
    wait_until 5 grep -q "configuration reloaded" "$SLUICE_LOG" || fail "reload not logged"
    assert_eq "app:ok" "$(login_as app second_pw)" "new password after reload"
    out=$(login_as app first_pw)
    assert_contains "$out" "password authentication failed" "old password after reload"
}

# CancelRequest: psql's Ctrl-C (SIGINT) cancels pg_sleep(30) through the
# pooler with 57014 within seconds, on a unix-socket and a TCP backend, and the
# backend is reused afterwards; a cancel with a wrong key does nothing.
test_cancel_request() {
    local db out t0 elapsed pid1 pid2
    start_sluice main <<'EOF'
pool_mode = "session";
default_pool_size = 1;
databases = (
  { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; },
  { name = "apptcp"; conninfo = "host=127.0.0.1 port=$PGT_PORT dbname=app user=app password=app_pw"; }
);
EOF
    for db in app apptcp; do
        pid1=$(psql -X -q -At -h 127.0.0.1 -p "$SLUICE_PORT" -U app -d "$db" -c "SELECT pg_backend_pid()")
        t0=$(date +%s%N)
        out=$(timeout -s INT 1 psql -X -q -At -v VERBOSITY=verbose -h 127.0.0.1 -p "$SLUICE_PORT" \
            -U app -d "$db" -c "SELECT pg_sleep(30)" 2>&1)
        elapsed=$((($(date +%s%N) - t0) / 1000000))
        assert_contains "$out" "57014" "$db: cancelled query's SQLSTATE"
        assert_int "$elapsed" -lt 10000 "$db: milliseconds until the cancel took effect"
        pid2=$(psql -X -q -At -h 127.0.0.1 -p "$SLUICE_PORT" -U app -d "$db" -c "SELECT pg_backend_pid()")
        assert_eq "$pid1" "$pid2" "$db: the same backend serves the next client"
    done
    # A cancel with a key nobody has must not touch the running query.
    bg_start "$T_DIR/long.out" psql -X -q -At -h 127.0.0.1 -p "$SLUICE_PORT" -U app -d app -c "SELECT pg_sleep(3), 'finished'"
    wait_until 10 query_is_active "SELECT pg_sleep(3), 'finished'" || fail "long query never started"
    "$PYTHON" - "$SLUICE_PORT" <<'PY'
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(struct.pack("!iiii", 16, 80877102, 12345, 67890))
s.settimeout(5)
assert s.recv(1) == b""   # the pooler closes without a word
PY
    sleep 0.5
    query_is_active "SELECT pg_sleep(3), 'finished'" || fail "a bogus cancel stopped the query"
    wait_until 10 grep -q finished "$T_DIR/long.out" || fail "long query did not finish: $(cat "$T_DIR/long.out")"
}

# The janitor's timeouts, each with a short value: the affected client gets
# an ErrorResponse naming the timeout, everything else keeps working.
test_client_timeouts() {
    local out n
    psql_direct -c "DROP TABLE IF EXISTS it_tmo" -c "CREATE TABLE it_tmo (v int)" >/dev/null
    psql_direct -c "GRANT ALL ON it_tmo TO app" >/dev/null
    start_sluice main <<'EOF'
pool_mode = "transaction";
default_pool_size = 1;
query_wait_timeout = 1;
idle_transaction_timeout = 1;
query_timeout = 2;
client_login_timeout = 1;
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );
EOF
    # idle_transaction_timeout: the transaction is rolled back, the client told.
    out=$( (printf 'BEGIN;\nINSERT INTO it_tmo VALUES (1);\n'; sleep 3; printf 'SELECT 1;\n') |
        psql -X -q -At -v VERBOSITY=verbose -h 127.0.0.1 -p "$SLUICE_PORT" -U app -d app 2>&1)
    assert_contains "$out" "25P03" "idle_transaction_timeout SQLSTATE"
    assert_contains "$out" "idle_transaction_timeout" "idle_transaction_timeout named"
    assert_eq 0 "$(psql_direct -c "SELECT count(*) FROM it_tmo")" "idle transaction rolled back"
    # query_wait_timeout: one client holds the only server in a transaction.
    bg_start "$T_DIR/holder.out" sh -c "(printf 'BEGIN;\nSELECT 1;\n'; sleep 0.9; printf 'SELECT 2;\n'; sleep 0.9; printf 'COMMIT;\n') | psql -X -q -At -h 127.0.0.1 -p $SLUICE_PORT -U app -d app"
    sleep 0.3
    out=$(psql -X -q -At -v VERBOSITY=verbose -h 127.0.0.1 -p "$SLUICE_PORT" -U app -d app -c "SELECT 'served'" 2>&1)
    assert_contains "$out" "57P03" "query_wait_timeout SQLSTATE"
    assert_contains "$out" "query_wait_timeout" "query_wait_timeout named"
    wait_until 10 grep -q '^2$' "$T_DIR/holder.out" || fail "the holder was disturbed: $(cat "$T_DIR/holder.out")"
    # query_timeout: the client is failed and the busy server is not reused.
    local pid1 pid2
    pid1=$(psql_pooler -c "SELECT pg_backend_pid()")
    out=$(psql -X -q -At -v VERBOSITY=verbose -h 127.0.0.1 -p "$SLUICE_PORT" -U app -d app -c "SELECT pg_sleep(10)" 2>&1)
    assert_contains "$out" "57014" "query_timeout SQLSTATE"
    assert_contains "$out" "query_timeout" "query_timeout named"
    pid2=$(psql_pooler -c "SELECT pg_backend_pid()")
    assert_ne "$pid1" "$pid2" "server of a timed-out query is not reused"
    wait_until 5 backend_gone "$pid1" || fail "the timed-out query kept running on the backend"
    # client_login_timeout: a connection that never sends a startup packet.
    out=$("$PYTHON" - "$SLUICE_PORT" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(10)
t0 = time.time()
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
print("closed after %.1f s" % (time.time() - t0), b"client_login_timeout" in data)
PY
)
    assert_contains "$out" "True" "client_login_timeout named in the ErrorResponse"
    assert_pooler_works "after the timeouts"
}

# Backends of user md5user, which only the test below uses over the unix
# socket, so servers of earlier tests' instances still exiting do not count.
md5user_backends_are() { [ "$(backend_count app md5user)" = "$1" ]; }

# server_idle_timeout closes idle servers down to min_pool_size, which the
# janitor also fills; server_lifetime recycles idle servers; client_idle_timeout
# closes idle clients.
test_server_timeouts_and_min_pool() {
    local out
    start_sluice main <<'EOF'
pool_mode = "transaction";
default_pool_size = 5;
min_pool_size = 2;
server_idle_timeout = 1;
client_idle_timeout = 1;
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=md5user"; } );
EOF
    psql_pooler -c "SELECT 1" >/dev/null   # the pool exists once a client used it
    wait_until 10 md5user_backends_are 2 || fail "min_pool_size backends not opened: $(backend_count app md5user)"
    # Four concurrent queries need four servers; idle ones above 2 go again.
    local i pids=()
    for i in 1 2 3 4; do
        psql_pooler -c "SELECT pg_sleep(0.5)" >/dev/null &
        pids+=($!)
    done
    wait "${pids[@]}"
    assert_int "$(backend_count app md5user)" -ge 4 "servers opened for concurrent clients"
    wait_until 10 md5user_backends_are 2 || fail "idle servers above min_pool_size not closed: $(backend_count app md5user)"
    sleep 1.5
    assert_eq 2 "$(backend_count app md5user)" "min_pool_size kept across server_idle_timeout"
    out=$( (printf 'SELECT 1;\n'; sleep 3; printf 'SELECT 2;\n') |
        psql -X -q -At -v VERBOSITY=verbose -h 127.0.0.1 -p "$SLUICE_PORT" -U app -d app 2>&1)
    assert_contains "$out" "57P05" "client_idle_timeout SQLSTATE"
    stop_sluice main
    start_sluice life <<'EOF'
pool_mode = "transaction";
server_lifetime = 1;
server_idle_timeout = 0;
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );
EOF
    local pid1 pid2
    pid1=$(psql_pooler -c "SELECT pg_backend_pid()")
    wait_until 10 backend_gone "$pid1" || fail "server_lifetime did not close the old server"
    pid2=$(psql_pooler -c "SELECT pg_backend_pid()")
    assert_ne "$pid1" "$pid2" "a new server after server_lifetime"
}

# PostgreSQL restarted under load: pgbench through Sluice goes on after the
# restart (the clients that were mid-transaction lose it, the others wait),
# Sluice itself keeps running, and no client ever gets another one's answer.
# A login failure that waiting cannot cure (unknown database) still fails fast.
test_backend_restart() {
    local pgb=$T_DIR/pgbench.out chk=$T_DIR/check.out pid_before after
    pgbench -i -q -s 1 -h "$PGT_SOCK" -p "$PGT_PORT" -U postgres app >/dev/null 2>&1 ||
        fail "pgbench -i failed"
    psql_direct -c "GRANT ALL ON ALL TABLES IN SCHEMA public TO app" >/dev/null
    start_sluice main <<'EOF'
pool_mode = "transaction";
default_pool_size = 4;
server_login_retry = 0.5;
query_wait_timeout = 60;
databases = (
  { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; },
  { name = "nodb"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=it_no_such_db user=app"; }
);
EOF
    pid_before=$SLUICE_PID
    bg_start "$pgb" pgbench -n -S -c 16 -j 2 -T 14 -P 1 -h 127.0.0.1 -p "$SLUICE_PORT" -U app app
    # A checking client: every answer must be its own question.
    bg_start "$chk" bash -c '
        for i in $(seq 1 100000); do
            out=$(psql -X -q -At -h 127.0.0.1 -p '"$SLUICE_PORT"' -U app -d app -c "SELECT $i" 2>/dev/null) || continue
            [ "$out" = "$i" ] || { echo "MISMATCH asked $i got $out"; exit 1; }
            [ -e '"$T_DIR"'/stop ] && { echo "checked $i"; exit 0; }
        done'
    sleep 4
    "$ROOT/scripts/pg-temp.sh" restart "$PGT_DIR" >"$T_DIR/restart.log" 2>&1 || fail "restart failed: $(cat "$T_DIR/restart.log")"
    date +%s >"$T_DIR/restarted_at"
    wait_until 40 grep -q "number of transactions actually processed" "$pgb" || fail "pgbench did not finish: $(tail -5 "$pgb")"
    touch "$T_DIR/stop"
    wait_until 20 grep -qE "checked|MISMATCH" "$chk" || fail "checking client did not finish"
    assert_not_contains "$(cat "$chk")" "MISMATCH" "answers always belong to their own query"
    # pgbench progress lines after the restart show transactions again.
    after=$(awk '/^progress:/ { t = $2 + 0; if (t >= 9 && $4 + 0 > 0) n++ } END { print n + 0 }' "$pgb")
    assert_int "$after" -ge 2 "pgbench progress seconds with tps > 0 after the restart"
    is_alive "$pid_before" || fail "Sluice died during the restart"
    assert_pooler_works "after the PostgreSQL restart"
    local out
    out=$(psql -X -q -At -h 127.0.0.1 -p "$SLUICE_PORT" -U app -d nodb -c "SELECT 1" 2>&1)
    assert_contains "$out" "does not exist" "permanent login error reported"
    out=$(timeout 5 psql -X -q -At -h 127.0.0.1 -p "$SLUICE_PORT" -U app -d nodb -c "SELECT 1" 2>&1)
    assert_contains "$out" "does not exist" "permanent login error fails fast"
}

# Client limits per database and per user refuse the client over the limit
# with 53300 naming the limit; others are not affected.
test_client_limits() {
    local out h1 h2
    start_sluice main <<'EOF'
max_db_client_connections = 2;
max_user_client_connections = 3;
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; },
              { name = "app2"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );
EOF
    bg_start "$T_DIR/h1.out" "$PYTHON" "$PGWIRE" --port "$SLUICE_PORT" connect --hold 20
    bg_start "$T_DIR/h2.out" "$PYTHON" "$PGWIRE" --port "$SLUICE_PORT" connect --hold 20
    wait_until 10 grep -q '^OK' "$T_DIR/h1.out" || fail "holder 1 did not log in"
    wait_until 10 grep -q '^OK' "$T_DIR/h2.out" || fail "holder 2 did not log in"
    out=$(pgwire connect)
    assert_contains "$out" "ERROR C=53300 " "third client of database app"
    assert_contains "$out" "max_db_client_connections" "limit named"
    out=$(psql -X -q -At -h 127.0.0.1 -p "$SLUICE_PORT" -U app -d app2 -c "SELECT 'other-db'" 2>&1)
    assert_eq "other-db" "$out" "another database is not limited by app's clients"
    bg_start "$T_DIR/h3.out" "$PYTHON" "$PGWIRE" --port "$SLUICE_PORT" --db app2 connect --hold 20
    wait_until 10 grep -q '^OK' "$T_DIR/h3.out" || fail "holder 3 did not log in"
    out=$(pgwire --db app2 connect)
    assert_contains "$out" "ERROR C=53300 " "fourth client of user app"
    assert_contains "$out" "max_user_client_connections" "user limit named"
}

# max_db_connections caps servers over all pools of a database; the reserve
# pool opens extra servers only after reserve_pool_timeout; round robin
# hands idle servers out in turn.
test_server_limits_reserve_round_robin() {
    local i pids=() max=0 n out
    start_sluice main <<'EOF'
pool_mode = "transaction";
default_pool_size = 5;
max_db_connections = 2;
databases = ( { name = "lim"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app"; } );
EOF
    for i in 1 2 3 4 5 6; do
        PGAPPNAME=it_dblimit psql -X -q -At -h 127.0.0.1 -p "$SLUICE_PORT" -U "$([ $((i % 2)) = 0 ] && echo app || echo md5user)" \
            -d lim -c "SELECT pg_sleep(0.7)" >/dev/null 2>&1 &
        pids+=($!)
    done
    for i in $(seq 1 25); do
        n=$(psql_direct -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE datname = 'app' AND usename IN ('app', 'md5user') AND query = 'SELECT pg_sleep(0.7)' AND state = 'active'")
        [ "$n" -gt "$max" ] && max=$n
        sleep 0.1
    done
    wait "${pids[@]}" || fail "a client of the limited database failed"
    assert_int "$max" -le 2 "concurrent backends under max_db_connections = 2"
    assert_int "$max" -ge 1 "backends were used"
    stop_sluice main

    start_sluice reserve <<'EOF'
pool_mode = "transaction";
default_pool_size = 1;
reserve_pool_size = 1;
reserve_pool_timeout = 0.5;
server_round_robin = true;
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=md5user"; } );
EOF
    psql -X -q -At -h 127.0.0.1 -p "$SLUICE_PORT" -U app -d app -c "SELECT pg_sleep(2)" >/dev/null 2>&1 &
    pids=($!)
    sleep 0.3
    local t0=$SECONDS
    out=$(psql -X -q -At -h 127.0.0.1 -p "$SLUICE_PORT" -U app -d app -c "SELECT 'reserve'" 2>&1)
    assert_eq "reserve" "$out" "second client served"
    assert_int $((SECONDS - t0)) -lt 2 "served by the reserve before the first query ended"
    assert_eq 2 "$(backend_count app md5user)" "pool size 1 + reserve 1"
    wait "${pids[@]}"
    # Round robin: with two idle servers, consecutive queries alternate.
    local a b c
    a=$(psql_pooler -c "SELECT pg_backend_pid()")
    b=$(psql_pooler -c "SELECT pg_backend_pid()")
    c=$(psql_pooler -c "SELECT pg_backend_pid()")
    assert_ne "$a" "$b" "round robin: next server"
    assert_eq "$a" "$c" "round robin: back to the first"
}

# server_check_query runs before reusing a server idle for server_check_delay
# (0 = always); a server failing it is closed and the client served anyway.
# transaction_timeout ends a transaction open too long, cancelling its query.
test_server_check_and_transaction_timeout() {
    local v1 v2 out pid1 pid2
    psql_direct -c "DROP SEQUENCE IF EXISTS it_check_seq" -c "CREATE SEQUENCE it_check_seq" \
        -c "GRANT ALL ON SEQUENCE it_check_seq TO app" >/dev/null
    start_sluice main <<'EOF'
pool_mode = "transaction";
default_pool_size = 1;
server_check_delay = 0;
server_check_query = "SELECT nextval('it_check_seq')";
transaction_timeout = 1;
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );
EOF
    psql_pooler -c "SELECT 1" >/dev/null
    v1=$(psql_direct -c "SELECT last_value FROM it_check_seq")
    for i in 1 2 3; do psql_pooler -c "SELECT 1" >/dev/null; done
    v2=$(psql_direct -c "SELECT last_value FROM it_check_seq")
    assert_int $((v2 - v1)) -ge 3 "server_check_query ran before each reuse"
    out=$( (printf 'BEGIN;\nSELECT 1;\n'; sleep 2.5; printf 'SELECT 2;\n') |
        psql -X -q -At -v VERBOSITY=verbose -h 127.0.0.1 -p "$SLUICE_PORT" -U app -d app 2>&1)
    assert_contains "$out" "25P04" "transaction_timeout SQLSTATE"
    out=$(psql -X -q -At -v VERBOSITY=verbose -h 127.0.0.1 -p "$SLUICE_PORT" -U app -d app \
        -c "BEGIN" -c "SELECT pg_sleep(20)" 2>&1)
    assert_contains "$out" "transaction_timeout" "transaction_timeout during a query"
    wait_until 5 query_not_active "SELECT pg_sleep(20)" || fail "the query kept running"
    assert_pooler_works "after transaction_timeout"
    stop_sluice main
    start_sluice bad <<'EOF'
pool_mode = "transaction";
default_pool_size = 1;
server_check_delay = 0;
server_check_query = "SELECT 1/0";
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );
EOF
    pid1=$(psql_pooler -c "SELECT pg_backend_pid()")
    pid2=$(psql_pooler -c "SELECT pg_backend_pid()")
    assert_ne "$pid1" "$pid2" "a server failing its check is replaced"
    grep -q "server_check_query failed" "$SLUICE_LOG" || fail "failed check not logged"
}

# A users entry's pool_size wins over default_pool_size; pools made through
# the "*" entry are closed after autodb_idle_timeout without clients.
test_user_pool_size_and_autodb() {
    local i pids=() max=0 n out
    start_sluice main <<'EOF'
pool_mode = "transaction";
default_pool_size = 5;
autodb_idle_timeout = 1;
users = ( { name = "app"; pool_size = 1; } );
databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app"; },
              { name = "*"; conninfo = "host=$PGT_SOCK port=$PGT_PORT user=md5user"; } );
EOF
    for i in 1 2 3; do
        psql_pooler -c "SELECT pg_sleep(0.6)" >/dev/null &
        pids+=($!)
    done
    for i in $(seq 1 15); do
        n=$(active_queries "SELECT pg_sleep(0.6)")
        [ "$n" -gt "$max" ] && max=$n
        sleep 0.1
    done
    wait "${pids[@]}" || fail "a client of the size-1 user pool failed"
    assert_eq 1 "$max" "concurrent backends with the user's pool_size = 1"
    out=$(psql -X -q -At -h 127.0.0.1 -p "$SLUICE_PORT" -U app -d postgres -c "SELECT current_database() || '/' || current_user")
    assert_eq "postgres/md5user" "$out" "wildcard database served"
    assert_eq 1 "$(backend_count postgres md5user)" "wildcard pool's server after use"
    wait_until 10 md5user_on_postgres_gone || fail "autodb_idle_timeout did not close the wildcard pool's server"
    out=$(psql -X -q -At -h 127.0.0.1 -p "$SLUICE_PORT" -U app -d postgres -c "SELECT 'again'")
    assert_eq "again" "$out" "wildcard pool made again after it was forgotten"
}

md5user_on_postgres_gone() { [ "$(backend_count postgres md5user)" = 0 ]; }

# server_connect_timeout: a "database" that accepts TCP and never answers
# makes the login time out; the waiting client is failed by
# query_wait_timeout, and nothing else is affected.  tcp_keepalive settings
# are visible on the client's socket.
test_server_connect_timeout_and_keepalive() {
    local port out
    port=$(free_port)
    "$PYTHON" - "$port" "$T_DIR/silent.ready" <<'PY' &
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
open(sys.argv[2], "w").close()
held = []
end = time.time() + 30
s.settimeout(1)
while time.time() < end:
    try:
        held.append(s.accept()[0])   # accept, then say nothing
    except socket.timeout:
        pass
PY
    bg_track $!
    wait_until 5 [ -e "$T_DIR/silent.ready" ] || fail "silent server did not start"
    start_sluice main <<EOF
server_connect_timeout = 1;
client_login_timeout = 3;
tcp_keepidle = 77;
databases = ( { name = "silent"; conninfo = "host=127.0.0.1 port=$port dbname=x user=x"; },
              { name = "app"; conninfo = "host=\$PGT_SOCK port=\$PGT_PORT dbname=app user=app"; } );
EOF
    out=$(psql -X -q -At -v VERBOSITY=verbose -h 127.0.0.1 -p "$SLUICE_PORT" -U app -d silent -c "SELECT 1" 2>&1)
    assert_contains "$out" "client_login_timeout" "client of an unresponsive database failed by Sluice's timeout"
    grep -q "server_connect_timeout" "$SLUICE_LOG" || fail "server_connect_timeout not logged"
    # keepalive with tcp_keepidle = 77 s on an accepted client socket.
    bg_start "$T_DIR/held.out" "$PYTHON" "$PGWIRE" --port "$SLUICE_PORT" connect --hold 10
    wait_until 10 grep -q '^OK' "$T_DIR/held.out" || fail "held client did not log in"
    out=$(ss -tnoH state established "( sport = :$SLUICE_PORT )" 2>&1)
    assert_contains "$out" "keepalive" "keepalive timer on the client socket"
    assert_match "$out" "keepalive,1min1[0-7]sec" "tcp_keepidle applied"
    assert_pooler_works "after the unresponsive database"
}

# Runs last: no password used anywhere in this suite reaches a Sluice log.
test_zz_no_passwords_in_logs() {
    local hits
    hits=$(find "$TMP/t" -type f \( -name 'sluice.log' -o -name stderr -o -name stdout \) \
        -exec grep -lE 'app_pw|plain_pw|md5_pw|wrong_pw|some_pw|admin_secret_pw|mon_secret_pw|password=' {} + 2>/dev/null)
    [ -z "$hits" ] || fail "passwords found in: $hits"
    [ -n "$(find "$TMP/t" -name sluice.log -size +0 | head -n 1)" ] || fail "no Sluice logs were written"
}

# More tests, in their own files.
# shellcheck source=admin_tests.sh
. "$HERE/admin_tests.sh"
# shellcheck source=prepared_tests.sh
. "$HERE/prepared_tests.sh"

all_tests() {   # test functions in the order they are defined; test_zz_* last
    grep -ho '^test_[A-Za-z0-9_]*()' "${BASH_SOURCE[0]}" "$HERE/admin_tests.sh" \
        "$HERE/prepared_tests.sh" | tr -d '()' |
        grep -v '^test_zz_'
    grep -ho '^test_zz_[A-Za-z0-9_]*()' "${BASH_SOURCE[0]}" | tr -d '()'
}

kill_pid_file() {   # kill_pid_file FILE: stop listed processes (first word = pid)
    local f=$1 pid rest i
    [ -f "$f" ] || return 0
    while read -r pid rest; do
        [ -n "$pid" ] || continue
        is_alive "$pid" || continue
        kill -TERM "$pid" 2>/dev/null
        for ((i = 0; i < 100; i++)); do
            is_alive "$pid" || break
            sleep 0.1
        done
        is_alive "$pid" && kill -KILL "$pid" 2>/dev/null
    done <"$f"
    return 0
}

cleanup() {
    local d
    trap - EXIT INT TERM HUP
    if [ -n "$CUR_PID" ] && is_alive "$CUR_PID"; then
        kill -TERM "$CUR_PID" 2>/dev/null
        wait "$CUR_PID" 2>/dev/null
    fi
    if [ -n "$TMP" ] && [ -d "$TMP" ]; then
        for d in "$TMP"/t/*/; do
            [ -d "$d" ] || continue
            kill_pid_file "$d/sluice.pids"
            kill_pid_file "$d/bg.pids"
        done
        if [ -n "$PG_DIR" ] && [ -d "$PG_DIR" ]; then
            "$ROOT/scripts/pg-temp.sh" destroy "$PG_DIR" >/dev/null 2>&1 ||
                echo "# warning: could not destroy the test cluster in $PG_DIR" >&2
        fi
        if [ "${IT_KEEP:-0}" = 1 ]; then
            echo "# logs kept in $TMP" >&2
        else
            rm -rf -- "$TMP"
        fi
    fi
}

indent() { sed 's/^/#   /'; }

print_failure_context() {   # DIR PG_LOG_OFFSET
    local dir=$1 off=$2 f
    if [ -s "$dir/output" ]; then
        echo "# --- test output (last 15 lines)"
        tail -n 15 "$dir/output" | indent
    fi
    for f in "$dir"/*/sluice.log "$dir"/*/stderr; do
        [ -s "$f" ] || continue
        echo "# --- ${f#"$dir"/} (last 20 lines)"
        tail -n 20 "$f" | indent
    done
    if [ -s "$PGT_LOG" ]; then
        echo "# --- PostgreSQL log during the test (last 20 lines)"
        tail -c +"$((off + 1))" "$PGT_LOG" | tail -n 20 | indent
    fi
}

run_test() {
    local name=$1 dir=$TMP/t/$1 start elapsed rc reason pgoff f rep timed_out=0
    mkdir -p "$dir"
    pgoff=$(stat -c %s "$PGT_LOG" 2>/dev/null || echo 0)
    start=$SECONDS
    (
        T_DIR=$dir
        T_NAME=$name
        cd "$dir" || exit 1
        "$name"
    ) >"$dir/output" 2>&1 </dev/null &
    CUR_PID=$!
    while is_alive "$CUR_PID"; do
        if [ $((SECONDS - start)) -ge "$IT_TIMEOUT" ]; then
            timed_out=1
            kill -TERM "$CUR_PID" 2>/dev/null
            break
        fi
        sleep 0.1
    done
    wait "$CUR_PID"
    rc=$?
    CUR_PID=
    elapsed=$((SECONDS - start))
    # Whatever the test left running is stopped here, by PID.
    kill_pid_file "$dir/sluice.pids"
    kill_pid_file "$dir/bg.pids"
    reason=
    if [ "$timed_out" = 1 ]; then
        reason="timed out after ${IT_TIMEOUT}s"
    elif [ "$rc" -ne 0 ]; then
        reason=$(head -n 1 "$dir/reason" 2>/dev/null)
        [ -n "$reason" ] || reason="exit status $rc"
    fi
    if [ -z "$reason" ]; then
        for f in "$dir"/*/stderr; do
            [ -f "$f" ] || continue
            if rep=$(sanitizer_report "$f"); then
                reason="sanitizer report in ${f#"$dir"/}: $(printf '%s' "$rep" | head -n 1)"
                break
            fi
        done
    fi
    if [ -z "$reason" ]; then
        echo "ok - $name (${elapsed}s)"
        PASSED=$((PASSED + 1))
    else
        echo "not ok - $name: $reason"
        print_failure_context "$dir" "$pgoff"
        FAILED=$((FAILED + 1))
    fi
}

main() {
    local tests=() t known
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP

    if [ $# -gt 0 ]; then
        tests=("$@")
    else
        mapfile -t tests < <(all_tests)
    fi
    known=$(all_tests)

    for t in "$SLUICE" "$BUILD/it_concurrent" "$BUILD/it_extended"; do
        if [ ! -x "$t" ]; then
            echo "not ok - setup: $t not found (build with 'make' first)"
            echo "0 passed, 1 failed"
            exit 1
        fi
    done
    for t in psql pgbench python3 curl; do
        if ! command -v "$t" >/dev/null 2>&1; then
            echo "not ok - setup: $t not found"
            echo "0 passed, 1 failed"
            exit 1
        fi
    done
    # 1,000 pgbench clients need descriptors.
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

    TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-it.XXXXXX") || { echo "0 passed, 1 failed"; exit 1; }
    chmod 0755 "$TMP"   # the cluster's OS user must reach its directory
    mkdir -p "$TMP/t"
    PG_DIR=$TMP/pg
    if ! "$ROOT/scripts/pg-temp.sh" start "$PG_DIR" >"$TMP/pg-start.log" 2>&1; then
        echo "not ok - setup: could not start PostgreSQL"
        indent <"$TMP/pg-start.log"
        echo "0 passed, 1 failed"
        exit 1
    fi
    # shellcheck disable=SC1091
    . "$PG_DIR/env"

    local t0=$SECONDS
    for t in "${tests[@]}"; do
        if ! grep -qx -- "$t" <<<"$known"; then
            echo "not ok - $t: no such test"
            FAILED=$((FAILED + 1))
            continue
        fi
        run_test "$t"
    done
    echo "# total time $((SECONDS - t0))s"
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
}

main "$@"
