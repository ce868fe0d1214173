#!/usr/bin/env bash
# Start a throw-away PostgreSQL on 127.0.0.1 for the storage tests (Debian's packages).
# Prints the connection URL on stdout; the server runs until `pg_ctl stop` (see .ci/run).
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
fi
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
data=$(mktemp -d /tmp/dse-pg.XXXXXX)
chown postgres:postgres "$data"
port=${DSE_PG_PORT:-$(python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")}
echo dsetest > "$data/pw" && chown postgres:postgres "$data/pw"
runuser -u postgres -- "$bin/initdb" -D "$data/db" -A scram-sha-256 --pwfile="$data/pw" -U dse >&2
runuser -u postgres -- "$bin/pg_ctl" -D "$data/db" -l "$data/log" -w \
  -o "-c listen_addresses=127.0.0.1 -c port=$port -k $data" start >&2
PGPASSWORD=dsetest "$bin/createdb" -h 127.0.0.1 -p "$port" -U dse optuna >&2
echo "$data" > /tmp/dse-pg.datadir
echo "postgresql://dse:dsetest@127.0.0.1:$port/optuna"
