#!/bin/sh
# The official image's first-start initialisation, reduced to what docker-compose.yml uses.
set -eu
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}"
user="${POSTGRES_USER:-postgres}"
db="${POSTGRES_DB:-$user}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile="$(mktemp)"
    printf '%s' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb --username="$user" --pwfile="$pwfile" --auth-local=trust \
        --auth-host=scram-sha-256 --pgdata="$PGDATA"
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    # Private while initialising: a socket in /tmp, no TCP.
    pg_ctl --pgdata="$PGDATA" --wait \
        --options="-c listen_addresses='' -c unix_socket_directories=/tmp" start
    if [ "$db" != postgres ]; then
        createdb --host=/tmp --username="$user" "$db"
    fi
    pg_ctl --pgdata="$PGDATA" --wait --mode=fast stop
fi
exec postgres -c listen_addresses='*' -c unix_socket_directories=/tmp "$@"
