"""Serving: from what resolution decided to the bytes on the wire.

* :mod:`.response` — the response value (status, headers, body, typed facts) and the one
  text format of every error and redirect body;
* :mod:`.representation` — what is served: size, validators, headers and where the bytes
  come from (a local file, an object-storage opener, an in-memory body, a live stream);
* :mod:`.responder` — the single function that turns a representation and a request into
  a response (RFC 9110 preconditions, Range, If-Range, 304/412/416, HEAD), for every path;
* :mod:`.artifacts` — representations of stored artifacts and local files, and
  object-storage redirects (runs on the ORM thread: it stats and signs);
* :mod:`.results` — typed resolution results to responses (the ORM-thread half);
* :mod:`.send` — writing a response over ASGI with bounded memory; pathsend is chosen here.

Nothing here imports aiohttp; only :mod:`.artifacts` and :mod:`.prepare` touch Django models.
"""
