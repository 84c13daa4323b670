#!/usr/bin/env bash
# run.sh -- run Sluice for trying it out (what `make run` calls after the build).
#
# Usage:
#   scripts/run.sh            start a throwaway PostgreSQL 15 cluster
#                             (scripts/pg-temp.sh, in $RUN_DIR/pg), write
#                             $RUN_DIR/sluice.conf and run Sluice in the
#                             foreground on 127.0.0.1:6432 and a unix socket
#                             in $RUN_DIR.  Ctrl-C stops Sluice and the
#                             cluster.  The cluster's data persists between
#                             runs.
#   scripts/run.sh CONFIG     just run `sluice -c CONFIG`.
#
# Environment:
#   RUN_DIR     working directory (default /tmp/sluice-run)
#   BUILD       build directory (default build); the binary is $BUILD/sluice
#   SLUICE_BIN  the binary to run (default $BUILD/sluice)
set -euo pipefail

PROG=run
die() { echo "$PROG: $*" >&2; exit 1; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
SLUICE=${SLUICE_BIN:-$BUILD/sluice}
LISTEN_ADDR=127.0.0.1
LISTEN_PORT=6432

[ $# -le 1 ] || die "usage: $0 [CONFIG]"
[ -x "$SLUICE" ] || die "$SLUICE not found or not executable; build it first with 'make'"

if [ $# -eq 1 ]; then
    [ -r "$1" ] || die "cannot read config file $1"
    exec "$SLUICE" -c "$1"
fi

RUN_DIR=${RUN_DIR:-/tmp/sluice-run}
RUN_DIR=$(realpath -m -- "$RUN_DIR")
case "$RUN_DIR" in
    *[[:space:]\"\'\\]*) die "RUN_DIR must not contain spaces, quotes or backslashes: $RUN_DIR" ;;
esac
PG_DIR=$RUN_DIR/pg
PG_TEMP=$ROOT/scripts/pg-temp.sh

# Is 127.0.0.1:6432 free?  (Bind the way a server does, with SO_REUSEADDR.)
port_free() {
    python3 - "$LISTEN_ADDR" "$LISTEN_PORT" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
PY
}
if ! port_free; then
    echo "$PROG: port $LISTEN_PORT on $LISTEN_ADDR is already in use (another Sluice or PgBouncer?)." >&2
    if command -v ss >/dev/null 2>&1; then
        ss -ltnpH "sport = :$LISTEN_PORT" 2>/dev/null | sed "s/^/$PROG:   /" >&2 || true
    fi
    echo "$PROG: stop it, or run Sluice with your own config: scripts/run.sh CONFIG" >&2
    exit 1
fi

(umask 022 && mkdir -p -- "$RUN_DIR") || die "cannot create $RUN_DIR"
chmod 0755 -- "$RUN_DIR"

SLUICE_PID=
# shellcheck disable=SC2317  # invoked by trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    if [ -n "$SLUICE_PID" ] && kill -0 "$SLUICE_PID" 2>/dev/null; then
        kill -TERM "$SLUICE_PID" 2>/dev/null || true
        wait "$SLUICE_PID" 2>/dev/null || true
    fi
    echo "$PROG: stopping the throwaway PostgreSQL" >&2
    "$PG_TEMP" stop "$PG_DIR" || true
    exit "$rc"
}
# shellcheck disable=SC2317  # invoked by trap
on_signal() {   # on_signal EXIT_CODE
    trap - INT TERM HUP
    echo >&2
    if [ -n "$SLUICE_PID" ] && kill -0 "$SLUICE_PID" 2>/dev/null; then
        echo "$PROG: stopping sluice (pid $SLUICE_PID)" >&2
        kill -TERM "$SLUICE_PID" 2>/dev/null || true
        wait "$SLUICE_PID" 2>/dev/null || true
    fi
    exit "$1"
}
trap cleanup EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
trap 'on_signal 129' HUP

"$PG_TEMP" start "$PG_DIR"
# shellcheck disable=SC1091
. "$PG_DIR/env"

CONF=$RUN_DIR/sluice.conf
cat >"$CONF.tmp" <<EOF
# Written by scripts/run.sh; overwritten on every run.
listen_addr = "$LISTEN_ADDR";
listen_port = $LISTEN_PORT;
unix_socket_dir = "$RUN_DIR";
pool_mode = "transaction";
default_pool_size = 20;
max_client_conn = 2000;
auth_type = "trust";
databases = (
  { name = "app"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=app user=app"; },
  { name = "postgres"; conninfo = "host=$PGT_SOCK port=$PGT_PORT dbname=postgres"; },
  { name = "*"; conninfo = "host=$PGT_SOCK port=$PGT_PORT"; }
);
EOF
mv -f -- "$CONF.tmp" "$CONF"

cat >&2 <<EOF

  Sluice (config $CONF)
  PostgreSQL 15 (throwaway): 127.0.0.1:$PGT_PORT, socket $PGT_SOCK, log $PGT_LOG

  Connect through Sluice (no password needed: auth_type is trust):
      psql -h $LISTEN_ADDR -p $LISTEN_PORT -U app app
      psql -h $RUN_DIR -p $LISTEN_PORT app           (unix socket)

  Stop: press Ctrl-C here, or kill the sluice PID shown below;
  either way the throwaway PostgreSQL is stopped as well.

EOF

"$SLUICE" -c "$CONF" &
SLUICE_PID=$!
echo "$PROG: sluice running, pid $SLUICE_PID" >&2

rc=0
wait "$SLUICE_PID" || rc=$?
SLUICE_PID=
if [ "$rc" -gt 128 ]; then
    echo "$PROG: sluice was stopped by signal $((rc - 128))" >&2
elif [ "$rc" -ne 0 ]; then
    echo "$PROG: sluice exited with status $rc" >&2
fi
exit "$rc"
