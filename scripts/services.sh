#!/usr/bin/env bash
# Install (from Debian) and start what the test suite needs beside Python, idempotently:
#   - PostgreSQL: a throw-away cluster of our own (trust auth, loopback only) on $SHEETS_PG_PORT,
#     so it never touches a system cluster and needs no password;
#   - redis-server: the fleet's shared quota and the CeleryExecutor test start their own on free ports;
#   - chromium and docker-compose: the UI and compose tests use them.
# Nothing is started twice: a cluster that already answers on the port is kept.
# Sourced by scripts/test.sh; exports SHEETS_PG_HOST and SHEETS_PG_PORT for the tests.
#
# With CI=true every part is required (a failure stops the run); on a laptop without root a missing
# part is reported and the tests that need it skip.

SHEETS_PG_HOST=${SHEETS_PG_HOST:-127.0.0.1}
SHEETS_PG_PORT=${SHEETS_PG_PORT:-55432}
SHEETS_PGDATA=${SHEETS_PGDATA:-/tmp/airflow-provider-sheets-pg-$SHEETS_PG_PORT}
export SHEETS_PG_HOST SHEETS_PG_PORT

_services_required() { [ "${CI:-}" = "true" ]; }

_services_fail() {
    if _services_required; then
        echo "CI=true: $*" >&2
        exit 1
    fi
    echo "== $* (the tests that need it skip)"
}

_apt_install() {
    if [ "$(id -u)" != 0 ]; then
        _services_fail "not root, cannot install ${*} from Debian"
        return 1
    fi
    echo "== installing ${*} (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

_pg_bin() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$dir" ] && [ -x "$dir/initdb" ] && echo "$dir"
}

# run a PostgreSQL server binary: as the 'postgres' user when we are root (initdb refuses root)
_as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start_postgres() {
    local bin
    bin=$(_pg_bin) || { _services_fail "PostgreSQL is not installed (Debian package postgresql)"; return 0; }
    if "$bin/pg_isready" -q -h "$SHEETS_PG_HOST" -p "$SHEETS_PG_PORT"; then
        echo "== PostgreSQL already running on $SHEETS_PG_HOST:$SHEETS_PG_PORT ($SHEETS_PGDATA)"
        return 0
    fi
    if [ ! -s "$SHEETS_PGDATA/PG_VERSION" ]; then
        rm -rf "$SHEETS_PGDATA"
        mkdir -p "$SHEETS_PGDATA"
        [ "$(id -u)" = 0 ] && chown postgres:postgres "$SHEETS_PGDATA"
        _as_pg "$bin/initdb" -D "$SHEETS_PGDATA" -U postgres -A trust -E UTF8 >"$SHEETS_PGDATA.initdb.log" 2>&1 \
            || { cat "$SHEETS_PGDATA.initdb.log" >&2; _services_fail "initdb failed"; return 0; }
    fi
    # a test database: durability off (fsync, synchronous_commit) for speed
    _as_pg "$bin/pg_ctl" -D "$SHEETS_PGDATA" -l "$SHEETS_PGDATA/server.log" -w -t 60 start \
        -o "-p $SHEETS_PG_PORT -c listen_addresses=$SHEETS_PG_HOST -k $SHEETS_PGDATA -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        >/dev/null || { tail -n 20 "$SHEETS_PGDATA/server.log" >&2; _services_fail "PostgreSQL did not start"; return 0; }
    echo "== PostgreSQL $("$bin/postgres" --version | awk '{print $3}') started on $SHEETS_PG_HOST:$SHEETS_PG_PORT ($SHEETS_PGDATA)"
}

# one apt-get update and one install for everything missing (nothing when all is there)
install_packages() {
    local missing=()
    _pg_bin >/dev/null || missing+=(postgresql)
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v docker-compose >/dev/null || missing+=(docker-compose)
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    [ ${#missing[@]} -eq 0 ] && return 0
    _apt_install "${missing[@]}" || true
}
