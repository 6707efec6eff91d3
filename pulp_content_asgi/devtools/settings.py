"""Write a pulpcore settings file for a self-contained development Pulp.

Everything lives under one folder (media, working directory, the database-fields key),
nothing is written to /etc, and the database is the one ``dev/database.sh`` found.
``python -m pulp_content_asgi.devtools.settings ROOT DBNAME`` prints the file's path.
"""

from __future__ import annotations

import base64
import os
import sys
from collections.abc import Mapping


def _key(root: str) -> str:
    """The database-fields key: the folder's own if it has one (a database made with it
    must keep it), else the checkout's (``.dev/database_fields.symmetric.key``), which
    every folder made since shares, so their migrated databases can be copies of one
    template (:mod:`.migrated`)."""
    from pulp_content_asgi.devtools.databases import ROOT

    own = os.path.join(root, "database_fields.symmetric.key")
    shared = os.path.join(ROOT, ".dev", "database_fields.symmetric.key")
    key = own if os.path.exists(own) or not os.access(ROOT, os.W_OK) else shared
    if not os.path.exists(key):
        os.makedirs(os.path.dirname(key), exist_ok=True)
        made = f"{key}.{os.getpid()}"
        with open(made, "wb") as out:
            out.write(base64.urlsafe_b64encode(os.urandom(32)))
        try:
            os.link(made, key)  # the first writer's key wins; never a half-written one
        except FileExistsError:
            pass
        finally:
            os.unlink(made)
    return key


def write(root: str, dbname: str, extra: Mapping[str, object] | None = None) -> str:
    """Create ``root`` with its folders and ``settings.py``; return the settings path."""
    root = os.path.abspath(root)
    for sub in ("media", "tmp", "static"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    key = _key(root)
    values: dict[str, object] = {
        "SECRET_KEY": "development-only-" + os.path.basename(root),
        "DB_ENCRYPTION_KEY": key,
        "MEDIA_ROOT": os.path.join(root, "media"),
        "WORKING_DIRECTORY": os.path.join(root, "tmp"),
        "FILE_UPLOAD_TEMP_DIR": os.path.join(root, "tmp"),
        "STATIC_ROOT": os.path.join(root, "static"),
        "DATABASES": {
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": dbname,
                "USER": os.environ.get("PGUSER", "postgres"),
                "HOST": os.environ.get("PGHOST", "127.0.0.1"),
                "PORT": int(os.environ.get("PGPORT", "5432")),
            }
        },
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": 6379,
        **(extra or {}),
    }
    path = os.path.join(root, "settings.py")
    body = "".join(f"{name} = {value!r}\n" for name, value in values.items())
    with open(path, "w") as out:
        out.write("# Written by pulp_content_asgi.devtools.settings; development only.\n" + body)
    return path


def ensure_database(dbname: str, fresh: bool = False) -> None:
    """Create the database if it does not exist yet (drop it first when ``fresh``)."""
    import psycopg

    params = {"host": os.environ.get("PGHOST", "127.0.0.1"),
              "port": int(os.environ.get("PGPORT", "5432")),
              "user": os.environ.get("PGUSER", "postgres"), "dbname": "postgres",
              "autocommit": True}
    with psycopg.connect(**params) as conn:  # type: ignore[arg-type]
        if fresh:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                              (dbname,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{dbname}"')


if __name__ == "__main__":
    ensure_database(sys.argv[2])
    print(write(sys.argv[1], sys.argv[2]))
