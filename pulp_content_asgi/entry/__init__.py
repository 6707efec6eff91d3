"""Entry: the ASGI application and what a worker process does around requests
(lifespan and heartbeat, health and readiness, the access log and log format)."""
