#!/bin/sh
# postgres: initdb on first start (POSTGRES_USER as superuser with
# POSTGRES_PASSWORD, POSTGRES_DB), then the server on every address with
# password authentication. redis-server ARGS: Redis on every address,
# /data as its directory. Anything else runs as given.
set -eu
case "${1:-}" in
postgres)
    bin=/usr/lib/postgresql/15/bin
    PGDATA=/var/lib/postgresql/data
    install -d -o postgres -g postgres -m 0700 "$PGDATA"
    install -d -o postgres -g postgres -m 2775 /var/run/postgresql
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        pw=$(mktemp)
        printf '%s\n' "${POSTGRES_PASSWORD:?}" > "$pw"
        chown postgres "$pw"
        runuser -u postgres -- "$bin/initdb" -D "$PGDATA" -U "${POSTGRES_USER:?}" --pwfile="$pw" \
            --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C >/dev/null
        rm -f "$pw"
        echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
        runuser -u postgres -- "$bin/pg_ctl" -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
        runuser -u postgres -- "$bin/createdb" -U "$POSTGRES_USER" "${POSTGRES_DB:-$POSTGRES_USER}"
        runuser -u postgres -- "$bin/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
    fi
    exec runuser -u postgres -- "$bin/postgres" -D "$PGDATA" -c listen_addresses='*'
    ;;
redis-server)
    shift
    install -d -o redis -g redis -m 0750 /data
    exec runuser -u redis -- redis-server --bind 0.0.0.0 --protected-mode no --dir /data "$@"
    ;;
esac
exec "$@"
