"""Live routes: plugin URLconfs served through Django's own request handling.

A plugin's routes outside the content prefix (pulp_container's ``/pulp/container/...``)
are ordinary Django URL patterns with async or sync views. They run through Django's
``ASGIHandler``: middleware, exceptions turned into responses, ``request.user`` — as in
the API. The content prefix keeps its own fast path (:mod:`pulp_content_asgi.entry.app`).
"""
