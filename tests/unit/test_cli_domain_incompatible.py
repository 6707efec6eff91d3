"""With DOMAIN_ENABLED, a plugin that does not declare ``domain_compatible`` makes every
Pulp process refuse to start (pulpcore/app/apps.py); ours says so in one line and exits
1, for the server and for ``plugins``, instead of a traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = os.path.dirname(sys.executable)

APP = '''\
from pulpcore.plugin import PulpPluginAppConfig


class PulpParityFakePluginAppConfig(PulpPluginAppConfig):
    name = "pulp_parity_fake.app"
    label = "parity_fake"
    version = "0.1"
    python_package_name = "pulp-parity-fake"
{compatible}'''


def fake_plugin(root: Path, compatible: bool) -> Path:
    """An installed Pulp plugin (a package and its dist-info with the ``pulpcore.plugin``
    entry point pulpcore's settings load plugins from) under ``root``."""
    package = root / "pulp_parity_fake"
    (package / "app").mkdir(parents=True)
    (package / "__init__.py").write_text(
        'default_app_config = "pulp_parity_fake.app.PulpParityFakePluginAppConfig"\n')
    (package / "app" / "__init__.py").write_text(APP.format(
        compatible="    domain_compatible = True\n" if compatible else ""))
    info = root / "pulp_parity_fake-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pulp-parity-fake\n"
                                   "Version: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[pulpcore.plugin]\npulp_parity_fake = pulp_parity_fake:default_app_config\n")
    return root


def run(root: Path, *args: str, domains: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root),
           "PULP_DOMAIN_ENABLED": "true" if domains else "false"}
    return subprocess.run([os.path.join(BIN, "pulp-content-asgi"), *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


MESSAGE = ("Error: The plugin `pulp-parity-fake-0.1` is not domain compatible. Please "
           "uninstall/update the plugin or turn off `DOMAIN_ENABLED` for Pulp to start.")


@pytest.mark.parametrize("args", [("plugins",), ("--bind", "127.0.0.1:1", "--workers", "1")])
def test_an_incompatible_plugin_under_domains_is_refused_in_one_line(tmp_path, args):
    done = run(fake_plugin(tmp_path, compatible=False), *args)
    assert done.returncode == 1
    assert done.stderr.strip() == MESSAGE
    assert "Traceback" not in done.stderr + done.stdout


def test_the_same_plugin_declaring_compatibility_is_listed(tmp_path):
    done = run(fake_plugin(tmp_path, compatible=True), "plugins")
    assert "parity_fake" in {line.split()[0] for line in done.stdout.splitlines() if line}, \
        done.stderr[-2000:]
