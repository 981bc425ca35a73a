# First start: create the cluster (password auth over TCP) and the POSTGRES_DB database.
# Every start: run the server in the foreground as PID 1, so `docker stop` shuts it down cleanly.
# Only dash's builtins are at hand (the image holds no coreutils).
set -e
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  printf '%s\n' "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}" |
    initdb -D "$PGDATA" -U postgres --locale=C --encoding=UTF8 \
      --auth-local=trust --auth-host=scram-sha-256 --pwfile=/dev/stdin > /dev/null
  printf 'host all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
  if [ -n "$POSTGRES_DB" ] && [ "$POSTGRES_DB" != postgres ]; then
    printf 'CREATE DATABASE "%s"\n' "$POSTGRES_DB" | postgres --single -D "$PGDATA" -j postgres > /dev/null
  fi
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -c jit=off "$@"
