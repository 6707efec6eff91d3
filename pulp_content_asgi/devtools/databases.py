"""The PostgreSQL databases a checkout owns, named after the checkout so clones never share.

Several checkouts share one PostgreSQL server (the machine's, or CI in another folder).
Artifacts are content-addressed and recorded once per database, so two checkouts on one
database would each find the other's rows and skip writing the files to their own
``MEDIA_ROOT`` (every demo file then answers "missing from storage"). Every database a
checkout creates is therefore named ``pulp_content_asgi_<kind>_<checkout id>``:

- ``demo`` (``make demo``), ``test`` (``tests/conftest.py``),
- ``pulp`` and ``pulp_domains`` (the conformance stacks, ``conformance/stack.py``),
- ``bench`` (``make bench``, ``bench/run.py``).

``python -m pulp_content_asgi.devtools.databases name KIND`` prints one name;
``... drop`` drops every database of this checkout and prints what it dropped.
"""

from __future__ import annotations

import hashlib
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

#: The checkout this package was installed from (an editable install: make venv).
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREFIX = "pulp_content_asgi_"


def checkout_id(root: str = ROOT) -> str:
    """8 hex digits of the sha1 of the checkout's absolute path (as conftest.py derives it)."""
    return hashlib.sha1(os.path.abspath(root).encode()).hexdigest()[:8]


def name(kind: str, root: str = ROOT) -> str:
    """The database of ``kind`` (``demo``, ``test``, ``pulp``, ...) for the checkout."""
    return f"{PREFIX}{kind}_{checkout_id(root)}"


def _connect() -> psycopg.Connection[Any]:
    """An autocommit connection to the ``postgres`` database (``PG*`` as dev/database.sh)."""
    import psycopg

    return psycopg.connect(host=os.environ.get("PGHOST", "127.0.0.1"),
                           port=int(os.environ.get("PGPORT", "5432")),
                           user=os.environ.get("PGUSER", "postgres"), dbname="postgres",
                           autocommit=True)


def owned(root: str = ROOT) -> list[str]:
    """The existing databases named after this checkout, sorted."""
    suffix = f"_{checkout_id(root)}"
    with _connect() as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
                            (PREFIX,)).fetchall()
    return sorted(row[0] for row in rows if row[0].endswith(suffix))


def drop(root: str = ROOT) -> list[str]:
    """Drop this checkout's databases (connected sessions are ended); returns their names."""
    dropped = owned(root)
    with _connect() as conn:
        for dbname in dropped:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    return dropped


def main(argv: list[str]) -> int:
    """``name KIND`` or ``drop``; exit status 2 on a usage error."""
    if len(argv) == 2 and argv[0] == "name":
        print(name(argv[1]))
        return 0
    if argv == ["drop"]:
        for dbname in drop():
            print(f"Dropped database {dbname}")
        return 0
    print("usage: python -m pulp_content_asgi.devtools.databases name KIND | drop",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
