"""Running the app under a production ASGI server (the ``pulp-content-asgi`` command)."""
