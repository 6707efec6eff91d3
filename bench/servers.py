"""The contenders, each started with the same number of worker processes on the same
database and files: our app (granian, uvicorn), pulpcore-content (gunicorn + aiohttp,
from the installed pulpcore) and nginx serving the same bytes by relative path."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass

from pulp_content_asgi.devtools import processes

BIN = os.path.dirname(sys.executable)


#: The response cache, for the contenders that run with it (the machine's Redis).
CACHE_ENV = {"PULP_CACHE_ENABLED": "true", "PULP_REDIS_HOST": "127.0.0.1",
             "PULP_REDIS_PORT": "6379"}


@dataclass(frozen=True)
class Contender:
    name: str
    prefix: str  # URL prefix the data set's paths are served under
    cache: bool = False

    def argv(self, workers: int, root: str, port: int) -> list[str]:
        raise NotImplementedError


@dataclass(frozen=True)
class ContentAsgi(Contender):
    server: str = "granian"
    metrics: bool = False  # the Prometheus recorder on (what metrics cost per request)

    def argv(self, workers: int, root: str, port: int) -> list[str]:
        return [os.path.join(BIN, "pulp-content-asgi"), "--bind", f"127.0.0.1:{port}",
                "--server", self.server, "--workers", str(workers), "--log-level", "warning"]


@dataclass(frozen=True)
class PulpcoreContent(Contender):
    def argv(self, workers: int, root: str, port: int) -> list[str]:
        return [os.path.join(BIN, "pulpcore-content"), "--bind", f"127.0.0.1:{port}",
                "--workers", str(workers), "--log-level", "warning"]


@dataclass(frozen=True)
class Nginx(Contender):
    sendfile: bool = True

    def argv(self, workers: int, root: str, port: int) -> list[str]:
        conf = os.path.join(root, f"nginx-{port}.conf")
        os.makedirs(os.path.join(root, "nginx-tmp"), exist_ok=True)
        with open(conf, "w") as out:
            out.write(NGINX_CONF.format(workers=workers, port=port, state=root,
                                        sendfile="on" if self.sendfile else "off",
                                        root=os.path.join(root, "nginx-root")))
        return [shutil.which("nginx") or "/usr/sbin/nginx", "-c", conf]


NGINX_CONF = """
worker_processes {workers};
daemon off;
pid {state}/nginx-{port}.pid;
error_log {state}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile {sendfile};
    tcp_nopush on;
    keepalive_requests 100000;
    default_type application/octet-stream;
    client_body_temp_path {state}/nginx-tmp;
    proxy_temp_path {state}/nginx-tmp;
    fastcgi_temp_path {state}/nginx-tmp;
    uwsgi_temp_path {state}/nginx-tmp;
    scgi_temp_path {state}/nginx-tmp;
    server {{
        listen 127.0.0.1:{port};
        location /pulp/content/ {{ alias {root}/; }}
    }}
}}
"""


CONTENDERS = [
    ContentAsgi("asgi-granian", "/pulp/content/", server="granian"),
    ContentAsgi("asgi-uvicorn", "/pulp/content/", server="uvicorn"),
    PulpcoreContent("pulpcore-content", "/pulp/content/"),
    ContentAsgi("asgi-granian-cache", "/pulp/content/", cache=True, server="granian"),
    ContentAsgi("asgi-granian-metrics", "/pulp/content/", server="granian", metrics=True),
    PulpcoreContent("pulpcore-content-cache", "/pulp/content/", cache=True),
    Nginx("nginx", "/pulp/content/"),
    # On loopback, copying can beat sendfile (django-asgi-notes §6): the ceiling is the
    # better of the two.
    Nginx("nginx-copy", "/pulp/content/", sendfile=False),
]


def start(contender: Contender, workers: int, root: str, cpus: str | None) -> processes.Server:
    """Start ``contender``, pinned to ``cpus`` with taskset when given."""
    port = processes.free_port()
    argv = contender.argv(workers, root, port)
    if cpus:
        argv = ["taskset", "-c", cpus, *argv]
    env = dict(CACHE_ENV) if contender.cache else {"PULP_CACHE_ENABLED": "false"}
    if getattr(contender, "metrics", False):
        env["PULP_CONTENT_ASGI_PROMETHEUS_ENABLED"] = "true"
    return processes.start(argv, os.path.join(root, "logs"), env=env, port=port,
                           probe="/pulp/content/bench-small/", timeout=60)
