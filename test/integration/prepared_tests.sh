# prepared_tests.sh -- named prepared statements in transaction mode
# (max_prepared_statements).  Sourced by run.sh, which provides the helpers;
# psql_admin and admin_col come from admin_tests.sh.

PREP_DB='databases = ( { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; } );'

# 24 libpq clients on a pool of 2, each preparing once and executing its
# statements in many transactions, on whichever server is free.
test_prepared_libpq_many_clients() {
    local i pids=() out bad
    start_sluice main <<EOF
pool_mode = "transaction";
default_pool_size = 2;
admin_users = "admin";
$PREP_DB
EOF
    for ((i = 0; i < 24; i++)); do
        local steps=("prep:pid:SELECT 'pid:' || pg_backend_pid()" "prep:val:SELECT $i + 1000")
        local k
        for ((k = 0; k < 15; k++)); do steps+=("exec:val" "exec:pid" "s:SELECT 1"); done
        "$BUILD/it_extended" "host=127.0.0.1 port=$SLUICE_PORT user=app dbname=app" "${steps[@]}" \
            >"c$i.out" 2>&1 &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || fail "a client failed: $(cat c*.out | grep -v '^TAG' | sort | uniq -c | head)"; done
    bad=$(grep -l "ERROR\|CONNECTION" c*.out | head -n 3)
    [ -z "$bad" ] || fail "errors in $bad: $(grep -h "ERROR\|CONNECTION" c*.out | head -n 3)"
    for ((i = 0; i < 24; i++)); do
        assert_eq 15 "$(grep -cx "$((i + 1000))" "c$i.out")" "client $i: results of its own statement"
    done
    out=$(cat c*.out | grep '^pid:' | sort -u | wc -l)
    assert_int "$out" -le 2 "distinct backend pids (pool of 2)"
    assert_int "$(backend_count app app)" -le 2 "backends"
    # Two distinct statement texts: prepared at most once per server and
    # client, whatever the number of executions.
    assert_int "$(admin_col "SHOW STATS_TOTALS" client_parse_count database=app)" -eq 48 "client parses"
    assert_int "$(admin_col "SHOW STATS_TOTALS" bind_count database=app)" -eq 720 "binds"
    out=$(admin_col "SHOW SERVERS" prepared_statements database=app | sort -n | tail -n 1)
    assert_int "$out" -ge 1 "statements prepared on a server"
    assert_int "$out" -le 48 "statements prepared on a server"

    # pgbench -M prepared: every transaction succeeds through the pool of 2.
    printf '\\set x random(1, 1000)\nSELECT :x::int + 1;\nSELECT 2;\n' >script.sql
    out=$(pgbench -n -M prepared -f script.sql -h 127.0.0.1 -p "$SLUICE_PORT" -U app -c 20 -j 2 -t 50 app 2>&1) ||
        fail "pgbench -M prepared failed: $(printf '%s' "$out" | tail -n 5)"
    assert_contains "$out" "number of failed transactions: 0" "pgbench -M prepared"
    assert_contains "$out" "number of transactions actually processed: 1000/1000" "pgbench -M prepared"
}

# Pipelined Parse/Bind/Execute with an error in the middle, and a statement
# executed on a server that never saw its Parse.
test_prepared_pipeline_errors() {
    local out
    start_sluice main <<EOF
pool_mode = "transaction";
default_pool_size = 2;
$PREP_DB
EOF
    out=$(pgwire script <<'EOF'
open A
open B
x A P s1 SELECT 1 ;; P s2 SELECT 2 ;; B - s1 ;; E - ;; S
x A P bad SELEC 1 ;; B - s2 ;; E - ;; S
x A B - s2 ;; E - ;; B - s1 ;; E - ;; S
q B BEGIN
q B SELECT pg_backend_pid() > b
x A B - s1 ;; E - ;; B - s2 ;; E - ;; S
x A B - nosuch ;; E - ;; S
x A P s3 SELECT 3 ;; D S s3 ;; B - s3 ;; E - ;; C S s1 ;; S
x A B - s1 ;; E - ;; S
x A B - s3 ;; E - ;; S
q B COMMIT
EOF
)
    note "$out"
    local lines
    mapfile -t lines < <(printf '%s\n' "$out" | grep '^A: ' | grep -v 'open')
    assert_eq "A: 1 1 2 D:1 C:SELECT_1 Z:I" "${lines[0]}" "two Parses, Bind, Execute"
    assert_eq "A: E:42601 Z:I" "${lines[1]}" "a failing Parse: the rest is skipped until Sync"
    assert_eq "A: 2 D:2 C:SELECT_1 2 D:1 C:SELECT_1 Z:I" "${lines[2]}" "both statements after the error"
    assert_eq "A: 2 D:1 C:SELECT_1 2 D:2 C:SELECT_1 Z:I" "${lines[3]}" \
        "statements on the other server (B holds the first in a transaction)"
    assert_eq "A: E:26000 Z:I" "${lines[4]}" "unknown statement"
    assert_eq "A: 1 t T 2 D:3 C:SELECT_1 3 Z:I" "${lines[5]}" "Parse, Describe, Bind, Execute, Close"
    assert_eq "A: E:26000 Z:I" "${lines[6]}" "the closed statement is gone"
    assert_eq "A: 2 D:3 C:SELECT_1 Z:I" "${lines[7]}" "the other statement still works"
    assert_pooler_works
}

# DEALLOCATE ALL forgets the client's statements; names can be reused.
test_prepared_deallocate_all() {
    local out
    start_sluice main <<EOF
pool_mode = "transaction";
default_pool_size = 1;
$PREP_DB
EOF
    out=$(pgwire script <<'EOF'
open A
x A P s1 SELECT 11 ;; B - s1 ;; E - ;; S
q A DEALLOCATE ALL
x A B - s1 ;; E - ;; S
x A P s1 SELECT 12 ;; B - s1 ;; E - ;; S
q A DISCARD ALL
x A B - s1 ;; E - ;; S
x A P s1 SELECT 13 ;; B - s1 ;; E - ;; S
EOF
)
    note "$out"
    local lines
    mapfile -t lines < <(printf '%s\n' "$out" | grep '^A: ' | grep -v 'open')
    assert_eq "A: 1 2 D:11 C:SELECT_1 Z:I" "${lines[0]}" "before DEALLOCATE ALL"
    assert_eq "A: E:26000 Z:I" "${lines[1]}" "after DEALLOCATE ALL"
    assert_eq "A: 1 2 D:12 C:SELECT_1 Z:I" "${lines[2]}" "the name prepared again"
    assert_eq "A: E:26000 Z:I" "${lines[3]}" "after DISCARD ALL"
    assert_eq "A: 1 2 D:13 C:SELECT_1 Z:I" "${lines[4]}" "prepared again after DISCARD ALL"
}

# max_prepared_statements = 2: the third statement evicts one on the server;
# every statement keeps working.
test_prepared_eviction() {
    local out i
    start_sluice main <<EOF
pool_mode = "transaction";
default_pool_size = 1;
max_prepared_statements = 2;
admin_users = "admin";
$PREP_DB
EOF
    out=$(
        {
            echo "open A"
            echo "x A P s1 SELECT 1 ;; P s2 SELECT 2 ;; P s3 SELECT 3 ;; S"
            for ((i = 0; i < 4; i++)); do
                echo "x A B - s1 ;; E - ;; B - s2 ;; E - ;; B - s3 ;; E - ;; S"
            done
        } | pgwire script
    )
    note "$out"
    assert_eq 4 "$(printf '%s\n' "$out" | grep -c '^A: 2 D:1 C:SELECT_1 2 D:2 C:SELECT_1 2 D:3 C:SELECT_1 Z:I$')" \
        "rounds with all three statements right"
    assert_eq 2 "$(admin_col "SHOW SERVERS" prepared_statements database=app)" "statements kept on the server"
    assert_int "$(admin_col "SHOW STATS_TOTALS" server_parse_count database=app)" -gt 3 \
        "re-prepared after eviction"
    out=$(psql_direct -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND datname = 'app'")
    assert_eq 1 "$out" "one backend"
}

# DDL that changes a statement's result type: a clear error at worst, never
# a hang, and the statement works again afterwards.
test_prepared_ddl_change() {
    local out
    psql_direct -c "DROP TABLE IF EXISTS prep_ddl; CREATE TABLE prep_ddl (a int); INSERT INTO prep_ddl VALUES (7); GRANT ALL ON prep_ddl TO app;" \
        >/dev/null || fail "create table"
    start_sluice main <<EOF
pool_mode = "transaction";
default_pool_size = 1;
$PREP_DB
EOF
    cat >ddl.script <<'EOF'
open A
x A P s1 SELECT * FROM prep_ddl ;; B - s1 ;; E - ;; S
sleep 1.5
x A B - s1 ;; E - ;; S
x A B - s1 ;; E - ;; S
x A B - s1 ;; E - ;; S
EOF
    timeout 20 "$PYTHON" "$PGWIRE" --port "$SLUICE_PORT" script <ddl.script >ddl.out 2>&1 &
    local runner=$!
    sleep 0.7
    psql_direct -c "ALTER TABLE prep_ddl ADD COLUMN b int DEFAULT 3" >/dev/null || fail "ALTER TABLE"
    wait "$runner"
    out=$(cat ddl.out)
    note "$out"
    local lines
    mapfile -t lines < <(printf '%s\n' "$out" | grep '^A: ' | grep -v 'open')
    assert_eq 4 "${#lines[@]}" "answers (no hang)"
    assert_eq "A: 1 2 D:7 C:SELECT_1 Z:I" "${lines[0]}" "before the DDL"
    case "${lines[1]}" in
    "A: 2 D:7 C:SELECT_1 Z:I" | "A: E:0A000 Z:I") ;;
    *) fail "after the DDL: expected rows or 0A000, got ${lines[1]}" ;;
    esac
    assert_eq "A: 2 D:7 C:SELECT_1 Z:I" "${lines[3]}" "the statement works again"
    psql_direct -c "DROP TABLE prep_ddl" >/dev/null
}

# Real drivers with their default settings: asyncpg (always prepares) and
# the PostgreSQL JDBC driver (server-side prepare after 5 executions).
test_prepared_asyncpg_and_jdbc() {
    local out jar=/usr/share/java/postgresql.jar
    # JDBC sends extra_float_digits at startup: the usual PgBouncer setting.
    start_sluice main <<EOF2
pool_mode = "transaction";
default_pool_size = 2;
admin_users = "admin";
ignore_startup_parameters = "extra_float_digits";
$PREP_DB
EOF2
    # Debian's python3-asyncpg is in the system interpreter's path.
    out=$(/usr/bin/python3 "$HERE/asyncpg_check.py" "$SLUICE_PORT" 12 25 2>&1) || fail "asyncpg: $out"
    assert_eq "OK 1200" "$out" "asyncpg results"
    [ -f "$jar" ] || fail "PostgreSQL JDBC driver not installed ($jar): run scripts/install-deps.sh"
    out=$(java -cp "$jar" "$HERE/JdbcCheck.java" "$SLUICE_PORT" 8 20 2>&1) || fail "JDBC: $out"
    assert_eq "OK 320" "$(printf '%s\n' "$out" | tail -n 1)" "JDBC results"
    assert_int "$(admin_col "SHOW STATS_TOTALS" client_parse_count database=app)" -gt 20 "named Parses seen"
    assert_int "$(backend_count app app)" -le 2 "backends"
}
