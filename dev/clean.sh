#!/usr/bin/env bash
# Remove what this checkout created: its databases on the PostgreSQL server it used (named
# after the checkout: pulp_content_asgi/devtools/databases.py), its private PostgreSQL
# cluster if dev/database.sh made one, then .dev/. Fails (keeping .dev/) when the
# databases cannot be dropped, so nothing is left behind unnoticed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -f .dev/db.env ]; then
  set -a; source .dev/db.env; set +a
else
  export PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres
fi
if pg_isready -q -h "$PGHOST" -p "$PGPORT"; then
  if [ ! -x .venv/bin/python ]; then
    echo "make clean: no .venv to name this checkout's databases with; run 'make venv' first" >&2
    exit 1
  fi
  .venv/bin/python -m pulp_content_asgi.devtools.databases drop
elif [ -f .dev/pg/PG_VERSION ] && [ "$PGPORT" != 5432 ]; then
  echo "make clean: the private cluster is stopped; its databases go with .dev/pg"
else
  echo "make clean: PostgreSQL at $PGHOST:$PGPORT does not answer, so this checkout's" \
       "databases cannot be dropped; start it (dev/database.sh) and run make clean again" >&2
  exit 1
fi

if [ -f .dev/pg/postmaster.pid ]; then
  bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  echo "make clean: stopping this checkout's private PostgreSQL cluster (.dev/pg)"
  if [ "$(id -u)" = 0 ]; then
    su postgres -s /bin/sh -c "$bindir/pg_ctl -D '$PWD/.dev/pg' -m fast -w stop" >/dev/null
  else
    "$bindir/pg_ctl" -D .dev/pg -m fast -w stop >/dev/null
  fi
fi
rm -rf .dev
