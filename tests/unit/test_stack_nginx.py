"""The local stack's nginx: every installed plugin's webserver snippet applied the way
Pulp's images apply them (conformance/stack.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conformance import stack as stacks


def _location(text: str, prefix: str) -> str:
    found = re.search(r"location " + re.escape(prefix) + r" \{(.*?)\n\}", text, re.S)
    assert found, f"no location {prefix}"
    return found.group(1)


def _layout(tmp_path: Path) -> stacks.Layout:
    return stacks.Layout(root=str(tmp_path), dbname="unused", nginx=1, api=2, asgi=3,
                         legacy=4, domains=False)


def test_the_installed_plugins_snippets_are_found() -> None:
    found = stacks.plugin_snippets()
    # The plugins extra: these four ship app/webserver_snippets/nginx.conf.
    assert {"pulp_container", "pulp_python", "pulp_ansible", "pulp_npm"} <= set(found)
    assert all(path.endswith("/app/webserver_snippets/nginx.conf") for path in found.values())


def test_stock_layout_copies_each_snippet_verbatim(tmp_path: Path) -> None:
    labels = stacks.write_plugin_snippets(_layout(tmp_path), "stock")
    for label in labels:
        written = (tmp_path / "nginx" / "pulp" / f"{label}.conf").read_text()
        source = Path(stacks.plugin_snippets()[label]).read_text()
        assert written.split("\n", 1)[1] == source


def test_snippet_layout_adds_ours_to_content_locations_only(tmp_path: Path) -> None:
    stacks.write_plugin_snippets(_layout(tmp_path), "snippet")
    container = (tmp_path / "nginx" / "pulp" / "pulp_container.conf").read_text()
    content = _location(container, "/pulp/container/")
    assert "proxy_http_version 1.1;" in content
    assert "proxy_buffering off;" in content
    assert content.index("proxy_buffering off;") < content.index(stacks.CONTENT_PASS)
    for api in ("/v2/", "/token/", "/extensions/v2/"):
        location = _location(container, api)
        assert "proxy_pass http://pulp-api;" in location
        assert "proxy_buffering" not in location


@pytest.mark.parametrize("proxy", sorted(stacks.PROXIES))
def test_nginx_accepts_the_whole_configuration(tmp_path: Path, proxy: str) -> None:
    if not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
        pytest.skip("nginx is not installed (dev/bench-tools.sh installs it)")
    stack = _layout(tmp_path)
    (tmp_path / "logs").mkdir()
    conf = stacks.write_nginx(stack, "asgi", proxy)
    text = Path(conf).read_text()
    assert f"include {tmp_path}/nginx/pulp/*.conf;" in text
    checked = subprocess.run([stacks.nginx_binary(), "-t", "-c", conf, "-p", str(tmp_path)],
                             capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
