"""pulp-content-asgi: Pulp's content app on Django ASGI.

Importing this package has no side effects; Django is set up by the entry points
(:mod:`pulp_content_asgi.asgi`, the ``pulp-content-asgi`` command) only.
"""

__version__ = "0.1.0"
