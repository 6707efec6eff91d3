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
    PULP_SETTINGS=... python -m pulp_content_asgi.devtools.migrated --build [NAME]   # the template
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import time

import psycopg

from pulp_content_asgi.devtools.databases import _connect, name

#: Attempts to copy a template that another session is copying or creating right now.
ATTEMPTS = 20


def fingerprint() -> str:
    """16 hex digits naming what a migration run of these settings produces: the
    migrations on disk (names and file contents), every installed app's release (post-migrate
    hooks write access policies and roles from code), the settings those
    hooks copy into rows, and the database-fields key."""
    import inspect

    from django.apps import apps
    from django.conf import settings
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(None, ignore_no_migrations=True)
    parts = []
    for (app, label), migration in sorted(loader.disk_migrations.items()):
        source = inspect.getsourcefile(type(migration)) or ""
        with open(source, "rb") as module:
            parts.append(f"{app}.{label} {hashlib.sha256(module.read()).hexdigest()}")
    # Pulp plugins' app configs carry their release (the same in every process, unlike
    # what importlib.metadata finds on a process's sys.path).
    parts += sorted(f"{config.label}=={getattr(config, 'version', '')}"
                    for config in apps.get_app_configs())
    parts += [repr(getattr(settings, name, None)) for name in
              ("HIDE_GUARDED_DISTRIBUTIONS", "REDIRECT_TO_OBJECT_STORAGE", "DOMAIN_ENABLED")]
    parts.append(repr(settings.STORAGES["default"]["BACKEND"]))
    with open(settings.DB_ENCRYPTION_KEY, "rb") as key:
        parts.append(hashlib.sha256(key.read()).hexdigest())
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def fresh() -> str:
    """Drop the settings' database and make it again, migrated, as a copy of the migrated
    template of these settings. When there is none yet, it is made first by
    :func:`build` in a process of its own (this process may hold a connection pool,
    whose connections would keep the new database in use). Django must be set up, with
    ``PULP_SETTINGS`` naming its settings file. Returns ``copied`` or ``migrated`` (the
    template was made by this call)."""
    from django.db import connections

    dbname = connections["default"].settings_dict["NAME"]
    template = name(f"template_{fingerprint()}")
    connections.close_all()
    if _copy(template, dbname):
        return "copied"
    # The name is passed on: the template is the one this process looks for.
    subprocess.run([sys.executable, "-m", "pulp_content_asgi.devtools.migrated", "--build",
                    template],
                   env={**os.environ, "DJANGO_SETTINGS_MODULE": "pulpcore.app.settings"},
                   check=True, stdout=subprocess.DEVNULL)
    if not _copy(template, dbname):
        raise RuntimeError(f"could not copy the migrated template {template} to {dbname}")
    return "migrated"


def build(template: str | None = None) -> None:
    """Make this settings' template: migrate a new database under a temporary name (the
    checkout's, so ``make clean`` sees it), end every session on it, rename it. Never
    half-made: a failure drops the temporary database. Run without a connection pool."""
    from django.core.management import call_command
    from django.db import connections

    default = connections["default"].settings_dict
    template = template or name(f"template_{fingerprint()}")
    building = name(f"building_{os.getpid()}")
    with _connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{building}"')
    default["NAME"] = building
    try:
        call_command("migrate", verbosity=0, interactive=False)
        connections.close_all()
        with _connect() as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_backend_pid()", (building,))
            # Another process may have made it meanwhile: then its template stands.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(f'ALTER DATABASE "{building}" RENAME TO "{template}"')
    finally:
        connections.close_all()
        with _connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)')


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
    if sys.argv[1:2] == ["--build"]:
        build(*sys.argv[2:3])
    else:
        print(fresh())
