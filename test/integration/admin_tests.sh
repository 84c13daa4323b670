# admin_tests.sh -- integration tests of the admin console, statistics,
# the HTTP endpoint and the logs.  Sourced by run.sh, which provides the
# helpers (start_sluice, psql_pooler, wait_until, assert_*, ...).

# psql_admin USER [ARGS...]: the console over TCP (tuples only, '|' separated).
psql_admin() {
    local user=$1
    shift
    psql -X -q -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -h 127.0.0.1 -p "$SLUICE_PORT" \
        -U "$user" -d sluice "$@"
}

# admin_col SHOW_CMD COLUMN [FILTER_COLUMN=VALUE...]: one column of a SHOW
# result (every matching row), read by column name through psql's header.
admin_col() {
    local cmd=$1 col=$2
    shift 2
    psql -X -q -A -F '|' -P footer=off -h 127.0.0.1 -p "$SLUICE_PORT" -U admin -d sluice \
        -c "$cmd" | "$PYTHON" -c '
import sys
rows = [l.rstrip("\n").split("|") for l in sys.stdin]
head, rows = rows[0], rows[1:]
col = sys.argv[1]
filters = [a.split("=", 1) for a in sys.argv[2:]]
for r in rows:
    d = dict(zip(head, r))
    if all(d.get(k) == v for k, v in filters):
        print(d[col])
' "$col" "$@"
}

# Predicates for wait_until (re-evaluated on every try).
pool_col_is() { [ "$(admin_col "SHOW POOLS" "$1" database=app)" = "$2" ]; }
readyz_is() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/readyz")" = "$2" ]; }
sluice_gone() { ! is_alive "$SLUICE_PID"; }
avg_xacts_positive() { [ "$(admin_col "SHOW STATS_AVERAGES" xact_count database=app)" -gt 0 ]; }

ADMIN_DB='databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );'

# Who may use the console, and how it answers.
test_admin_access() {
    local out
    mkdir -p main
    cat >main/users.txt <<'EOF'
"admin" "admin_secret_pw"
"mon" "mon_secret_pw"
"app" "app_pw"
EOF
    start_sluice main <<EOF
auth_type = "md5";
auth_file = "users.txt";
admin_users = ["admin"];
stats_users = "mon";
$ADMIN_DB
EOF
    out=$(PGPASSWORD=admin_secret_pw psql_admin admin -c "SHOW VERSION" 2>&1) || fail "admin login: $out"
    assert_match "$out" '^Sluice [0-9]+\.[0-9]+' "SHOW VERSION"
    out=$(PGPASSWORD=admin_secret_pw psql -X -q -At -h 127.0.0.1 -p "$SLUICE_PORT" -U admin -d pgbouncer \
        -c "SHOW VERSION" 2>&1) || fail "pgbouncer alias: $out"
    assert_match "$out" '^Sluice ' "SHOW VERSION through the pgbouncer alias"

    # Not in admin_users/stats_users: refused before any password is asked.
    out=$(pgwire --user app --db sluice connect 2>&1)
    assert_contains "$out" "ERROR C=28000" "non-admin user refused (before any password request)"
    assert_contains "$out" "not allowed" "non-admin user refused"
    out=$(PGPASSWORD=wrong_pw psql_admin admin -c "SHOW POOLS" 2>&1) && fail "wrong password accepted"
    assert_contains "$out" "password authentication failed" "admin with a wrong password"

    # stats_users: SHOW yes, control commands no.
    out=$(PGPASSWORD=mon_secret_pw psql_admin mon -c "SHOW POOLS" 2>&1) || fail "stats user SHOW: $out"
    out=$(PGPASSWORD=mon_secret_pw psql_admin mon -c "PAUSE" 2>&1) && fail "stats user could PAUSE"
    assert_contains "$out" "42501" "stats user running PAUSE"
    assert_contains "$out" "admin access needed" "stats user running PAUSE"

    # Unknown commands list the valid ones; harmless driver SETs pass.
    out=$(PGPASSWORD=admin_secret_pw psql_admin admin -c "SHOW NONSENSE" 2>&1) && fail "SHOW NONSENSE worked"
    assert_contains "$out" "42601" "unknown SHOW"
    assert_contains "$out" "SHOW HELP" "unknown SHOW"
    assert_contains "$out" "KILL_CLIENT" "the error lists the valid commands"
    out=$(PGPASSWORD=admin_secret_pw psql_admin admin -c "SET extra_float_digits = 3" \
        -c "SET client_encoding TO 'UTF8'" -c "SHOW client_encoding" 2>&1) || fail "driver SETs: $out"
    assert_contains "$out" "SET ignored" "driver SET"
    assert_contains "$out" "UTF-8" "SHOW client_encoding"

    # Same OS user over the unix socket: an admin without a password.
    out=$(psql -X -q -At -h "$SLUICE_SOCK" -p "$SLUICE_PORT" -U someone_else -d sluice \
        -c "RELOAD" -c "SHOW STATE" 2>&1) || fail "unix socket console: $out"
    assert_contains "$out" "active|yes" "SHOW STATE over the unix socket"
    out=$(PGPASSWORD=app_pw psql_pooler -c "SELECT 'still-works'" 2>&1)
    assert_eq still-works "$out" "a normal client after the console checks"
}

# SHOW POOLS / CLIENTS / SERVERS while one client runs a query on the only
# server and another waits for it.
test_admin_show_pools_clients_servers() {
    local head out
    start_sluice main <<EOF
pool_mode = "transaction";
default_pool_size = 1;
admin_users = "admin";
$ADMIN_DB
EOF
    head=$(psql -X -q -A -h 127.0.0.1 -p "$SLUICE_PORT" -U admin -d sluice -c "SHOW POOLS" | head -n 1)
    assert_eq "database|user|cl_active|cl_waiting|cl_active_cancel_req|cl_waiting_cancel_req|sv_active|sv_active_cancel|sv_being_canceled|sv_idle|sv_used|sv_tested|sv_login|maxwait|maxwait_us|pool_mode|load_balance_hosts" \
        "$head" "SHOW POOLS columns (PgBouncer 1.25)"
    head=$(psql -X -q -A -h 127.0.0.1 -p "$SLUICE_PORT" -U admin -d sluice -c "SHOW CLIENTS" | head -n 1)
    assert_eq "type|user|database|replication|state|addr|port|local_addr|local_port|connect_time|request_time|wait|wait_us|close_needed|ptr|link|remote_pid|tls|application_name|prepared_statements|id" \
        "$head" "SHOW CLIENTS columns"

    bg_start "$T_DIR/a.out" psql -X -At -h 127.0.0.1 -p "$SLUICE_PORT" -U app -d app \
        -c "SELECT 'a-done' FROM pg_sleep(3)"
    wait_until 10 query_is_active "SELECT 'a-done' FROM pg_sleep(3)" || fail "A's query never ran"
    bg_start "$T_DIR/b.out" psql -X -At -h 127.0.0.1 -p "$SLUICE_PORT" -U app -d app -c "SELECT 'b-done'"
    wait_until 10 pool_col_is cl_waiting 1 ||
        fail "B never showed as waiting: $(psql_admin admin -c 'SHOW POOLS')"
    assert_eq 1 "$(admin_col "SHOW POOLS" cl_active database=app)" "cl_active (A)"
    assert_eq 1 "$(admin_col "SHOW POOLS" sv_active database=app)" "sv_active"
    assert_eq 0 "$(admin_col "SHOW POOLS" sv_idle database=app)" "sv_idle"
    assert_eq transaction "$(admin_col "SHOW POOLS" pool_mode database=app)" "pool_mode"
    out=$(admin_col "SHOW CLIENTS" state database=app | sort | tr '\n' ' ')
    assert_eq "active waiting " "$out" "client states"
    out=$(admin_col "SHOW SERVERS" link database=app)
    assert_match "$out" '^0x[0-9a-f]+$' "the active server's link"
    assert_eq "$(admin_col "SHOW CLIENTS" ptr database=app state=active)" "$out" \
        "server link = the active client's ptr"
    assert_eq 1 "$(admin_col "SHOW SERVERS" state database=app | grep -c '^active$')" "one active server"

    wait_until 15 grep -q b-done "$T_DIR/b.out" || fail "B never ran: $(cat "$T_DIR/b.out")"
    grep -q a-done "$T_DIR/a.out" || fail "A's result: $(cat "$T_DIR/a.out")"
    wait_until 5 pool_col_is sv_idle 1 || fail "server not idle afterwards"
    assert_eq 0 "$(admin_col "SHOW POOLS" cl_waiting database=app)" "cl_waiting afterwards"
    # maxwait counted B's wait, and the wait histogram saw it.
    out=$(admin_col "SHOW LATENCY" wait_max_us database=app)
    assert_int "$out" -gt 100000 "SHOW LATENCY wait_max_us (B waited for A's 3 s query)"
}

# SHOW STATS totals after a known number of transactions; averages and the
# log_stats line after a stats period.
test_admin_show_stats_totals() {
    local i out
    start_sluice main <<EOF
pool_mode = "transaction";
admin_users = "admin";
stats_period = 1;
log_format = "json";
$ADMIN_DB
EOF
    for ((i = 0; i < 30; i++)); do echo "SELECT $i;"; done | psql_pooler >/dev/null || fail "queries failed"
    printf 'BEGIN;\nSELECT 1;\nSELECT 2;\nCOMMIT;\n' | psql_pooler >/dev/null || fail "transaction failed"
    # 30 one-statement transactions + 1 of four statements.
    assert_eq 31 "$(admin_col "SHOW STATS_TOTALS" xact_count database=app)" "xact_count"
    assert_eq 34 "$(admin_col "SHOW STATS_TOTALS" query_count database=app)" "query_count"
    assert_int "$(admin_col "SHOW STATS_TOTALS" bytes_received database=app)" -gt 300 "bytes_received"
    assert_int "$(admin_col "SHOW STATS_TOTALS" bytes_sent database=app)" -gt 300 "bytes_sent"
    assert_int "$(admin_col "SHOW STATS" total_query_time database=app)" -gt 0 "total_query_time"
    assert_eq 31 "$(admin_col "SHOW TOTALS" value name=total_xact_count)" "SHOW TOTALS total_xact_count"
    assert_eq 34 "$(admin_col "SHOW LATENCY" query_count database=app)" "SHOW LATENCY query_count"
    # Three clients in a transaction at once hold three input buffers; they
    # give them back when done, and a few are kept as spares (the console's
    # own SHOW MEM takes one), counted in memtotal.
    local spare size total pids=()
    for i in 1 2 3; do
        psql_pooler -c "SELECT pg_sleep(0.5)" >/dev/null &
        pids+=($!)
    done
    wait "${pids[@]}" || fail "the concurrent clients failed"
    spare=$(admin_col "SHOW MEM" free name=iobuf_cache)
    size=$(admin_col "SHOW MEM" size name=iobuf_cache)
    total=$(admin_col "SHOW MEM" memtotal name=iobuf_cache)
    assert_int "$spare" -ge 1 "SHOW MEM iobuf_cache free (spare buffers)"
    assert_int "$spare" -le 32 "SHOW MEM iobuf_cache free (at most 32 spares)"
    assert_int "$total" -ge $((spare * size)) "SHOW MEM iobuf_cache memtotal counts the spares"
    # The period that held the queries ends within a second: averages and
    # a JSON stats line with the figures as keys.
    wait_until 5 grep -q '"xacts_per_s":"[1-9]' "$SLUICE_LOG" ||
        fail "no stats line with transactions: $(grep xacts_per_s "$SLUICE_LOG" | tail -n 3)"
    wait_until 5 grep -q '"database":"app","xacts_per_s"' "$SLUICE_LOG" || fail "no JSON stats line"
    out=$(grep -m 1 '"xacts_per_s"' "$SLUICE_LOG")
    assert_contains "$out" '"wait_us"' "stats line keys"
}

# PAUSE waits for the running query, closes the servers, holds new queries
# until RESUME.
test_admin_pause_resume() {
    local out
    start_sluice main <<EOF
pool_mode = "transaction";
admin_users = "admin";
$ADMIN_DB
EOF
    psql_pooler -c "SELECT 1" >/dev/null || fail "warm-up"
    bg_start "$T_DIR/long.out" psql -X -At -h 127.0.0.1 -p "$SLUICE_PORT" -U app -d app \
        -c "SELECT 'long-done' FROM pg_sleep(2)"
    local long=$BG_PID
    wait_until 10 query_is_active "SELECT 'long-done' FROM pg_sleep(2)" || fail "long query never ran"
    out=$(psql_admin admin -c "PAUSE" 2>&1) || fail "PAUSE: $out"
    # PAUSE returned only once the running query was done.
    grep -q long-done "$T_DIR/long.out" || fail "PAUSE returned before the running query finished"
    assert_eq 0 "$(backend_count app app)" "backends while paused"
    assert_eq "paused|yes" "$(psql_admin admin -c "SHOW STATE" | grep '^paused')" "SHOW STATE"
    assert_eq 1 "$(admin_col "SHOW DATABASES" paused name=app)" "SHOW DATABASES paused"
    out=$(psql_admin admin -c "PAUSE" 2>&1) && fail "second PAUSE accepted"
    assert_contains "$out" "already paused" "second PAUSE"

    bg_start "$T_DIR/q.out" psql -X -At -h 127.0.0.1 -p "$SLUICE_PORT" -U app -d app -c "SELECT 'resumed'"
    wait_until 10 pool_col_is cl_waiting 1 || fail "query not waiting"
    sleep 0.5
    assert_eq "" "$(cat "$T_DIR/q.out")" "query output while paused"
    out=$(psql_admin admin -c "RESUME" 2>&1) || fail "RESUME: $out"
    wait_until 10 grep -q resumed "$T_DIR/q.out" || fail "query did not run after RESUME"
    wait "$long" 2>/dev/null
    # PAUSE of one database only.
    out=$(psql_admin admin -c "PAUSE app" -c "SHOW STATE" 2>&1) || fail "PAUSE app: $out"
    assert_contains "$out" "active|yes" "PAUSE db leaves the pooler active"
    out=$(psql_admin admin -c "PAUSE nosuchdb" 2>&1) && fail "PAUSE of an unknown database"
    assert_contains "$out" "3D000" "PAUSE nosuchdb"
    psql_admin admin -c "RESUME app" >/dev/null || fail "RESUME app"
    assert_pooler_works
}

# KILL_CLIENT drops exactly one client; KILL drops every client of a
# database and pauses it; DISABLE refuses new clients.
test_admin_kill_disable() {
    local id1 out
    start_sluice main <<EOF
admin_users = "admin";
$ADMIN_DB
EOF
    bg_start "$T_DIR/h1.out" "$PYTHON" "$PGWIRE" --port "$SLUICE_PORT" connect --hold 20 --param application_name=holder1
    bg_start "$T_DIR/h2.out" "$PYTHON" "$PGWIRE" --port "$SLUICE_PORT" connect --hold 20 --param application_name=holder2
    wait_until 10 grep -q '^OK' "$T_DIR/h1.out" || fail "holder 1: $(cat "$T_DIR/h1.out")"
    wait_until 10 grep -q '^OK' "$T_DIR/h2.out" || fail "holder 2: $(cat "$T_DIR/h2.out")"
    id1=$(admin_col "SHOW CLIENTS" id application_name=holder1)
    assert_match "$id1" '^[0-9]+$' "holder 1's id"
    out=$(psql_admin admin -c "KILL_CLIENT $id1" 2>&1) || fail "KILL_CLIENT: $out"
    wait_until 10 grep -q '57P01' "$T_DIR/h1.out" || fail "holder 1 not told: $(cat "$T_DIR/h1.out")"
    assert_eq 1 "$(admin_col "SHOW CLIENTS" id database=app | wc -l)" "clients left after KILL_CLIENT"
    assert_eq "" "$(admin_col "SHOW CLIENTS" id application_name=holder1)" "holder 1 gone"
    out=$(psql_admin admin -c "KILL_CLIENT 999999" 2>&1) && fail "KILL_CLIENT of an unknown id"
    assert_contains "$out" "client not found" "KILL_CLIENT unknown id"

    out=$(psql_admin admin -c "KILL app" 2>&1) || fail "KILL app: $out"
    wait_until 10 grep -q '57P01' "$T_DIR/h2.out" || fail "holder 2 not killed: $(cat "$T_DIR/h2.out")"
    assert_eq 1 "$(admin_col "SHOW DATABASES" paused name=app)" "KILL pauses the database"
    psql_admin admin -c "RESUME app" >/dev/null || fail "RESUME after KILL"

    out=$(psql_admin admin -c "DISABLE app" 2>&1) || fail "DISABLE: $out"
    assert_eq 1 "$(admin_col "SHOW DATABASES" disabled name=app)" "SHOW DATABASES disabled"
    out=$(pgwire connect 2>&1)
    assert_contains "$out" "ERROR C=57P03" "client of a disabled database"
    psql_admin admin -c "ENABLE app" >/dev/null || fail "ENABLE"
    assert_pooler_works
}

# RECONNECT replaces the backends; WAIT_CLOSE waits for the old ones.
test_admin_reconnect() {
    local before after out
    start_sluice main <<EOF
pool_mode = "transaction";
default_pool_size = 1;
admin_users = "admin";
$ADMIN_DB
EOF
    before=$(psql_pooler -c "SELECT pg_backend_pid()") || fail "first query"
    out=$(psql_admin admin -c "RECONNECT app" -c "WAIT_CLOSE app" 2>&1) || fail "RECONNECT: $out"
    wait_until 10 backend_gone "$before" || fail "old backend $before still there"
    after=$(psql_pooler -c "SELECT pg_backend_pid()") || fail "query after RECONNECT"
    assert_ne "$before" "$after" "backend after RECONNECT"
    assert_eq 0 "$(admin_col "SHOW SERVERS" close_needed database=app)" "close_needed of the new server"
    # A server busy during RECONNECT is closed when released.
    bg_start "$T_DIR/s.out" psql -X -At -h 127.0.0.1 -p "$SLUICE_PORT" -U app -d app \
        -c "SELECT 'slept' FROM pg_sleep(1)"
    wait_until 10 query_is_active "SELECT 'slept' FROM pg_sleep(1)" || fail "slow query never ran"
    psql_admin admin -c "RECONNECT" >/dev/null || fail "RECONNECT (all)"
    assert_eq 1 "$(admin_col "SHOW SERVERS" close_needed database=app)" "close_needed while busy"
    out=$(psql_admin admin -c "WAIT_CLOSE" 2>&1) || fail "WAIT_CLOSE: $out"
    grep -q slept "$T_DIR/s.out" || fail "WAIT_CLOSE returned before the busy server was released"
    wait_until 10 backend_gone "$after" || fail "busy backend $after not closed after release"
}

# SET changes reloadable settings (SHOW CONFIG shows it) until RELOAD.
test_admin_set_config_reload() {
    local out
    start_sluice main <<EOF
admin_users = "admin";
default_pool_size = 20;
$ADMIN_DB
EOF
    out=$(psql_admin admin -c "SET default_pool_size = 7" 2>&1) || fail "SET: $out"
    assert_eq "7|20|yes" "$(psql_admin admin -c "SHOW CONFIG" | grep '^default_pool_size|' | cut -d'|' -f2-)" \
        "SHOW CONFIG value|default|changeable after SET"
    out=$(psql_admin admin -c "SET listen_port = 1234" 2>&1) && fail "SET of a restart-only setting"
    assert_contains "$out" "restart" "SET listen_port"
    out=$(psql_admin admin -c "SET no_such_setting = 1" 2>&1) && fail "SET of an unknown setting"
    assert_contains "$out" "42704" "SET unknown"
    out=$(psql_admin admin -c "SET default_pool_size = many" 2>&1) && fail "SET of a bad value"
    assert_contains "$out" "22023" "SET bad value"
    assert_eq "no" "$(psql_admin admin -c "SHOW CONFIG" | grep '^listen_port|' | cut -d'|' -f4)" "listen_port changeable"
    out=$(psql_admin admin -c "RELOAD" 2>&1) || fail "RELOAD: $out"
    assert_eq "20" "$(psql_admin admin -c "SHOW CONFIG" | grep '^default_pool_size|' | cut -d'|' -f2)" \
        "RELOAD restores the file's value"
    echo 'this is not a config' >>"$SLUICE_CONF"
    out=$(psql_admin admin -c "RELOAD" 2>&1) && fail "RELOAD of a broken file succeeded"
    assert_contains "$out" "F0000" "RELOAD of a broken file"
    assert_pooler_works
}

# psycopg 3 and JDBC use the extended protocol on the console too.
test_admin_extended_protocol() {
    local out conn
    start_sluice main <<EOF
admin_users = "admin";
$ADMIN_DB
EOF
    psql_pooler -c "SELECT 1" >/dev/null || fail "warm-up"
    conn="host=127.0.0.1 port=$SLUICE_PORT user=admin dbname=sluice"
    out=$("$BUILD/it_extended" "$conn" "x:SET extra_float_digits = 3" "x:SHOW VERSION" \
        "x:SHOW BOGUS" "x:SHOW POOLS" "prep:s1:SHOW DATABASES" "desc:s1" "exec:s1" \
        "s:SHOW STATE") || fail "it_extended: $out"
    note "$out"
    assert_contains "$out" "TAG SET" "extended SET"
    assert_match "$(printf '%s\n' "$out" | grep '^Sluice ')" '^Sluice ' "extended SHOW VERSION"
    assert_contains "$out" "ERROR 42601" "extended unknown command"
    assert_match "$(printf '%s\n' "$out" | grep '^app|app|')" '^app\|app\|0\|0\|' "extended SHOW POOLS row"
    assert_contains "$out" "COLUMNS name:25 host:25 port:23 database:25" "Describe of a prepared SHOW"
    assert_contains "$out" "active|yes" "a simple query after the extended ones"
}

# /metrics parses as Prometheus text and counts what happened; /healthz;
# /readyz turns 503 while the database is down and 200 when it is back.
test_metrics_endpoint() {
    local hp out i
    hp=$(free_port)
    start_sluice main <<EOF
pool_mode = "transaction";
admin_users = "admin";
http_port = $hp;
server_login_retry = 1;
$ADMIN_DB
EOF
    for ((i = 0; i < 25; i++)); do echo "SELECT $i;"; done | psql_pooler >/dev/null || fail "queries failed"
    curl -sf "http://127.0.0.1:$hp/metrics" >metrics.txt || fail "GET /metrics failed"
    "$PYTHON" "$HERE/promcheck.py" metrics.txt || fail "/metrics is not valid Prometheus text: $(head -n 20 metrics.txt)"
    out=$("$PYTHON" "$HERE/promcheck.py" metrics.txt \
        --get 'sluice_transactions_total{database="app",user="app"}' \
        --get 'sluice_queries_total{database="app",user="app"}' \
        --get 'sluice_query_duration_seconds_count{database="app",user="app"}' \
        --get 'sluice_pool_server_idle_connections{database="app",user="app"}' \
        --get 'sluice_query_duration_seconds_bucket{database="app",user="app",le="+Inf"}') ||
        fail "series missing: $out"
    assert_eq "25 25 25 1 25" "$(echo $out)" "metric values"
    assert_contains "$(cat metrics.txt)" "# TYPE sluice_wait_duration_seconds histogram" "wait histogram"
    assert_contains "$(cat metrics.txt)" "sluice_process_resident_memory_bytes" "process memory"
    assert_eq 200 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$hp/healthz")" "/healthz"
    assert_eq 200 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$hp/readyz")" "/readyz"
    assert_eq 404 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$hp/nope")" "unknown path"

    "$ROOT/scripts/pg-temp.sh" stop "$PGT_DIR" >/dev/null 2>&1 || fail "could not stop PostgreSQL"
    wait_until 10 readyz_is "$hp" 503
    local rc=$?
    out=$(curl -s "http://127.0.0.1:$hp/readyz")
    "$ROOT/scripts/pg-temp.sh" start "$PGT_DIR" >/dev/null 2>&1 || fail "could not restart PostgreSQL"
    [ $rc = 0 ] || fail "/readyz did not turn 503 with the database stopped: $out"
    assert_contains "$out" "database app unreachable" "/readyz reason"
    wait_until 15 readyz_is "$hp" 200 ||
        fail "/readyz did not recover: $(curl -s "http://127.0.0.1:$hp/readyz")"
    assert_pooler_works "after the database restart"
}

# SHUTDOWN WAIT_FOR_CLIENTS: no new clients, exit when the last one leaves.
test_admin_shutdown_wait_for_clients() {
    local out
    start_sluice main <<EOF
admin_users = "admin";
$ADMIN_DB
EOF
    bg_start "$T_DIR/h.out" "$PYTHON" "$PGWIRE" --port "$SLUICE_PORT" connect --hold 2
    wait_until 10 grep -q '^OK' "$T_DIR/h.out" || fail "holder: $(cat "$T_DIR/h.out")"
    out=$(psql_admin admin -c "SHUTDOWN WAIT_FOR_CLIENTS" 2>&1) || fail "SHUTDOWN WAIT_FOR_CLIENTS: $out"
    is_alive "$SLUICE_PID" || fail "exited while a client was connected"
    out=$(psql_pooler -c "SELECT 1" 2>&1) && fail "a new client got in during the shutdown"
    wait_until 15 sluice_gone || fail "did not exit after the last client left"
    grep -q HELD "$T_DIR/h.out" || fail "the connected client was disturbed: $(cat "$T_DIR/h.out")"
    grep -q "no client connection left" "$SLUICE_LOG" || fail "no shutdown line in the log"
}

# SHUTDOWN WAIT_FOR_SERVERS: the running query finishes, then Sluice exits.
test_admin_shutdown_wait_for_servers() {
    local out
    start_sluice main <<EOF
pool_mode = "transaction";
admin_users = "admin";
$ADMIN_DB
EOF
    bg_start "$T_DIR/q.out" psql -X -At -h 127.0.0.1 -p "$SLUICE_PORT" -U app -d app \
        -c "SELECT 'finished' FROM pg_sleep(1)"
    wait_until 10 query_is_active "SELECT 'finished' FROM pg_sleep(1)" || fail "query never ran"
    out=$(psql_admin admin -c "SHUTDOWN WAIT_FOR_SERVERS" 2>&1) || fail "SHUTDOWN WAIT_FOR_SERVERS: $out"
    is_alive "$SLUICE_PID" || fail "exited while a server was busy"
    wait_until 15 sluice_gone || fail "did not exit after the server was released"
    wait_until 5 grep -q finished "$T_DIR/q.out" || fail "the running query was cut off: $(cat "$T_DIR/q.out")"
    grep -q "no server connection left" "$SLUICE_LOG" || fail "no shutdown line in the log"
}
