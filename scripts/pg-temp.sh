#!/usr/bin/env bash
# pg-temp.sh -- a throwaway PostgreSQL 15 cluster for `make run`, the
# integration tests and the benchmark.
#
# Usage:
#   scripts/pg-temp.sh start   DIR   create the cluster if needed and start it
#                                    (no-op if it is already running)
#   scripts/pg-temp.sh stop    DIR   fast shutdown (no-op if not running)
#   scripts/pg-temp.sh restart DIR   stop, then start again on the same port
#   scripts/pg-temp.sh status  DIR   exit 0 if running, 3 if not
#   scripts/pg-temp.sh destroy DIR   stop, then delete DIR (only if this
#                                    script created it)
#   scripts/pg-temp.sh env     DIR   print `export PGT_...=` lines (stdout)
#
# Layout of DIR:
#   data/           the cluster (settings in data/pg-temp.conf)
#   sock/           unix socket directory
#   certs/          test CA and certificates (scripts/gen-test-certs.sh)
#   postgres.log    server log
#   port            the TCP port
#   env             the `env` output, written by `start`: `. DIR/env`
#   .pg-temp-owned  marker: DIR was created by this script
#   .lock           serialises concurrent starts
#
# Variables written by `env` (and to DIR/env):
#   PGT_DIR PGT_PORT PGT_SOCK PGT_CERTS PGT_BIN PGT_LOG PGT_OS_USER
#   PGT_LISTEN (listen_addresses)  PGT_IPV6 (1 if ::1 is listened on, else 0)
#
# Settings (environment, all optional):
#   PG_BIN                binaries (default /usr/lib/postgresql/15/bin)
#   PGT_PORT              TCP port (default: the port remembered in
#                         DIR/port, or a free port for a new cluster; a
#                         remembered port that is taken by now is replaced
#                         by a free one).  Ignored when PGT_DIR is set to
#                         another directory, i.e. when it came from
#                         sourcing another cluster's env file.
#   PGT_MAX_CONNECTIONS   default 300       } applied on every start
#   PGT_SHARED_BUFFERS    default 128MB     }
#   PGT_OS_USER           OS user that runs the server when invoked as root
#                         (default: postgres if it exists, else a system
#                         user "sluicepg" is created).  PostgreSQL refuses
#                         to run as root.  As a normal user the server runs
#                         as that user.
#
# The cluster:
#   listens on 127.0.0.1 and ::1 (just 127.0.0.1 if ::1 is unavailable) and
#   on the unix socket DIR/sock; SSL on (server.crt/server.key, ssl_ca_file
#   ca.crt from DIR/certs).
#   pg_hba: unix socket trust; TCP scram-sha-256 (md5 for role md5user).
#   Roles: postgres (superuser, password "postgres"), app (password
#   "app_pw", SCRAM), md5user (password "md5_pw", stored as MD5).
#   Database app, owned by app.
#   DURABILITY IS OFF (fsync, synchronous_commit, full_page_writes): this is
#   a throwaway cluster for tests, never put real data in it.
#
# Messages go to stderr; only `env` writes to stdout.
set -euo pipefail

PROG=pg-temp
MARKER=.pg-temp-owned
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() { echo "$PROG: $*" >&2; exit 1; }
say() { echo "$PROG: $*" >&2; }

usage() {
    echo "usage: $0 start|stop|restart|status|destroy|env DIR" >&2
    exit 2
}

[ $# -eq 2 ] || usage
CMD=$1
case "$CMD" in
    start|stop|restart|status|destroy|env) ;;
    *) usage ;;
esac
[ -n "$2" ] || usage

DIR=$(realpath -m -- "$2")
[ "$DIR" != / ] || die "refusing to use / as the cluster directory"
DATA=$DIR/data
SOCK=$DIR/sock
CERTS=$DIR/certs
LOGF=$DIR/postgres.log
PORTF=$DIR/port
ENVF=$DIR/env
CONF_NAME=pg-temp.conf

BIN=${PG_BIN:-${PGT_BIN:-/usr/lib/postgresql/15/bin}}
MAXCONN=${PGT_MAX_CONNECTIONS:-300}
SHBUF=${PGT_SHARED_BUFFERS:-128MB}

# PGT_PORT is an input, but also an output of `env`: do not let the port of
# another cluster (from sourcing its env file) leak into this one.
REQ_PORT=${PGT_PORT:-}
if [ -n "${PGT_DIR:-}" ] && [ "$(realpath -m -- "$PGT_DIR")" != "$DIR" ]; then
    REQ_PORT=
fi
if [ -n "$REQ_PORT" ]; then
    if ! [[ "$REQ_PORT" =~ ^[0-9]+$ ]] || [ "$REQ_PORT" -lt 1 ] || [ "$REQ_PORT" -gt 65535 ]; then
        die "PGT_PORT='$REQ_PORT' is not a valid TCP port"
    fi
fi

IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1

# ---------------------------------------------------------------------------
# The OS user that owns and runs the cluster.

OS_USER=
OS_GROUP=

pick_os_user() {
    if [ -d "$DATA" ]; then
        # An existing cluster belongs to whoever owns its data directory.
        OS_USER=$(stat -c %U -- "$DATA")
        [ "$OS_USER" != UNKNOWN ] ||
            die "$DATA is owned by uid $(stat -c %u -- "$DATA"), which has no user name"
    elif [ "$IS_ROOT" -eq 1 ]; then
        if [ -n "${PGT_OS_USER:-}" ]; then
            OS_USER=$PGT_OS_USER
            id -u -- "$OS_USER" >/dev/null 2>&1 ||
                die "PGT_OS_USER='$OS_USER' does not exist"
        elif id -u postgres >/dev/null 2>&1; then
            OS_USER=postgres
        else
            OS_USER=sluicepg
            if ! id -u "$OS_USER" >/dev/null 2>&1; then
                say "creating system user $OS_USER to run PostgreSQL"
                useradd --system --no-create-home --home-dir /nonexistent \
                    --shell /usr/sbin/nologin "$OS_USER" 2>/dev/null ||
                    id -u "$OS_USER" >/dev/null 2>&1 ||
                    die "could not create system user $OS_USER (set PGT_OS_USER to an existing unprivileged user)"
            fi
        fi
    else
        OS_USER=$(id -un)
        if [ -n "${PGT_OS_USER:-}" ] && [ "$PGT_OS_USER" != "$OS_USER" ]; then
            die "PGT_OS_USER='$PGT_OS_USER' needs root; run as that user or unset it"
        fi
    fi
    [ "$(id -u -- "$OS_USER")" -ne 0 ] ||
        die "PostgreSQL cannot run as root; set PGT_OS_USER to an unprivileged user"
    OS_GROUP=$(id -gn -- "$OS_USER")
}

# Run a command as the cluster owner, from a directory it can access.
# fd 9 (the start lock) is closed so that the postmaster does not inherit it.
as_owner() {
    if [ "$IS_ROOT" -eq 1 ]; then
        (cd / && exec setpriv --reuid="$OS_USER" --regid="$OS_GROUP" --init-groups -- "$@" 9>&-)
    else
        "$@" 9>&-
    fi
}

# ---------------------------------------------------------------------------
# Helpers

need_bin() {
    local b
    for b in initdb pg_ctl postgres psql; do
        [ -x "$BIN/$b" ] ||
            die "$BIN/$b not found (install postgresql-15 with scripts/install-deps.sh, or set PG_BIN)"
    done
}

is_running() {
    [ -f "$DATA/PG_VERSION" ] || return 1
    as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

have_ipv6() {   # can we bind ::1 on this machine?
    python3 - <<'PY' >/dev/null 2>&1
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.bind(("::1", 0))
PY
}

port_free() {   # port_free PORT V6(0/1): can a server bind it?
    python3 - "$1" "$2" <<'PY' >/dev/null 2>&1
import socket, sys
port, v6 = int(sys.argv[1]), sys.argv[2] == "1"
fams = [(socket.AF_INET, "127.0.0.1")] + ([(socket.AF_INET6, "::1")] if v6 else [])
for fam, addr in fams:
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.close()
PY
}

free_port() {   # free_port V6(0/1): print a port free on 127.0.0.1 (and ::1)
    python3 - "$1" <<'PY'
import socket, sys
v6 = sys.argv[1] == "1"
for _ in range(100):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    try:
        if v6:
            t = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            t.bind(("::1", port))
            t.close()
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    sys.exit(0)
sys.exit(1)
PY
}

shq() {   # quote a value for the shell, readably
    if [[ "$1" =~ ^[A-Za-z0-9_./:,@%+=-]*$ ]]; then
        printf '%s' "$1"
    else
        printf "'%s'" "${1//\'/\'\\\'\'}"
    fi
}

pgq() {   # quote a string for postgresql.conf
    printf "'%s'" "${1//\'/\'\'}"
}

read_port() {
    [ -s "$PORTF" ] || die "$PORTF missing: has the cluster in $DIR been started?"
    cat -- "$PORTF"
}

write_env() {   # write_env PORT: print the export lines
    local port=$1 listen ipv6
    listen=$(sed -n "s/^listen_addresses = '\(.*\)'$/\1/p" "$DATA/$CONF_NAME" 2>/dev/null || true)
    ipv6=0
    case ",$listen," in *,::1,*) ipv6=1 ;; esac
    printf 'export PGT_DIR=%s\n' "$(shq "$DIR")"
    printf 'export PGT_PORT=%s\n' "$(shq "$port")"
    printf 'export PGT_SOCK=%s\n' "$(shq "$SOCK")"
    printf 'export PGT_CERTS=%s\n' "$(shq "$CERTS")"
    printf 'export PGT_BIN=%s\n' "$(shq "$BIN")"
    printf 'export PGT_LOG=%s\n' "$(shq "$LOGF")"
    printf 'export PGT_OS_USER=%s\n' "$(shq "$OS_USER")"
    printf 'export PGT_LISTEN=%s\n' "$(shq "$listen")"
    printf 'export PGT_IPV6=%s\n' "$(shq "$ipv6")"
}

psql_local() {   # psql as superuser over the unix socket (trust)
    as_owner "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$1" \
        -U postgres -d postgres "${@:2}"
}

# ---------------------------------------------------------------------------
# start

prepare_dir() {
    if [ ! -e "$DIR" ]; then
        (umask 022 && mkdir -p -- "$DIR") || die "cannot create $DIR"
    fi
    [ -d "$DIR" ] || die "$DIR exists and is not a directory"
    if [ ! -e "$DIR/$MARKER" ]; then
        if [ -n "$(ls -A -- "$DIR")" ]; then
            die "$DIR is not empty and was not created by $PROG; refusing to use it"
        fi
        : >"$DIR/$MARKER" || die "cannot write in $DIR"
    fi
}

check_traversable() {   # the cluster owner must reach DIR through its parents
    as_owner test -x "$DIR" -a -r "$DIR" && return 0
    # Find the topmost directory that is in the way.
    local d='' part
    local -a parts
    IFS=/ read -r -a parts <<<"${DIR#/}"
    for part in "${parts[@]}"; do
        d=$d/$part
        if ! as_owner test -x "$d"; then
            die "user $OS_USER cannot enter $d (mode $(stat -c %a -- "$d")); use a cluster directory under /tmp, or chmod o+x $d"
        fi
    done
    die "user $OS_USER cannot access $DIR"
}

do_initdb() {
    local pwfile
    mkdir -p -- "$SOCK"
    chmod 0755 -- "$DIR" "$SOCK"
    "$HERE/gen-test-certs.sh" "$CERTS" || die "could not create test certificates in $CERTS"
    pwfile=$DIR/.pwfile
    (umask 077 && printf 'postgres\n' >"$pwfile")
    if [ "$IS_ROOT" -eq 1 ]; then
        chown -R -- "$OS_USER:$OS_GROUP" "$DIR"
    fi
    check_traversable
    if ! as_owner "$BIN/initdb" -D "$DATA" -U postgres --pwfile="$pwfile" \
            -E UTF8 --locale=C.UTF-8 \
            --auth-local=trust --auth-host=scram-sha-256 \
            >"$DIR/initdb.log" 2>&1; then
        rm -f -- "$pwfile"
        tail -n 20 -- "$DIR/initdb.log" >&2
        rm -rf -- "$DATA"
        die "initdb failed (full log: $DIR/initdb.log)"
    fi
    rm -f -- "$pwfile"
    printf "\n# Settings for the throwaway test cluster.\ninclude '%s'\n" "$CONF_NAME" \
        >>"$DATA/postgresql.conf"
    as_owner tee "$DATA/pg_hba.conf" >/dev/null <<'HBA'
# Written by pg-temp.sh.
# TYPE  DATABASE  USER     ADDRESS        METHOD
local   all       all                     trust
# md5user has an MD5-hashed password, which scram-sha-256 cannot check.
host    all       md5user  127.0.0.1/32   md5
host    all       md5user  ::1/128        md5
host    all       all      127.0.0.1/32   scram-sha-256
host    all       all      ::1/128        scram-sha-256
HBA
    rm -f -- "$DIR/.setup-done"
}

write_conf() {   # write_conf PORT LISTEN
    local port=$1 listen=$2
    as_owner tee "$DATA/$CONF_NAME.tmp" >/dev/null <<EOF
# Written by pg-temp.sh on every start; edits will be lost.
# THROWAWAY TEST CLUSTER: durability is off.
listen_addresses = $(pgq "$listen")
port = $port
unix_socket_directories = $(pgq "$SOCK")
unix_socket_permissions = 0777
max_connections = $MAXCONN
shared_buffers = $SHBUF
password_encryption = 'scram-sha-256'

fsync = off
synchronous_commit = off
full_page_writes = off

ssl = on
ssl_cert_file = $(pgq "$CERTS/server.crt")
ssl_key_file = $(pgq "$CERTS/server.key")
ssl_ca_file = $(pgq "$CERTS/ca.crt")

log_min_messages = warning
log_connections = off
log_disconnections = off
log_checkpoints = off
EOF
    as_owner mv -f -- "$DATA/$CONF_NAME.tmp" "$DATA/$CONF_NAME"
}

setup_roles() {   # setup_roles PORT: idempotent
    psql_local "$1" <<'SQL' >/dev/null
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app') THEN
        SET LOCAL password_encryption = 'scram-sha-256';
        CREATE ROLE app LOGIN PASSWORD 'app_pw';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'md5user') THEN
        SET LOCAL password_encryption = 'md5';
        CREATE ROLE md5user LOGIN PASSWORD 'md5_pw';
    END IF;
END
$$;
SELECT 'CREATE DATABASE app OWNER app'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'app') \gexec
SQL
}

ensure_setup() {   # ensure_setup PORT: roles and database, once per cluster
    [ -e "$DIR/.setup-done" ] && return 0
    setup_roles "$1" || die "could not create roles/database (see $LOGF)"
    : >"$DIR/.setup-done"
}

do_start() {
    local port listen v6
    need_bin
    command -v python3 >/dev/null 2>&1 || die "python3 not found (run scripts/install-deps.sh)"
    prepare_dir
    # Serialise concurrent starts of the same cluster.
    exec 9>>"$DIR/.lock"
    flock 9 || die "cannot lock $DIR/.lock"
    pick_os_user

    # Unix socket paths are limited to 107 bytes.
    [ "${#SOCK}" -le 90 ] || die "path too long for a unix socket: $SOCK (use a shorter DIR)"

    if [ ! -f "$DATA/PG_VERSION" ]; then
        [ ! -e "$DATA" ] || die "$DATA exists but is not a cluster; run '$0 destroy $DIR' first"
        do_initdb
    fi

    if is_running; then
        port=$(read_port)
        ensure_setup "$port"
        write_env "$port" >"$ENVF"
        say "already running on 127.0.0.1:$port (socket $SOCK)"
        return 0
    fi

    v6=0
    listen=127.0.0.1
    if have_ipv6; then
        v6=1
        listen=127.0.0.1,::1
    fi

    if [ -n "$REQ_PORT" ]; then
        port=$REQ_PORT
        # PostgreSQL starts even if only some listen addresses can be bound.
        port_free "$port" "$v6" ||
            die "PGT_PORT=$port is already in use on $listen"
    elif [ -s "$PORTF" ]; then
        port=$(cat -- "$PORTF")
        if ! port_free "$port" "$v6"; then
            local old=$port
            port=$(free_port "$v6") || die "could not find a free TCP port"
            say "port $old is in use now, moving the cluster to port $port"
        fi
    else
        port=$(free_port "$v6") || die "could not find a free TCP port"
    fi
    printf '%s\n' "$port" >"$PORTF"

    write_conf "$port" "$listen"
    local logsize=0
    [ -f "$LOGF" ] && logsize=$(stat -c %s -- "$LOGF")
    if ! as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOGF" -w -t 60 start >/dev/null 2>&1; then
        echo "--- $LOGF (this start) ---" >&2
        tail -c +"$((logsize + 1))" -- "$LOGF" 2>/dev/null | tail -n 30 >&2 || true
        die "PostgreSQL failed to start (port $port)"
    fi

    ensure_setup "$port"
    write_env "$port" >"$ENVF"
    say "running on 127.0.0.1:$port (socket $SOCK)"
}

# ---------------------------------------------------------------------------
# stop / status / destroy / env

do_stop() {
    [ -f "$DATA/PG_VERSION" ] || return 0
    need_bin
    pick_os_user
    is_running || return 0
    if ! as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null 2>&1; then
        tail -n 20 -- "$LOGF" >&2 || true
        die "pg_ctl stop failed"
    fi
    say "stopped ($DIR)"
}

do_status() {
    if [ -f "$DATA/PG_VERSION" ]; then
        need_bin
        pick_os_user
        if is_running; then
            say "running on 127.0.0.1:$(read_port) (socket $SOCK)"
            return 0
        fi
    fi
    say "not running ($DIR)"
    return 3
}

do_destroy() {
    [ -e "$DIR" ] || return 0
    [ -e "$DIR/$MARKER" ] || die "$DIR was not created by $PROG; not deleting it"
    do_stop
    rm -rf -- "$DIR"
}

do_env() {
    [ -f "$DATA/PG_VERSION" ] || die "no cluster in $DIR (run '$0 start $DIR' first)"
    pick_os_user
    write_env "$(read_port)"
}

case "$CMD" in
    start)   do_start ;;
    stop)    do_stop ;;
    restart) do_stop; do_start ;;
    status)  do_status ;;
    destroy) do_destroy ;;
    env)     do_env ;;
esac
