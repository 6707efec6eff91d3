"""``pulp-content-asgi``: a drop-in for ``pulpcore-content``.

Same port (24816), the same bind default (``[::]:24816``, or ``0.0.0.0:24816`` without
IPv6) and the flags operators already pass. Granian is the default server (it offers
``http.response.pathsend``, so whole files leave without passing through Python; see
bench/README.md for the measurements); ``--server uvicorn`` runs uvicorn with httptools
and uvloop instead.
"""

from __future__ import annotations

import os

import click

from pulp_content_asgi import conf
from pulp_content_asgi.server import runners

LEVELS = ("critical", "error", "warning", "info", "debug")


def default_bind() -> str:
    from pulpcore.app.netutil import has_ipv6

    return "[::]:24816" if has_ipv6() else "0.0.0.0:24816"


def check(app_settings: conf.AppSettings) -> None:
    """Refuse to start, with one line naming the setting, when CONTENT_ASGI_MIDDLEWARE
    names something that cannot be imported or CONTENT_ASGI_LEGACY_ORIGIN is no origin
    (the workers would each fail with a traceback). Numbers that are no whole numbers or
    out of range are refused the same way while the settings are read (conf.py)."""
    from django.core.exceptions import ImproperlyConfigured

    from pulp_content_asgi.bridge.legacy import legacy_fallback
    from pulp_content_asgi.entry.middleware import factories

    try:
        factories(app_settings.middleware)
        legacy_fallback(app_settings)
    except ImproperlyConfigured as exc:
        raise click.ClickException(str(exc)) from exc


def setup() -> None:
    """``bootstrap.setup()``, with a configuration Django refuses while loading the apps as
    one line and exit 1 instead of a traceback: pulpcore's message says what to do. The
    case met: with ``DOMAIN_ENABLED``, an installed plugin whose PluginConfig does not
    declare ``domain_compatible`` (``pulpcore/app/apps.py``, "The plugin `…` is not
    domain compatible. Please uninstall/update the plugin or turn off `DOMAIN_ENABLED`
    for Pulp to start."); pulpcore-content and every other Pulp process refuse it the
    same way, so no content app serves such a plugin under domains."""
    from django.core.exceptions import ImproperlyConfigured

    from pulp_content_asgi import bootstrap

    try:
        bootstrap.setup()
    except ImproperlyConfigured as exc:
        raise click.ClickException(str(exc)) from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"]},
             invoke_without_command=True)
@click.option("--bind", "-b", "binds", multiple=True,
              help="Address to listen on, HOST:PORT or [IPV6]:PORT (repeatable; one with "
                   "granian). Default: [::]:24816, or 0.0.0.0:24816 without IPv6.")
@click.option("--workers", "-w", type=click.IntRange(1), default=1, show_default=True,
              help="Worker processes.")
@click.option("--timeout", "-t", type=click.IntRange(1), default=90, show_default=True,
              help="Seconds in-flight requests get to finish when a worker stops.")
@click.option("--server", type=click.Choice(runners.SERVERS), default=None,
              help="ASGI server (default: CONTENT_ASGI_SERVER, i.e. granian).")
@click.option("--access-logfile", default=None,
              help="Write an access log (combined format plus seconds) to this file; '-' "
                   "for stdout.")
@click.option("--log-level", type=click.Choice(LEVELS), default="info", show_default=True)
@click.option("--reload/--no-reload", default=False, help="Restart when code changes.")
@click.option("--reuse-port/--no-reuse-port", default=None,
              help="Share the port with other servers listening on it (SO_REUSEPORT); "
                   "without it an address in use is refused at start-up (default: "
                   "CONTENT_ASGI_REUSE_PORT, i.e. off).")
@click.option("--name-template", default=None,
              help="Worker name template for the status API (WORKER_NAME_TEMPLATE).")
@click.pass_context
def main(ctx: click.Context, binds: tuple[str, ...], workers: int, timeout: int,
         server: str | None, access_logfile: str | None, log_level: str, reload: bool,
         reuse_port: bool | None, name_template: str | None) -> None:
    """Serve Pulp content (pulpcore-content's URLs and behaviour) over ASGI.

    Without a command, runs the server; `pulp-content-asgi plugins` shows how each
    installed Pulp plugin is served.
    """
    if ctx.invoked_subcommand is not None:
        return
    if name_template:
        os.environ["PULP_WORKER_NAME_TEMPLATE"] = name_template
    # Worker processes configure their logging from these (they may be spawned afresh).
    if access_logfile:
        os.environ["PULP_CONTENT_ASGI_ACCESS_LOGFILE"] = access_logfile
    os.environ["PULP_CONTENT_ASGI_LOG_LEVEL"] = log_level
    setup()
    app_settings = conf.load()
    check(app_settings)
    chosen = server or app_settings.server
    addresses = [runners.parse_bind(b) for b in (binds or (default_bind(),))]
    sharing = app_settings.reuse_port if reuse_port is None else reuse_port
    shared = None
    if app_settings.prometheus_enabled:
        # Before any worker exists (and before prometheus_client is imported anywhere).
        from pulp_content_asgi.metrics import prometheus

        shared = prometheus.prepare_directory(app_settings.prometheus_dir)
    try:
        runners.run(chosen, addresses, workers=workers, timeout=timeout, log_level=log_level,
                    reload=reload, reuse_port=sharing,
                    header_timeout=app_settings.header_timeout,
                    max_connections=app_settings.max_connections,
                    file_read_threads=app_settings.file_read_threads)
    finally:
        if shared is not None:
            prometheus.remove_directory(shared)


_MODES = {
    "native": "native (declared by the plugin)",
    "builtin": "built-in handler (shipped here)",
    "bridge": "generic bridge",
    "legacy": "NEEDS THE LEGACY APP",
}


@main.command()
def plugins() -> None:
    """How each installed Pulp plugin is served; exits 1 if one needs the legacy app.

    native: the plugin declares content_asgi_handlers / content_asgi_urls; built-in: a
    port shipped with pulp-content-asgi; generic bridge: pulpcore's resolution order with
    the plugin's model hooks; legacy: the plugin adds aiohttp routes to pulpcore-content
    that nothing here serves (they need CONTENT_ASGI_LEGACY_ORIGIN).
    """
    setup()
    from pulp_content_asgi.plugin import registry

    registry.discover()
    found = registry.supported()
    width = max(len(s.label) for s in found)
    for support in found:
        served = ", ".join(support.handlers) or "-"
        routes = f"; live routes {support.urls}" if support.urls else ""
        click.echo(f"{support.label:<{width}}  {support.version:<8}  {_MODES[support.mode]:<33}"
                   f"  {served}{routes}")
    legacy = [s for s in found if s.mode == "legacy"]
    if legacy:
        names = ", ".join(s.label for s in legacy)
        click.echo(f"Routes of {names} are served only by pulpcore-content: keep it running "
                   "and set CONTENT_ASGI_LEGACY_ORIGIN (docs/migration.md).", err=True)
        raise SystemExit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
