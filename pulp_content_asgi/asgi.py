"""ASGI entry point: ``pulp_content_asgi.asgi:application``.

Importing this module sets Django up with pulpcore's settings (``PULP_SETTINGS``,
``PULP_*`` environment) and registers content handlers, so point any ASGI server at it:
``granian --interface asgi pulp_content_asgi.asgi:application`` or
``uvicorn pulp_content_asgi.asgi:application``. The ``pulp-content-asgi`` command does
this with pulpcore-content's defaults. ``CONTENT_ASGI_MIDDLEWARE`` wraps the application
in a deployment's own ASGI middleware (entry/middleware.py).
"""

from pulp_content_asgi import bootstrap

bootstrap.setup()

from pulp_content_asgi import conf  # noqa: E402
from pulp_content_asgi.entry import access_log, log_format  # noqa: E402
from pulp_content_asgi.entry.app import ContentApp  # noqa: E402
from pulp_content_asgi.entry.middleware import wrap  # noqa: E402
from pulp_content_asgi.plugin import registry  # noqa: E402

access_log.configure(conf.current().access_logfile)
conf.apply_log_level()
log_format.apply(conf.current().log_format)
registry.discover()
# CONTENT_ASGI_MIDDLEWARE (deployment middleware, the first outermost) around the app.
application = wrap(ContentApp(), conf.current().middleware)
