"""Database lookups that decide what a request is for. Everything here runs on an ORM
thread (:mod:`pulp_content_asgi.db`) and returns plain values or typed results."""
