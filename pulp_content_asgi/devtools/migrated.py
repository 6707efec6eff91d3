"""A fresh, migrated development database in seconds: a copy of a migrated template.

Migrating an empty database through pulpcore's and nine plugins' migrations takes
minutes on a 2-core machine, and a test run, each conformance column and every stack of
CI's run need a fresh one. The first time a set of migrations is applied, the migrated
database is copied to a *template*; later databases with the same fingerprint are
``CREATE DATABASE … TEMPLATE`` copies of it (PostgreSQL copies the files: seconds).

The fingerprint covers everything a migration run writes that could differ: the
migrations on disk (every installed app's), the settings pulpcore's post-migrate hooks
copy into rows (``HIDE_GUARDED_DISTRIBUTIONS``, ``REDIRECT_TO_OBJECT_STORAGE``, the
storage backend, ``DOMAIN_ENABLED``) and the database-fields key (the default domain's
storage settings are encrypted with it, and the key is the checkout's: see
``devtools/settings.py``). Templates are the checkout's databases of kind
``template_<fingerprint>`` (``devtools/databases.py``): ``make clean`` drops them with
the rest.
Rows that are random per migration run (``SystemID``, the artifact distribution's name
and its guard's secret) are shared by the copies of one template: harmless for tests and
development stacks, which is all this is for.

    PULP_SETTINGS=... python -m pulp_content_asgi.devtools.migrated   # the settings' database
"""

from __future__ import annotations

import hashlib
import os
import time

import psycopg

from pulp_content_asgi.devtools.databases import _connect, name

#: Attempts to copy a template that another session is copying or creating right now.
ATTEMPTS = 20


def fingerprint() -> str:
    """16 hex digits naming what a migration run of these settings produces."""
    from django.conf import settings
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(None, ignore_no_migrations=True)
    parts = sorted(f"{app}.{name}" for app, name in loader.disk_migrations)
    parts += [repr(getattr(settings, name, None)) for name in
              ("HIDE_GUARDED_DISTRIBUTIONS", "REDIRECT_TO_OBJECT_STORAGE", "DOMAIN_ENABLED")]
    parts.append(repr(settings.STORAGES["default"]["BACKEND"]))
    with open(settings.DB_ENCRYPTION_KEY, "rb") as key:
        parts.append(hashlib.sha256(key.read()).hexdigest())
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def fresh() -> str:
    """Drop the settings' database and make it again, migrated, as a copy of the migrated
    template of these settings; the template is made first when there is none (migrated
    under a temporary name, then renamed: never half-made, never in use). Django must be
    set up; its connections are closed. Returns ``copied`` or ``migrated`` (the template
    was made by this call)."""
    from django.core.management import call_command
    from django.db import connections

    default = connections["default"].settings_dict
    dbname = default["NAME"]
    template = name(f"template_{fingerprint()}")
    connections.close_all()
    if _copy(template, dbname):
        return "copied"
    building = f"{template[:40]}_building_{os.getpid()}"
    with _connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{building}"')
    default["NAME"] = building
    try:
        call_command("migrate", verbosity=0, interactive=False)
    finally:
        connections.close_all()
        default["NAME"] = dbname
    with _connect() as conn:
        try:
            conn.execute(f'ALTER DATABASE "{building}" RENAME TO "{template}"')
        except psycopg.errors.DuplicateDatabase:  # another process made it meanwhile
            conn.execute(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)')
    if not _copy(template, dbname):
        raise RuntimeError(f"could not copy the migrated template {template} to {dbname}")
    return "migrated"


def _copy(template: str, dbname: str) -> bool:
    """``dbname`` as a copy of ``template``; False when there is no such template."""
    with _connect() as conn:
        for _ in range(ATTEMPTS):
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                            (template,)).fetchone() is None:
                return False
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            try:
                conn.execute(f'CREATE DATABASE "{dbname}" TEMPLATE "{template}"')
                return True
            except psycopg.errors.ObjectInUse:
                # Another session is copying it (PostgreSQL allows one at a time).
                time.sleep(0.5)
    return False


if __name__ == "__main__":
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pulpcore.app.settings")
    django.setup()
    print(fresh())
