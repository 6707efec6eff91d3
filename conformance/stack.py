"""A full Pulp on this machine: API (gunicorn), two tasking workers, our content app, the
legacy pulpcore-content beside it, and nginx in front, laid out like Pulp's production
reverse proxy (API and content on one origin).

    python -m conformance.stack up [--domains] [--content asgi|legacy] [--proxy snippet|stock]
                                   [--fresh]
    python -m conformance.stack switch --content legacy|asgi [--proxy snippet|stock]
    python -m conformance.stack down [--domains]

Ports start at ``PULP_STACK_PORT`` (24880: nginx; +1 API, +2 our app, +3 pulpcore-content,
+9 the stack's own redis-server; +100 for the domains stack); the database is named after
the checkout (and the port when it is not the default, so two stacks of one checkout can
run side by side). Redis is the stack's own (``start_redis``): no other checkout's stack
or parity run shares, reads or empties its databases.

Settings follow Pulp's own CI where they matter to the content app: ``CONTENT_ORIGIN``
is nginx, ``CACHE_ENABLED``, a non-default ``CONTENT_PATH_PREFIX`` (/somewhere/else/), a
3 s ``DISTRIBUTED_PUBLICATION_RETENTION_PERIOD`` and Basic auth. Everything lives under
``.dev/pulp`` (``.dev/pulp-domains`` for the domains variant): settings, media, logs
(``logs/*.log``), pid files. ``up`` returns once ``/pulp/api/v3/status/`` lists our app
among the online content apps.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
PREFIX = "/somewhere/else/"
ADMIN = ("admin", "password")
ASGI_NAME = "asgi-{pid}@{hostname}"  # tells our heartbeat rows from pulpcore-content's
#: The variable and value pulpcore's EnvVarHeaderContentGuard test reads
#: (test_contentguard.py, ENVVAR_HEADER_GUARD_ENV_VAR).
ENVVAR_SECRET = ("ENVVAR_HEADER_GUARD_TEST_SECRET", "conformance-envvar-secret")


#: The stack's redis-server, after nginx, the API, both apps (+0 to +3), the parity pair
#: (+4, +5) and the plugin corpus's upstreams (+6 to +8).
REDIS_OFFSET = 9


@dataclass(frozen=True)
class Layout:
    """Where one stack lives and listens."""

    root: str
    dbname: str
    nginx: int
    api: int
    asgi: int
    legacy: int
    domains: bool

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.nginx}"

    @property
    def redis(self) -> int:
        """The stack's own redis-server (``start_redis``)."""
        return self.nginx + REDIS_OFFSET

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)


def layout(domains: bool = False) -> Layout:
    port = int(os.environ.get("PULP_STACK_PORT", "24880"))
    base = port + (100 if domains else 0)
    name = "pulp-domains" if domains else "pulp"
    if port != 24880:  # another port is another stack: its own folder and database
        name += f"-{port}"
    checkout = hashlib.sha1(ROOT.encode()).hexdigest()[:8]  # one database per checkout
    return Layout(root=os.path.join(ROOT, ".dev", name),
                  dbname=f"pulp_content_asgi_{name.replace('-', '_')}_{checkout}",
                  nginx=base, api=base + 1, asgi=base + 2, legacy=base + 3, domains=domains)


def settings_for(stack: Layout) -> dict[str, object]:
    return {
        "CONTENT_ORIGIN": stack.origin,
        "CONTENT_PATH_PREFIX": PREFIX,
        "CACHE_ENABLED": True,
        "REDIS_PORT": stack.redis,
        "DISTRIBUTED_PUBLICATION_RETENTION_PERIOD": 3,
        "DOMAIN_ENABLED": stack.domains,
        "ALLOWED_EXPORT_PATHS": ["/tmp"],
        "ALLOWED_IMPORT_PATHS": ["/tmp"],
        "ANALYTICS": False,
        "TELEMETRY": False,
        # The tests' fixture servers and file:// remotes live on this machine.
        "ALLOWED_HOSTS": ["*"],
        # pulpcore's env-var header guard test runs only when its secret is set, in the
        # test process and in every Pulp process (ENVVAR_SECRET, environment()).
        "ENVVAR_HEADER_CONTENT_GUARD_ALLOWED_VARS": [ENVVAR_SECRET[0]],
        # pulp_container's registry API with token authentication, as Pulp's images and
        # pulp_container's CI configure it (keys: token_keys()); without these settings
        # every /v2/ answer is a 500 (AttributeError: TOKEN_SERVER).
        "TOKEN_SERVER": f"{stack.origin}/token/",
        "TOKEN_SIGNATURE_ALGORITHM": "ES256",
        "PUBLIC_KEY_PATH": stack.path("token", "public.pem"),
        "PRIVATE_KEY_PATH": stack.path("token", "private.pem"),
        # pulp_ansible's Galaxy API writes this origin into every collection's
        # download_url; its default, https://<fqdn>, is not this stack, so ansible-galaxy
        # could install nothing (make clients).
        "ANSIBLE_API_HOSTNAME": stack.origin,
    }


def token_keys(stack: Layout) -> None:
    """The registry token server's EC P-256 key pair (ES256), made once per stack."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private_path = stack.path("token", "private.pem")
    if os.path.exists(private_path):
        return
    os.makedirs(stack.path("token"), exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    with open(private_path, "wb") as out:
        out.write(key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    with open(stack.path("token", "public.pem"), "wb") as out:
        out.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo))


def environment(stack: Layout) -> dict[str, str]:
    """What a process of this stack (server or test) needs to load its settings."""
    return {**os.environ, "PULP_SETTINGS": stack.path("settings.py"),
            "DJANGO_SETTINGS_MODULE": "pulpcore.app.settings",
            ENVVAR_SECRET[0]: ENVVAR_SECRET[1]}


NGINX = """\
# Written by conformance/stack.py: Pulp's production reverse-proxy layout on loopback.
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/logs/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {root}/logs/nginx-access.log;
    client_body_temp_path {root}/nginx/body;
    proxy_temp_path {root}/nginx/proxy;
    fastcgi_temp_path {root}/nginx/fastcgi;
    uwsgi_temp_path {root}/nginx/uwsgi;
    scgi_temp_path {root}/nginx/scgi;
    types {{ }}
    default_type application/octet-stream;
    sendfile on;
    client_max_body_size 10m;
    # Post-quantum client certificates forwarded in X-CLIENT-CERT exceed 10 KiB.
    large_client_header_buffers 4 64k;
    proxy_buffer_size 64k;
    proxy_buffers 8 64k;

    upstream pulp-content {{ server 127.0.0.1:{content}; }}
    upstream pulp-api {{ server 127.0.0.1:{api}; }}

    server {{
        listen 127.0.0.1:{nginx} default_server;
        server_name _;
        proxy_read_timeout 600s;

        location = {bare_prefix} {{ return 301 {prefix}; }}
        location {prefix} {{
            proxy_pass http://pulp-content;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            # certguard: TLS deployments set this from $ssl_client_escaped_cert; here the
            # tests send the header themselves and nginx forwards it unchanged.
            proxy_set_header X-CLIENT-CERT $http_x_client_cert;
            proxy_redirect off;
{content_proxy}
        }}
        # Every installed plugin's webserver_snippets/nginx.conf, as Pulp's images include
        # them (/etc/nginx/pulp/*.conf in the server block): plugin_snippets().
        include {root}/nginx/pulp/*.conf;
        location / {{
            proxy_pass http://pulp-api;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_redirect off;
        }}
    }}
}}
"""


#: How nginx talks to the content app. ``snippet``: our shipped snippet (docs/deployment):
#: HTTP/1.1, so a stream cut short stays visible in its chunked encoding, and no
#: buffering. ``stock``: Pulp's own images (pulp-oci-images, images/s6_assets/nginx.conf)
#: set none of these, so nginx's defaults apply: HTTP/1.0 to the upstream, buffering on.
PROXIES: dict[str, str] = {
    "snippet": """\
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;""",
    "stock": "            # nginx defaults: HTTP/1.0 to the upstream, proxy_buffering on.",
}


def plugin_snippets() -> dict[str, str]:
    """Plugin label -> path of its ``app/webserver_snippets/nginx.conf``, for every
    installed Pulp plugin (``pulpcore.plugin`` entry points) that ships one; found in the
    distributions' file lists, so nothing is imported."""
    found = {}
    for dist in importlib.metadata.distributions():
        labels = [ep.name for ep in dist.entry_points if ep.group == "pulpcore.plugin"]
        for label in labels:
            wanted = f"{label}/app/webserver_snippets/nginx.conf"
            for name in dist.files or ():
                if str(name).replace(os.sep, "/").endswith(wanted):
                    found[label] = str(dist.locate_file(name))
    return dict(sorted(found.items()))


#: The line of a plugin snippet's location that sends it to the content app.
CONTENT_PASS = "proxy_pass http://pulp-content;"


def write_plugin_snippets(stack: Layout, proxy: str) -> list[str]:
    """Each plugin's snippet under ``nginx/pulp/<label>.conf``, where nginx.conf includes
    them. ``stock``: verbatim, as Pulp's images link them. ``snippet``: the locations that
    go to the content app also get our snippet's directives (PROXIES), as the content
    prefix does; the API's locations are unchanged. Returns the labels written."""
    folder = stack.path("nginx", "pulp")
    os.makedirs(folder, exist_ok=True)
    for old in glob.glob(os.path.join(folder, "*.conf")):
        os.unlink(old)
    snippets = plugin_snippets()
    for label, source in snippets.items():
        with open(source) as original:
            text = original.read()
        if proxy != "stock":
            if text.count(CONTENT_PASS) != text.count("proxy_pass http://pulp-content"):
                raise SystemExit(f"{source}: a content location this stack cannot adapt")
            ours = "".join(f"{line.strip()}\n    " for line in PROXIES[proxy].splitlines())
            text = text.replace(CONTENT_PASS, ours + CONTENT_PASS)
        with open(os.path.join(folder, f"{label}.conf"), "w") as out:
            out.write(f"# {source} ({proxy} layout), written by conformance/stack.py\n{text}")
    return list(snippets)


def nginx_binary() -> str:
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.path.exists(candidate):
            return candidate
    raise SystemExit("nginx is missing: dev/bench-tools.sh installs it")


def write_nginx(stack: Layout, content: str, proxy: str = "snippet") -> str:
    """nginx.conf with ``content`` (asgi|legacy) behind the ``proxy`` layout (PROXIES)."""
    os.makedirs(stack.path("nginx"), exist_ok=True)
    port = stack.asgi if content == "asgi" else stack.legacy
    path = stack.path("nginx.conf")
    with open(path, "w") as out:
        out.write(NGINX.format(root=stack.root, content=port, api=stack.api, nginx=stack.nginx,
                               prefix=PREFIX, bare_prefix=PREFIX.rstrip("/"),
                               content_proxy=PROXIES[proxy]))
    write_plugin_snippets(stack, proxy)
    with open(stack.path("content-upstream"), "w") as out:
        out.write(f"{content} {proxy}\n")
    return path


def _spawn(stack: Layout, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
    log = open(stack.path("logs", f"{name}.log"), "ab")  # noqa: SIM115 (the child keeps it)
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                               env=environment(stack), cwd=stack.root, start_new_session=True)
    with open(stack.path("pids", f"{name}.pid"), "w") as out:
        out.write(str(process.pid))
    return process


def start_redis(stack: Layout, timeout: float = 30) -> None:
    """The stack's own redis-server on ``stack.redis`` (no persistence): the apps' shared
    response cache (database 0) and the parity pair's databases (``parity.REDIS_DBS``)
    belong to this stack alone, so two checkouts' stacks or parity runs never read or
    empty each other's. Returns once the server answering on the port is the one started
    here (its ``process_id``); another process holding the port is an error, not a
    server to share."""
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is missing: make bench-tools installs it (apt-get)")
    process = _spawn(stack, "redis", [binary, "--port", str(stack.redis), "--bind",
                                      "127.0.0.1", "--save", "", "--appendonly", "no",
                                      "--dir", stack.root])
    client = redis.Redis(host="127.0.0.1", port=stack.redis, socket_timeout=2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            answering = client.info("server")["process_id"]
        except redis.RedisError:
            answering = None
        if answering == process.pid:
            return
        if answering is not None or process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    process.wait()
    raise SystemExit(f"the stack's Redis did not start on 127.0.0.1:{stack.redis} "
                     f"(another process holds the port, or see {stack.path('logs', 'redis.log')})")


def _get(url: str, timeout: float = 3) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def wait_online(stack: Layout, timeout: float = 120) -> dict:
    """Until the status API lists a worker and our app (and the legacy app) online."""
    deadline = time.monotonic() + timeout
    status: dict | None = None
    while time.monotonic() < deadline:
        status = _get(f"{stack.origin}/pulp/api/v3/status/")
        if status:
            names = [app["name"] for app in status.get("online_content_apps", [])]
            if (any(n.startswith("asgi-") for n in names)
                    and any(not n.startswith("asgi-") for n in names)
                    and status.get("online_workers")):
                return status
        time.sleep(1)
    raise SystemExit(f"Pulp did not come up in {timeout}s (logs in {stack.path('logs')}); "
                     f"last status: {status}")


def manager(stack: Layout, *args: str) -> None:
    subprocess.run([os.path.join(BIN, "pulpcore-manager"), *args], env=environment(stack),
                   check=True, stdout=subprocess.DEVNULL)


def up(stack: Layout, content: str = "asgi", fresh: bool = False,
       proxy: str = "snippet") -> None:
    sys.path.insert(0, ROOT)
    from pulp_content_asgi.devtools import settings as devsettings

    down(stack, quiet=True)
    if fresh and os.path.isdir(stack.root):
        shutil.rmtree(stack.root)
    for sub in ("logs", "pids"):
        os.makedirs(stack.path(sub), exist_ok=True)
    token_keys(stack)
    devsettings.write(stack.root, stack.dbname, settings_for(stack))
    start_redis(stack)
    if fresh:  # a copy of the migrated template when there is one (devtools/migrated.py)
        subprocess.run([sys.executable, "-m", "pulp_content_asgi.devtools.migrated"],
                       env=environment(stack), check=True, stdout=subprocess.DEVNULL)
    else:
        devsettings.ensure_database(stack.dbname)
        manager(stack, "migrate", "--noinput")
    manager(stack, "reset-admin-password", "--password", ADMIN[1])
    api = ["--bind", f"127.0.0.1:{stack.api}", "--workers", "2", "--timeout", "300"]
    _spawn(stack, "api", [os.path.join(BIN, "pulpcore-api"), *api])
    for n in (1, 2):
        _spawn(stack, f"worker-{n}", [os.path.join(BIN, "pulpcore-worker")])
    _spawn(stack, "content-asgi", [os.path.join(BIN, "pulp-content-asgi"), "--bind",
                                   f"127.0.0.1:{stack.asgi}", "--workers", "2",
                                   "--name-template", ASGI_NAME,
                                   "--access-logfile", stack.path("logs", "asgi-access.log")])
    _spawn(stack, "content-legacy", [os.path.join(BIN, "pulpcore-content"), "--bind",
                                     f"127.0.0.1:{stack.legacy}", "--workers", "2"])
    conf = write_nginx(stack, content, proxy)
    subprocess.run([nginx_binary(), "-c", conf, "-p", stack.root], check=True)
    status = wait_online(stack)
    print(f"Pulp is up at {stack.origin} (content: {content} behind the {proxy} proxy, "
          f"prefix {PREFIX}, plugin locations from {', '.join(plugin_snippets()) or 'none'}, "
          f"domains {'on' if stack.domains else 'off'}); "
          f"{len(status['online_workers'])} workers, content apps "
          f"{sorted(a['name'] for a in status['online_content_apps'])}")


def ensure_up(stack: Layout) -> bool:
    """Bring the stack up unless one answers at its origin, and point this process's
    Django at its settings; True when this call started it (and so should stop it)."""
    started = _get(f"{stack.origin}/pulp/api/v3/status/") is None
    if started:
        up(stack)
    os.environ.update({k: v for k, v in environment(stack).items()
                       if k in ("PULP_SETTINGS", "DJANGO_SETTINGS_MODULE")})
    return started


def switch(stack: Layout, content: str, proxy: str = "snippet") -> None:
    """Point nginx's content location at our app or at pulpcore-content, behind the
    ``proxy`` layout (a reload)."""
    conf = write_nginx(stack, content, proxy)
    subprocess.run([nginx_binary(), "-c", conf, "-p", stack.root, "-s", "reload"], check=True)
    time.sleep(1)  # old nginx workers finish; new ones use the new upstream


def _read_pid(path: str) -> int:
    with open(path) as source:
        text = source.read().strip()
    return int(text) if text.isdigit() else 0


def _signal(pid: int, sig: int) -> None:
    """The process's group (each server was started as one, nginx makes its own), else
    the process alone."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _exited(pid: int) -> bool:
    """Whether the process is gone. A child of this process (``up`` ran here) stays a
    zombie, which ``kill(pid, 0)`` still finds, until it is reaped: reap it."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def down(stack: Layout, quiet: bool = False) -> None:
    pid_dir = stack.path("pids")
    nginx_pid = stack.path("nginx.pid")
    pids = []
    if os.path.exists(nginx_pid):
        pids.append(_read_pid(nginx_pid))
    if os.path.isdir(pid_dir):
        for name in sorted(os.listdir(pid_dir)):
            pids.append(_read_pid(os.path.join(pid_dir, name)))
            os.unlink(os.path.join(pid_dir, name))
    pids = [pid for pid in pids if pid > 0]
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    for pid in pids:
        while time.monotonic() < deadline:
            if _exited(pid):
                break
            time.sleep(0.2)
        else:
            _signal(pid, signal.SIGKILL)
    if not quiet:
        print(f"Pulp at {stack.origin} stopped")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("up", "down", "switch"))
    parser.add_argument("--domains", action="store_true", help="the DOMAIN_ENABLED variant")
    parser.add_argument("--content", choices=("asgi", "legacy"), default="asgi",
                        help="which content app nginx serves (default: ours)")
    parser.add_argument("--proxy", choices=sorted(PROXIES), default="snippet",
                        help="nginx's content location: our shipped snippet (default) or "
                             "Pulp's stock configuration (nginx defaults)")
    parser.add_argument("--fresh", action="store_true", help="a new database and folder")
    args = parser.parse_args()
    stack = layout(args.domains)
    if args.command == "up":
        up(stack, args.content, args.fresh, args.proxy)
    elif args.command == "switch":
        switch(stack, args.content, args.proxy)
    else:
        down(stack)


if __name__ == "__main__":
    main()
