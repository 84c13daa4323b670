#!/usr/bin/env bash
# install-deps.sh -- install the Debian/Ubuntu packages needed to build, test
# and run Sluice.
#
# Usage:
#   scripts/install-deps.sh [EXTRA_PACKAGE...]
#
#   Installs whichever of the required packages (plus any EXTRA_PACKAGEs,
#   e.g. `scripts/install-deps.sh pgbouncer`) are not installed yet.
#   Prints nothing and changes nothing when everything is already present.
#   Runs apt-get as root directly, otherwise through sudo.
set -euo pipefail

PROG=install-deps

PACKAGES=(
    gcc make pkg-config clang
    libuv1-dev libpq-dev libssl-dev libconfig-dev libhttp-parser-dev check
    postgresql-15 postgresql-client-15
    openssl iproute2 procps python3 curl
    python3-pytest python3-pytest-xdist python3-pytest-timeout python3-psycopg
    python3-asyncpg openjdk-17-jre-headless libpostgresql-jdbc-java
)
PACKAGES+=("$@")

die() { echo "$PROG: $*" >&2; exit 1; }

command -v dpkg-query >/dev/null 2>&1 ||
    die "dpkg-query not found: this script only supports Debian-based systems; install these packages by hand: ${PACKAGES[*]}"

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [ "$status" != "install ok installed" ]; then
        # Skip duplicates (an extra package may repeat a required one).
        case " ${missing[*]-} " in *" $pkg "*) ;; *) missing+=("$pkg") ;; esac
    fi
done

[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    die "not root and sudo is not available; as root, run: apt-get install ${missing[*]}"
fi

echo "$PROG: installing ${missing[*]}" >&2
"${SUDO[@]}" apt-get update -qq ||
    die "apt-get update failed"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" ||
    die "apt-get install failed for: ${missing[*]}"
